"""Small GGUF files and wheels written at test time (shared by the model tests)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import gguf
import numpy as np

TOOLS_TEMPLATE = (
    "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
)
PLAIN_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    context: int | None = 2048,
    template: str | None = TOOLS_TEMPLATE,
    size_label: str | None = "1K",
    license_: str | None = "apache-2.0",
    name: str = "sample model",
) -> Path:
    """Write a GGUF with the given metadata and one small tensor; return ``path``."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    if size_label is not None:
        writer.add_size_label(size_label)
    if license_ is not None:
        writer.add_license(license_)
    if context is not None:
        writer.add_context_length(context)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sha256(path: Path) -> str:
    """Return the hex SHA-256 of ``path``."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_wheel(dest_dir: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """Write a wheel (a zip with the right name and dist-info) holding ``members``."""
    module = package.replace("-", "_")
    path = dest_dir / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        info = f"{module}-{version}.dist-info"
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        archive.writestr(f"{info}/RECORD", "")
    return path
