"""A consistent temporary copy of the files plan.check reads (shared by the plan tests)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COPIED = [
    "PLAN.md",
    ".env",
    "compose.yaml",
    "compose.publish.yaml",
    "compose.cuda.yaml",
    "compose.vulkan.yaml",
    "model-server/catalog.yaml",
    "model-server/llama-cpp-sources.yaml",
    "supervisor/Containerfile",
]
MINIMAL_SUPERVISOR_CONTAINERFILE = """\
FROM localhost/ai-sandbox-base:bookworm AS runtime
USER 10001:10001
"""


def replace(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace ``old`` by ``new`` in ``path``; fail loudly when ``old`` is not there."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


CANONICAL_PORT = 8080
"""The model port of every copy, whatever the sandbox's own answer (a rendered sandbox may
have answered another): the tests change it from this value."""


def canonical_port(dest: Path) -> None:
    """Set the copy's model port to CANONICAL_PORT in .env and in PLAN.md's plan, both."""
    env = dest / ".env"
    port = re.search(r"^MODEL_PORT=(\d+)$", env.read_text(), re.M)
    assert port, f"no MODEL_PORT in {env}"
    if int(port.group(1)) == CANONICAL_PORT:
        return
    replace(env, port.group(0), f"MODEL_PORT={CANONICAL_PORT}")
    plan = dest / "PLAN.md"
    text = re.sub(rf"^(model_port|    port): {port.group(1)}$", rf"\1: {CANONICAL_PORT}",
                  plan.read_text(), flags=re.M)  # fmt: skip
    plan.write_text(text)


def consistent_copy(dest: Path) -> Path:
    """Copy the real PLAN.md, .env, compose files, Containerfiles and catalogs into ``dest``.

    Where the working tree is still incomplete (no supervisor Containerfile yet, a llama.cpp
    pin the sources file lacks), the copy is completed so that plan.check finds no drift and
    each test can change exactly one thing.
    """
    for name in COPIED:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for containerfile in (ROOT / "model-server").glob("Containerfile*"):
        shutil.copy2(containerfile, dest / "model-server" / containerfile.name)
    if not (dest / "supervisor/Containerfile").exists():
        (dest / "supervisor").mkdir(exist_ok=True)
        (dest / "supervisor/Containerfile").write_text(MINIMAL_SUPERVISOR_CONTAINERFILE)
    canonical_port(dest)
    sources = yaml.safe_load((dest / "model-server/llama-cpp-sources.yaml").read_text())
    pinned = re.search(r"^LLAMA_CPP_VERSION=(\S*)$", (dest / ".env").read_text(), re.M)
    assert pinned
    if pinned.group(1) not in sources["versions"]:
        good = sources["default_version"]
        replace(dest / ".env", f"LLAMA_CPP_VERSION={pinned.group(1)}", f"LLAMA_CPP_VERSION={good}")
        text = (dest / "PLAN.md").read_text()
        (dest / "PLAN.md").write_text(text.replace(pinned.group(1), good))
    return dest
