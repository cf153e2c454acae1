"""Unit tests of sandboxctl.llama.source: pins, verified placement, build command.

Archives are small fabricated sdists served by a real HTTP server on
127.0.0.1; the cache lives under a temporary XDG_CACHE_HOME.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandboxctl.llama import source as llama_source

SUBDIR = "llama_cpp_python-9.9.9/vendor/llama.cpp"


def make_sdist(path: Path, files: dict[str, bytes]) -> str:
    """Write a .tar.gz with ``files`` (archive paths) and return its SHA-256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def good_files() -> dict[str, bytes]:
    return {
        "llama_cpp_python-9.9.9/PKG-INFO": b"Name: llama-cpp-python\n",
        f"{SUBDIR}/CMakeLists.txt": b"project(llama.cpp)\n",
        f"{SUBDIR}/tools/server/server.cpp": b"int main() {}\n",
        f"{SUBDIR}/models/ggml-vocab-llama-spm.gguf": b"GGUF-vocab",
    }


def write_pins(path: Path, url: str, sha256: str | None, subdir: str = SUBDIR) -> Path:
    data = {
        "schema": 1,
        "default_version": "b1",
        "default_origin": "pypi",
        "versions": {
            "b1": {
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "build_number": 1,
                "origins": {
                    "pypi": {
                        "url": url,
                        "sha256": sha256,
                        "size": None,
                        "subdir": subdir,
                        "sha256_source": "https://pypi.example/simple/x/" if sha256 else None,
                    }
                },
            }
        },
    }
    path.write_text(yaml.safe_dump(data), "utf-8")
    return path


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """Serve tmp_path/www over HTTP; the cache goes to tmp_path/cache."""
    www = tmp_path / "www"
    www.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_repository_pin_file_pins_the_pypi_sdist_with_a_cited_checksum() -> None:
    sources = llama_source.load_sources()
    pin, origin = llama_source.resolve(sources, None, None)
    assert pin.version == sources.default_version
    assert origin.name == "pypi"
    assert origin.sha256 is not None
    assert origin.sha256_source


def test_repository_pin_file_github_origin_has_no_uncited_checksum() -> None:
    pin = llama_source.load_sources().pins["b11312"]
    github = pin.origins["github"]
    assert github.url.endswith("/refs/tags/b11312.tar.gz")
    assert github.sha256 is None or github.sha256_source


def test_unknown_version_names_the_pinned_ones(tmp_path: Path) -> None:
    pins = write_pins(tmp_path / "p.yaml", "https://x/a.tar.gz", "a" * 64)
    with pytest.raises(llama_source.SourceError, match=r"'b999' is not pinned.*pinned: b1"):
        llama_source.resolve(llama_source.load_sources(pins), "b999", None)


def test_checksum_without_its_source_is_rejected(tmp_path: Path) -> None:
    pins = write_pins(tmp_path / "p.yaml", "https://x/a.tar.gz", "a" * 64)
    data = yaml.safe_load(pins.read_text())
    data["versions"]["b1"]["origins"]["pypi"]["sha256_source"] = None
    with pytest.raises(llama_source.SourceError, match="sha256_source"):
        llama_source.parse_sources(data)


def test_place_source_verifies_then_places_tree_and_manifest(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    www, base = served
    sha = make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", sha)
    context = tmp_path / "context"
    _pin, _origin, result, tree = llama_source.place_source(context=context, sources_file=pins)
    assert result.verified
    assert result.sha256 == sha
    assert (tree / "tools/server/server.cpp").read_bytes() == b"int main() {}\n"
    assert not (tree / "PKG-INFO").exists()
    manifest = llama_source.read_manifest(context)
    assert manifest is not None
    assert (manifest["version"], manifest["archive_sha256"]) == ("b1", sha)
    assert llama_source.vocab_path(context).read_bytes() == b"GGUF-vocab"
    assert sorted(p.name for p in context.iterdir()) == ["llama.cpp", "source.json"]


def test_checksum_mismatch_leaves_previous_context_and_cache_clean(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    www, base = served
    sha = make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", sha)
    context = tmp_path / "context"
    llama_source.place_source(context=context, sources_file=pins)
    before = llama_source.read_manifest(context)
    write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", "f" * 64)
    cached = llama_source.archive_path(
        *llama_source.resolve(llama_source.load_sources(pins), None, None)
    )
    cached.unlink()
    with pytest.raises(llama_source.SourceError, match="SHA-256 mismatch"):
        llama_source.place_source(context=context, sources_file=pins)
    assert llama_source.read_manifest(context) == before
    assert (context / "llama.cpp" / "CMakeLists.txt").is_file()
    assert list(cached.parent.iterdir()) == []


def test_unpinned_origin_is_refused_without_trust_unverified(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    www, base = served
    make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", None)
    context = tmp_path / "context"
    with pytest.raises(llama_source.SourceError, match="--trust-unverified"):
        llama_source.place_source(context=context, sources_file=pins)
    assert not context.exists()


def test_unpinned_origin_with_trust_unverified_reports_computed_checksum(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    www, base = served
    sha = make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", None)
    _pin, _origin, result, _tree = llama_source.place_source(
        context=tmp_path / "context", sources_file=pins, trust_unverified=True
    )
    assert (result.sha256, result.verified) == (sha, False)
    manifest = llama_source.read_manifest(tmp_path / "context")
    assert manifest is not None
    assert manifest["verified"] is False


def test_missing_archive_version_gives_clear_http_error(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    _www, base = served
    pins = write_pins(tmp_path / "p.yaml", f"{base}/no-such.tar.gz", "a" * 64)
    with pytest.raises(llama_source.SourceError, match="HTTP 404"):
        llama_source.place_source(context=tmp_path / "context", sources_file=pins)
    assert not (tmp_path / "context").exists()


def test_same_pin_already_placed_is_not_extracted_again(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    www, base = served
    sha = make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", sha)
    context = tmp_path / "context"
    llama_source.place_source(context=context, sources_file=pins)
    marker = context / "llama.cpp" / "marker"
    marker.write_text("kept")
    llama_source.place_source(context=context, sources_file=pins)
    assert marker.read_text() == "kept"


def test_wrong_subdir_fails_and_leaves_no_staging(served: tuple[Path, str], tmp_path: Path) -> None:
    www, base = served
    sha = make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", sha, subdir="elsewhere")
    context = tmp_path / "context"
    with pytest.raises(llama_source.SourceError, match=r"no llama\.cpp tree"):
        llama_source.place_source(context=context, sources_file=pins)
    assert list(context.iterdir()) == []


def _escaping_member(kind: str) -> tarfile.TarInfo:
    """One archive member of the escape class: each would reach outside the tree."""
    if kind == "climbing name":
        return tarfile.TarInfo(f"{SUBDIR}/../../../../escape.txt")
    member = tarfile.TarInfo(f"{SUBDIR}/evil")
    if kind == "absolute link":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/hostname"
    elif kind == "symbolic link out":
        member.type, member.linkname = tarfile.SYMTYPE, "../../../../etc/hostname"
    elif kind == "hard link out":
        member.type, member.linkname = tarfile.LNKTYPE, f"{SUBDIR}/../../../../etc/hostname"
    elif kind == "device":
        member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "fifo":
        member.type = tarfile.FIFOTYPE
    return member


@pytest.mark.parametrize(
    "kind",
    ["climbing name", "absolute link", "symbolic link out", "hard link out", "device", "fifo"],
)
def test_member_escaping_the_tree_is_refused(
    served: tuple[Path, str], tmp_path: Path, kind: str
) -> None:
    """Every member that would reach outside the tree is refused (the "data" extraction
    filter, from backports.tarfile on Python 3.11), and nothing is written outside."""
    www, base = served
    archive = www / "sdist.tar.gz"
    make_sdist(archive, good_files())
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]  # type: ignore[union-attr]
    escaping = _escaping_member(kind)
    payload = b"x" if escaping.isfile() else None
    if payload is not None:
        escaping.size = len(payload)
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in [*members, (escaping, payload)]:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", sha)
    with pytest.raises(llama_source.SourceError, match="refused"):
        llama_source.place_source(context=tmp_path / "context", sources_file=pins)
    assert not (tmp_path / "escape.txt").exists()


def test_source_is_placed_without_tarfile_filters(
    served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without extraction filters a well-formed source still places, modes sanitised."""
    monkeypatch.delattr("tarfile.data_filter", raising=False)
    www, base = served
    sha = make_sdist(www / "sdist.tar.gz", good_files())
    pins = write_pins(tmp_path / "p.yaml", f"{base}/sdist.tar.gz", sha)
    _pin, _origin, _result, tree = llama_source.place_source(
        context=tmp_path / "context", sources_file=pins
    )
    assert (tree / "CMakeLists.txt").is_file()


def test_the_image_tag_is_the_one_compose_yaml_names() -> None:
    """compose.yaml cannot call image_tag: the two spell the model image's tag alike."""
    compose = yaml.safe_load((Path(__file__).resolve().parents[3] / "compose.yaml").read_text())
    answers = {"COMPOSE_PROJECT_NAME": "sbx", "LLAMA_CPP_VERSION": "b1", "GPU_BACKEND": "cuda"}
    image = re.sub(
        r"\$\{(\w+)[^}]*\}", lambda m: answers[m[1]], compose["services"]["model-server"]["image"]
    )
    assert image == llama_source.image_tag("b1", "cuda", "sbx")
