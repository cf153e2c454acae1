"""What a GGUF says about itself, read with the ``gguf`` library (no weights are loaded).

:func:`read` returns the architecture, the parameter count (``general.size_label`` when the
file has one, else counted from the tensors), the trained context length, the license and
the chat template. A template "handles tools" when it refers to a ``tools`` variable: that is
how templates render the tool list that llama-server's ``--jinja`` passes them (ChatML
templates such as SmolLM2's do not, Qwen2.5's and Llama 3.x's do).

:func:`selected_chat_template` answers the doctor's question: does the model this sandbox
serves carry a chat template? (Without one llama-server falls back to a generic template
and a base model's replies are not chat replies.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxctl.errors import SandboxError

TOOLS_RE = re.compile(r"\btools\b")


class MetadataError(SandboxError):
    """The file is not a GGUF the ``gguf`` library can read."""


@dataclass(frozen=True)
class GgufInfo:
    """The metadata of one GGUF file."""

    architecture: str
    name: str | None
    parameters: str
    """``general.size_label`` (e.g. ``135M``), else the tensors' element count (``134.5M``)."""
    context_trained: int | None
    license: str | None
    chat_template: str | None

    @property
    def handles_tools(self) -> bool:
        """True when the chat template renders a tool list."""
        return self.chat_template is not None and bool(TOOLS_RE.search(self.chat_template))


def human_count(count: int) -> str:
    """Return ``count`` as 134.5M / 1.2B."""
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def _value(fields: dict[str, Any], key: str) -> Any:
    field = fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except (AttributeError, IndexError, ValueError):
        return None


def read(path: Path) -> GgufInfo:
    """Read ``path``'s GGUF metadata; raise :class:`MetadataError` when it is not a GGUF."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise MetadataError(f"{path} is not a readable GGUF file ({error})") from error
    fields = reader.fields
    architecture = _value(fields, "general.architecture")
    if not isinstance(architecture, str):
        raise MetadataError(f"{path} has no general.architecture: not a model GGUF")
    context = _value(fields, f"{architecture}.context_length")
    label = _value(fields, "general.size_label")
    if not isinstance(label, str) or not label:
        label = human_count(sum(int(tensor.n_elements) for tensor in reader.tensors))
    template = _value(fields, "tokenizer.chat_template")
    name = _value(fields, "general.name")
    license_ = _value(fields, "general.license")
    return GgufInfo(
        architecture=architecture,
        name=name if isinstance(name, str) else None,
        parameters=label,
        context_trained=int(context) if isinstance(context, int) and context > 0 else None,
        license=license_ if isinstance(license_, str) and license_ else None,
        chat_template=template if isinstance(template, str) and template.strip() else None,
    )


def selected_chat_template(root: Path, key: str, directory: Path | None = None) -> bool | None:
    """Return whether model ``key`` has a chat template; None when the catalog lacks ``key``.

    The GGUF itself answers when it is in the model-data directory (``directory``, default
    ``$SANDBOX_MODEL_DIR`` or ``ROOT/models``); otherwise the catalog's ``chat_template``.
    """
    from sandboxctl.catalog import catalog

    model = catalog.find_model(root, key)
    if model is None:
        return None
    path = catalog.model_path(model, directory or catalog.model_dir(root))
    if path.is_file():
        try:
            return read(path).chat_template is not None
        except MetadataError:
            pass
    return model.has_chat_template
