"""Generate the offline tiny model (`invoke model.tiny`), deterministically.

A llama-architecture GGUF, 2 layers and 64 wide by default, with f32 random
weights from a fixed seed and the real 32,000-token llama-spm tokenizer copied
from the pinned llama.cpp source (``models/ggml-vocab-llama-spm.gguf``). Its
output is gibberish, but llama-server loads it in a fraction of a second, and
schema- or grammar-constrained requests still come back as well-formed JSON,
which is what the tests exercise.

The chat template is llama-2 style (``[INST] ... [/INST]``), made only of text
the llama-spm vocabulary can encode: without a template llama-server falls
back to ChatML, whose ``<|im_start|>`` tokens this vocabulary lacks, and
every request with ``response_format`` fails ("Failed to initialize
samplers").

The same parameters and seed always give the same bytes: the GGUF writer
adds no timestamps, keys are written in a fixed order and the weights come
from ``numpy.random.default_rng(seed)``. The file is written to a temporary
name and renamed into place. gguf and numpy are imported when a model is made, not with this
module: every ``invoke`` start imports it, and they take about a tenth of a second.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandboxctl.download import fsync_dir
from sandboxctl.errors import SandboxError

if TYPE_CHECKING:
    import gguf
    import numpy as np

ARCH = "llama"
DEFAULT_SEED = 20240601
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "[INST] <<SYS>>\n{{ message['content'] }}\n<</SYS>> [/INST]"
    "{% elif message['role'] == 'user' %}"
    "[INST] {{ message['content'] }} [/INST]"
    "{% else %}"
    " {{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)


class TinyModelError(SandboxError):
    """The tiny model cannot be generated; the message says how to fix it."""


@dataclass(frozen=True)
class TinySpec:
    """Shape and seed of the tiny model."""

    layers: int = 2
    width: int = 64
    heads: int = 4
    kv_heads: int = 4
    ffn: int = 128
    context: int = 2048
    seed: int = DEFAULT_SEED


def _copy_tokenizer(vocab: Path, writer: gguf.GGUFWriter) -> int:
    """Copy every ``tokenizer.*`` key of ``vocab`` into ``writer``; return the vocab size."""
    import gguf  # here, not at the top: see the module docstring

    try:
        reader = gguf.GGUFReader(vocab)
    except (OSError, ValueError) as error:
        raise TinyModelError(f"cannot read tokenizer {vocab}: {error}") from error
    n_vocab = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        value = field.contents()
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, kind, sub_type=field.types[-1])
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(name, value, kind)
    if n_vocab == 0:
        raise TinyModelError(f"{vocab} has no tokenizer.ggml.tokens; is it a vocab GGUF?")
    return n_vocab


def _weights(spec: TinySpec, n_vocab: int) -> list[tuple[str, np.ndarray]]:
    """Return (name, array) for every tensor, drawn in a fixed order from the seed."""
    import numpy as np  # here, not at the top: see the module docstring

    rng = np.random.default_rng(spec.seed)
    head_dim = spec.width // spec.heads
    kv_width = head_dim * spec.kv_heads

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    # numpy shapes are (rows, cols); GGUF stores them reversed, as llama.cpp expects.
    tensors = [("token_embd.weight", normal(n_vocab, spec.width))]
    for layer in range(spec.layers):
        prefix = f"blk.{layer}"
        tensors += [
            (f"{prefix}.attn_norm.weight", ones(spec.width)),
            (f"{prefix}.attn_q.weight", normal(spec.width, spec.width)),
            (f"{prefix}.attn_k.weight", normal(kv_width, spec.width)),
            (f"{prefix}.attn_v.weight", normal(kv_width, spec.width)),
            (f"{prefix}.attn_output.weight", normal(spec.width, spec.width)),
            (f"{prefix}.ffn_norm.weight", ones(spec.width)),
            (f"{prefix}.ffn_gate.weight", normal(spec.ffn, spec.width)),
            (f"{prefix}.ffn_up.weight", normal(spec.ffn, spec.width)),
            (f"{prefix}.ffn_down.weight", normal(spec.width, spec.ffn)),
        ]
    tensors += [
        ("output_norm.weight", ones(spec.width)),
        ("output.weight", normal(n_vocab, spec.width)),
    ]
    return tensors


def write_catalog_model(directory: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    """Generate the catalog's ``tiny`` model into the model-data directory (``directory``,
    else the default one) with the placed llama.cpp source's tokenizer; return its path:
    what ``invoke model.tiny`` and ``python -m sandboxctl model-tiny`` do."""
    from sandboxctl.catalog import catalog
    from sandboxctl.llama import source

    vocab = source.vocab_path()  # first: the fix for a missing source is to place it
    dest = catalog.model_path(catalog.load_catalog().get("tiny"), directory)
    return generate(vocab, dest, TinySpec(seed=seed))


def generate(vocab: Path, dest: Path, spec: TinySpec | None = None) -> Path:
    """Write the tiny model for ``spec`` to ``dest`` (atomically) and return ``dest``."""
    import gguf  # here, not at the top: see the module docstring

    spec = spec or TinySpec()
    if spec.width % spec.heads or spec.heads % spec.kv_heads:
        raise TinyModelError("width must divide by heads, and heads by kv_heads")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_name(f"ai-sandbox tiny llama (seed {spec.seed})")
        writer.add_description("Random weights for tests; generated by sandboxctl.tiny_model")
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(spec.context)
        writer.add_embedding_length(spec.width)
        writer.add_block_count(spec.layers)
        writer.add_feed_forward_length(spec.ffn)
        writer.add_head_count(spec.heads)
        writer.add_head_count_kv(spec.kv_heads)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_rope_dimension_count(spec.width // spec.heads)
        writer.add_rope_freq_base(10000.0)
        n_vocab = _copy_tokenizer(vocab, writer)
        writer.add_vocab_size(n_vocab)
        writer.add_chat_template(CHAT_TEMPLATE)
        for name, array in _weights(spec, n_vocab):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
