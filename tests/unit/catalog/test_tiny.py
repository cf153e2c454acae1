"""Unit tests of sandboxctl.catalog.tiny: determinism, contents, atomic write.

A small synthetic vocabulary GGUF stands in for llama.cpp's llama-spm one, so
these tests need no placed source; one test checks the real vocabulary when
`invoke model.source` has placed it.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from sandboxctl.catalog import catalog
from sandboxctl.catalog import tiny as tiny_model
from sandboxctl.llama import source as llama_source

SMALL = tiny_model.TinySpec(layers=1, width=16, heads=2, kv_heads=2, ffn=32, context=64)


@pytest.fixture
def vocab(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    tokens = ["<unk>", "<s>", "</s>", "[", "]", "INST", "/", "▁"] + [f"t{i}" for i in range(92)]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([1] * len(tokens))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_same_seed_gives_identical_bytes(vocab: Path, tmp_path: Path) -> None:
    first = tiny_model.generate(vocab, tmp_path / "a.gguf", SMALL)
    second = tiny_model.generate(vocab, tmp_path / "b.gguf", SMALL)
    assert first.read_bytes() == second.read_bytes()


def test_other_seed_gives_other_weights(vocab: Path, tmp_path: Path) -> None:
    first = tiny_model.generate(vocab, tmp_path / "a.gguf", SMALL)
    other = tiny_model.TinySpec(**{**SMALL.__dict__, "seed": SMALL.seed + 1})
    second = tiny_model.generate(vocab, tmp_path / "b.gguf", other)
    assert first.read_bytes() != second.read_bytes()


def test_model_is_llama_with_copied_tokenizer_and_chat_template(
    vocab: Path, tmp_path: Path
) -> None:
    reader = gguf.GGUFReader(tiny_model.generate(vocab, tmp_path / "m.gguf", SMALL))
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["llama.block_count"].contents() == 1
    assert fields["tokenizer.ggml.tokens"].contents()[3:6] == ["[", "]", "INST"]
    assert fields["tokenizer.ggml.bos_token_id"].contents() == 1
    assert "[INST]" in fields["tokenizer.chat_template"].contents()
    assert "<|im_start|>" not in fields["tokenizer.chat_template"].contents()


def test_tensors_have_llama_names_shapes_and_f32(vocab: Path, tmp_path: Path) -> None:
    reader = gguf.GGUFReader(tiny_model.generate(vocab, tmp_path / "m.gguf", SMALL))
    tensors = {t.name: t for t in reader.tensors}
    assert list(tensors["token_embd.weight"].shape) == [16, 100]
    assert list(tensors["blk.0.ffn_down.weight"].shape) == [32, 16]
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}
    assert len(tensors) == 2 + 9 + 1
    assert np.all(np.asarray(tensors["output_norm.weight"].data) == 1.0)


def test_generation_leaves_no_temporary_file(vocab: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    tiny_model.generate(vocab, out / "tiny.gguf", SMALL)
    assert [p.name for p in out.iterdir()] == ["tiny.gguf"]


def test_vocab_without_tokens_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    writer = gguf.GGUFWriter(empty, "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = tmp_path / "models"
    with pytest.raises(tiny_model.TinyModelError, match=r"tokenizer\.ggml\.tokens"):
        tiny_model.generate(empty, out / "tiny.gguf", SMALL)
    assert list(out.iterdir()) == []


def test_inconsistent_shape_is_refused(vocab: Path, tmp_path: Path) -> None:
    bad = tiny_model.TinySpec(width=10, heads=3)
    with pytest.raises(tiny_model.TinyModelError, match="divide"):
        tiny_model.generate(vocab, tmp_path / "m.gguf", bad)


def test_the_catalog_model_is_written_where_the_catalog_puts_it(
    vocab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `invoke model.tiny --directory D` and `python -m sandboxctl model-tiny` write."""
    monkeypatch.setattr(llama_source, "vocab_path", lambda: vocab)
    written = tiny_model.write_catalog_model(tmp_path / "models", seed=7)
    assert written == catalog.model_path(catalog.load_catalog().get("tiny"), tmp_path / "models")
    reader = gguf.GGUFReader(written)
    assert reader.fields["general.name"].contents() == "ai-sandbox tiny llama (seed 7)"
