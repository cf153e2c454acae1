"""The pinned llama.cpp source: read the pins, fetch, verify, place in the build context.

`model-server/llama-cpp-sources.yaml` maps a llama.cpp release tag to archives that
hold that source (the GitHub release archive, PyPI's llama-cpp-python sdist
that vendors it). :func:`place_source` downloads the chosen archive into the
cache (``$XDG_CACHE_HOME/ai-sandbox/llama-cpp`` or ``~/.cache/...``) through
:mod:`sandboxctl.download`, so it is verified by SHA-256 before anything is
extracted, then extracts the llama.cpp tree into a temporary directory next
to the build context and renames it into place (``model-server/context/llama.cpp``),
with a ``source.json`` manifest. A failure leaves the previous context as it
was.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 12):
    import tarfile
else:  # the data filter on every 3.11 (backports.tarfile)
    from backports import tarfile

from sandboxctl.answers import answer
from sandboxctl.config import MODEL_SERVER_DIR, find_root
from sandboxctl.download import (
    SHA256_RE,
    DownloadError,
    DownloadResult,
    ProgressCallback,
    cache_dir,
    fetch,
    fsync_dir,
)
from sandboxctl.errors import SandboxError

SOURCES_RELPATH = MODEL_SERVER_DIR / "llama-cpp-sources.yaml"
CONTEXT_RELPATH = MODEL_SERVER_DIR / "context"
ORIGINS = ("pypi", "github")
MANIFEST = "source.json"
TREE = "llama.cpp"
VOCAB_RELPATH = Path("models") / "ggml-vocab-llama-spm.gguf"


class SourceError(SandboxError):
    """The pinned source cannot be had or placed; the message says how to fix it."""


@dataclass(frozen=True)
class Origin:
    """One archive that carries a pinned llama.cpp source tree."""

    name: str
    url: str
    sha256: str | None
    size: int | None
    subdir: str
    sha256_source: str | None


@dataclass(frozen=True)
class Pin:
    """A pinned llama.cpp version and the archives that carry it."""

    version: str
    commit: str
    build_number: int
    origins: dict[str, Origin]


@dataclass(frozen=True)
class Sources:
    """The whole pin file."""

    default_version: str
    default_origin: str
    pins: dict[str, Pin]


def sources_file() -> Path:
    """Return the pin file of the sandbox the command stands in."""
    return find_root() / SOURCES_RELPATH


def context_dir() -> Path:
    """Return where the sandbox the command stands in keeps the placed llama.cpp source."""
    return find_root() / CONTEXT_RELPATH


def ccache_dir() -> Path:
    """Return the host's ccache of model-server builds (mounted at ``/ccache`` in them)."""
    return cache_dir() / "ccache"


def _require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in mapping:
        raise SourceError(f"{where}: missing key {key!r}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise SourceError(f"{where}: {key!r} must be {kind}, got {value!r}")
    return value


def _origin(name: str, raw: Any, where: str) -> Origin:
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: must be a mapping")
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256_RE.match(sha)):
        raise SourceError(f"{where}: sha256 must be 64 lowercase hex digits or null")
    if sha is not None and not raw.get("sha256_source"):
        raise SourceError(f"{where}: a sha256 needs sha256_source (where it was read)")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise SourceError(f"{where}: size must be a positive integer or null")
    url = _require(raw, "url", str, where)
    if not url.startswith(("https://", "http://")):
        raise SourceError(f"{where}: url must be http(s)")
    return Origin(
        name=name,
        url=url,
        sha256=sha,
        size=size,
        subdir=_require(raw, "subdir", str, where).strip("/"),
        sha256_source=raw.get("sha256_source"),
    )


def parse_sources(data: Any) -> Sources:
    """Validate the parsed pin file and return it as typed objects."""
    if not isinstance(data, dict):
        raise SourceError("llama-cpp-sources.yaml: top level must be a mapping")
    if data.get("schema") != 1:
        raise SourceError("llama-cpp-sources.yaml: unsupported schema (expected 1)")
    versions = _require(data, "versions", dict, "llama-cpp-sources.yaml")
    pins: dict[str, Pin] = {}
    for version, raw in versions.items():
        where = f"llama-cpp-sources.yaml: versions.{version}"
        if not isinstance(raw, dict):
            raise SourceError(f"{where}: must be a mapping")
        origins_raw = _require(raw, "origins", dict, where)
        unknown = set(origins_raw) - set(ORIGINS)
        if unknown:
            raise SourceError(f"{where}: unknown origins {sorted(unknown)}; known: {ORIGINS}")
        pins[str(version)] = Pin(
            version=str(version),
            commit=_require(raw, "commit", str, where),
            build_number=_require(raw, "build_number", int, where),
            origins={
                name: _origin(name, value, f"{where}.origins.{name}")
                for name, value in origins_raw.items()
            },
        )
    default_version = _require(data, "default_version", str, "llama-cpp-sources.yaml")
    default_origin = _require(data, "default_origin", str, "llama-cpp-sources.yaml")
    if default_version not in pins:
        raise SourceError(f"llama-cpp-sources.yaml: default_version {default_version!r} unknown")
    if default_origin not in ORIGINS:
        raise SourceError(f"llama-cpp-sources.yaml: default_origin {default_origin!r} unknown")
    return Sources(default_version, default_origin, pins)


def load_sources(path: Path | None = None) -> Sources:
    """Read and validate the pin file (default: the sandbox's own)."""
    path = path or sources_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error}") from error
    return parse_sources(yaml.safe_load(text))


def resolve(sources: Sources, version: str | None, origin: str | None) -> tuple[Pin, Origin]:
    """Return the pin and origin asked for (defaults from the pin file)."""
    version = version or sources.default_version
    origin = origin or sources.default_origin
    pin = sources.pins.get(version)
    if pin is None:
        known = ", ".join(sorted(sources.pins))
        raise SourceError(
            f"llama.cpp version {version!r} is not pinned in model-server/llama-cpp-sources.yaml "
            f"(pinned: {known}); set LLAMA_CPP_VERSION to one of them or add a pin"
        )
    chosen = pin.origins.get(origin)
    if chosen is None:
        raise SourceError(
            f"llama.cpp {version} has no {origin!r} origin; choose one of "
            f"{', '.join(sorted(pin.origins))}"
        )
    return pin, chosen


def archive_path(pin: Pin, origin: Origin) -> Path:
    """Return where the archive of ``origin`` is cached."""
    name = origin.url.rsplit("/", 1)[-1] or f"{pin.version}.tar.gz"
    return cache_dir() / "llama-cpp" / origin.name / pin.version / name


def read_manifest(context: Path | None = None) -> dict[str, Any] | None:
    """Return the manifest of the source placed in ``context``, or None."""
    context = context or context_dir()
    try:
        data = json.loads((context / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_placed(context: Path, pin: Pin, sha256: str) -> bool:
    manifest = read_manifest(context)
    return (
        manifest is not None
        and manifest.get("version") == pin.version
        and manifest.get("archive_sha256") == sha256
        and (context / TREE / "CMakeLists.txt").is_file()
    )


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path) -> None:
    """Extract one member with the "data" filter: no absolute or escaping names, no links
    that leave the tree, no devices or FIFOs, no setuid bits (Python 3.12's extraction
    filters; ``backports.tarfile`` brings them to the 3.11.2 that Debian 12 ships)."""
    tar.extract(member, into, filter="data")


def _extract_subtree(archive: Path, subdir: str, into: Path) -> None:
    """Extract the members of ``archive`` under ``subdir`` into ``into``, safely."""
    prefix = subdir.strip("/") + "/"
    count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.name.startswith(prefix):
                    continue
                relative = member.name[len(prefix) :]
                if not relative:
                    continue
                member.name = relative
                if member.islnk():
                    if not member.linkname.startswith(prefix):
                        raise SourceError(f"{archive}: hard link {member.name} leaves the tree")
                    member.linkname = member.linkname[len(prefix) :]
                _extract_member(tar, member, into)
                count += 1
    except tarfile.FilterError as error:
        raise SourceError(f"{archive}: {error} (refused: it would leave the tree)") from error
    except (tarfile.TarError, EOFError, OSError) as error:
        raise SourceError(f"cannot extract {archive}: {error}") from error
    if count == 0 or not (into / "CMakeLists.txt").is_file():
        raise SourceError(
            f"{archive} has no llama.cpp tree under {subdir!r}; the pin's subdir is wrong"
        )


def place_tree(
    archive: Path, pin: Pin, origin: Origin, sha256: str, context: Path | None = None
) -> Path:
    """Extract the verified ``archive`` and rename it into ``context/llama.cpp``."""
    context = context or context_dir()
    context.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=context))
    try:
        tree = staging / TREE
        tree.mkdir()
        _extract_subtree(archive, origin.subdir, tree)
        manifest = {
            "version": pin.version,
            "commit": pin.commit,
            "build_number": pin.build_number,
            "origin": origin.name,
            "url": origin.url,
            "archive_sha256": sha256,
            "verified": origin.sha256 is not None,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        target = context / TREE
        old = context / f".old-{staging.name}"
        # Manifest first out, last in: a context with a manifest always has its tree.
        (context / MANIFEST).unlink(missing_ok=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tree, target)
        os.replace(staging / MANIFEST, context / MANIFEST)
        fsync_dir(context)
        shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def place_source(
    version: str | None = None,
    origin: str | None = None,
    *,
    trust_unverified: bool = False,
    url: str | None = None,
    context: Path | None = None,
    sources_file: Path | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[Pin, Origin, DownloadResult, Path]:
    """Fetch the pinned archive into the cache, verify it, place its tree in ``context``.

    ``url`` overrides the origin's URL (a mirror); the pinned checksum still
    applies. Returns the pin, the origin, the download result (its ``sha256``
    is the one to pin when the origin had none) and the placed tree.
    """
    context = context or context_dir()
    pin, chosen = resolve(load_sources(sources_file), version, origin)
    archive = archive_path(pin, chosen)
    try:
        result = fetch(
            url or chosen.url,
            archive,
            sha256=chosen.sha256,
            size=chosen.size,
            trust_unverified=trust_unverified,
            progress=progress,
        )
    except DownloadError as error:
        raise SourceError(str(error)) from error
    if _is_placed(context, pin, result.sha256):
        return pin, chosen, result, context / TREE
    return pin, chosen, result, place_tree(archive, pin, chosen, result.sha256, context)


def vocab_path(context: Path | None = None) -> Path:
    """Return the llama-spm tokenizer GGUF of the placed source (for the tiny model)."""
    path = (context or context_dir()) / TREE / VOCAB_RELPATH
    if not path.is_file():
        raise SourceError(f"{path} is missing; run `invoke model.source` first")
    return path


def build_args(pin: Pin, manifest: dict[str, Any] | None) -> dict[str, str]:
    """Return the `--build-arg`s the model Containerfiles expect for ``pin``."""
    manifest = manifest or {}
    return {
        "LLAMA_CPP_VERSION": pin.version,
        "LLAMA_BUILD_NUMBER": str(pin.build_number),
        "LLAMA_BUILD_COMMIT": pin.commit[:9],
        "LLAMA_SOURCE_ORIGIN": str(manifest.get("origin", "unknown")),
        "LLAMA_SOURCE_SHA256": str(manifest.get("archive_sha256", "unknown")),
    }


CONTAINERFILE = "Containerfile"
"""The model-server's one Containerfile, in model-server/: every backend's stages."""
BACKENDS = answer("GPU_BACKEND").choices
"""The GPU backends it builds: the answer's choices (its ``GPU_BACKEND`` build argument
picks their stages)."""


def image_tag(version: str, backend: str = "cpu", project: str = "ai-sandbox") -> str:
    """Return the local tag of the model-server image (as compose.yaml names it)."""
    return f"localhost/{project}-model-server:{version}-{backend}"
