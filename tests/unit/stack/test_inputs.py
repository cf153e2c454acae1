"""An image is rebuilt when what it is built from changed, and only then: the inputs
digest each image carries as a label (sandboxctl.stack.images), against fake podman and
compose on PATH."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest
from fakes.harness import FakeTools
from fakes.stack import ROOT, calls, make_stack

from sandboxctl.host.engine import image_label
from sandboxctl.llama.source import CONTAINERFILE
from sandboxctl.stack import (
    Stack,
    StackError,
    base_image,
    build,
    images,
    model_image,
    supervisor_image,
)
from sandboxctl.stack import inputs as image_inputs

SUPERVISOR_CONTAINERFILE = ROOT / "supervisor" / "Containerfile"


def _copy_inputs(files: dict[str, Path], dest: Path) -> dict[str, Path]:
    copied = {}
    for name, path in files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied[name] = target
    return copied


def _copy_sources(names: list[str]) -> list[str]:
    """The sources of the COPY lines (not ``--from`` a stage) of a Containerfile's text."""
    sources = []
    for line in names:
        match = re.match(r"^\s*(?:COPY|ADD)\s+(.*)$", line)
        if not match or "--from=" in match.group(1):
            continue
        words = [w for w in match.group(1).split() if not w.startswith("--")]
        sources += words[:-1]
    return sources


def _covered(source: str, inputs: set[str]) -> bool:
    source = source.rstrip("/")
    return any(name == source or name.startswith(source + "/") for name in inputs)


def test_every_file_the_model_containerfile_copies_is_an_input() -> None:
    """The llama.cpp source is named by its pin (llama-cpp-sources.yaml and the version);
    every other file the build copies, in any backend's stages, is hashed itself."""
    inputs = set(image_inputs.model_inputs(ROOT))
    text = (ROOT / "model-server" / CONTAINERFILE).read_text(encoding="utf-8")
    assert CONTAINERFILE in inputs
    assert "llama-cpp-sources.yaml" in inputs
    for source in _copy_sources(text.splitlines()):
        if source.startswith("context/llama.cpp"):
            continue
        assert _covered(source, inputs), f"COPY {source} is not an input"


def test_every_file_the_supervisor_containerfile_copies_is_an_input() -> None:
    """The wheelhouse follows from requirements.lock; every other copied file is hashed."""
    inputs = set(image_inputs.supervisor_inputs(ROOT))
    sources = _copy_sources(SUPERVISOR_CONTAINERFILE.read_text(encoding="utf-8").splitlines())
    assert sources, "no COPY line read"
    for source in sources:
        if source.startswith("wheels"):
            assert "requirements.lock" in inputs
            continue
        assert _covered(source, inputs), f"COPY {source} is not an input"


def test_every_file_the_egress_containerfile_copies_is_an_input() -> None:
    """The proxy's Containerfile copies its entrypoint and the staged runtime-root script."""
    inputs = set(image_inputs.egress_inputs(ROOT))
    text = (ROOT / "egress" / "Containerfile").read_text(encoding="utf-8")
    sources = _copy_sources(text.splitlines())
    assert sources, "no COPY line read"
    for source in sources:
        assert _covered(source, inputs), f"COPY {source} is not an input"


def test_digest_is_the_same_for_the_same_inputs_anywhere(tmp_path: Path) -> None:
    """A clone elsewhere (another sandbox, a fresh machine) computes the same digest, so a
    preloaded or shared image is not rebuilt."""
    files = image_inputs.supervisor_inputs(ROOT)
    copied = _copy_inputs(files, tmp_path / "elsewhere")
    args = {"DEBIAN_IMAGE": "localhost/base:1"}
    assert image_inputs.inputs_digest(files, args) == image_inputs.inputs_digest(copied, args)


@pytest.mark.parametrize("kind", ["supervisor", "model-server", "egress"])
def test_a_change_to_any_one_input_file_changes_the_digest(kind: str, tmp_path: Path) -> None:
    files = {
        "supervisor": lambda: image_inputs.supervisor_inputs(ROOT),
        "model-server": lambda: image_inputs.model_inputs(ROOT),
        "egress": lambda: image_inputs.egress_inputs(ROOT),
    }[kind]()
    copied = _copy_inputs(files, tmp_path)
    before = image_inputs.inputs_digest(copied, {})
    for name, path in copied.items():
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert image_inputs.inputs_digest(copied, {}) != before, f"{name} does not count"
        path.write_bytes(original)
    assert image_inputs.inputs_digest(copied, {}) == before


def test_a_changed_build_argument_changes_the_digest() -> None:
    files = image_inputs.model_inputs(ROOT)
    assert image_inputs.inputs_digest(files, {"CPU_VARIANTS": "x64"}) != image_inputs.inputs_digest(
        files, {"CPU_VARIANTS": "all"}
    )


def test_caches_and_tests_are_not_inputs(tmp_path: Path) -> None:
    """Byte code, egg-info and the package's tests do not reach the image: editing them
    rebuilds nothing."""
    root = tmp_path / "sbx"
    shutil.copytree(ROOT / "supervisor" / "src", root / "supervisor" / "src")
    for name in ("Containerfile", "requirements.lock", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / "supervisor" / name, root / "supervisor" / name)
    (root / "model-server").mkdir()
    shutil.copy2(ROOT / build.RUNTIME_ROOT_SCRIPT, root / build.RUNTIME_ROOT_SCRIPT)
    before = image_inputs.inputs_digest(image_inputs.supervisor_inputs(root), {})
    cache = root / "supervisor" / "src" / "sandbox_supervisor" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "agent.cpython-311.pyc").write_bytes(b"\x00" * 16)
    (root / "supervisor" / "tests").mkdir()
    (root / "supervisor" / "tests" / "test_new.py").write_text("def test(): pass\n")
    assert image_inputs.inputs_digest(image_inputs.supervisor_inputs(root), {}) == before


def test_a_missing_input_counts_as_a_change(tmp_path: Path) -> None:
    files = _copy_inputs(image_inputs.model_inputs(ROOT), tmp_path)
    before = image_inputs.inputs_digest(files, {})
    files["healthcheck.sh"].unlink()
    assert image_inputs.inputs_digest(files, {}) != before


@pytest.mark.parametrize(
    ("carried", "rebuild", "expected"),
    [
        ({"a": "d1", "b": "d2"}, False, []),
        ({"a": None, "b": "d2"}, False, ["a"]),
        ({"a": "d1", "b": "old"}, False, ["b"]),
        ({"a": "", "b": "d2"}, False, ["a"]),
        ({"a": "d1", "b": "d2"}, True, ["a", "b"]),
    ],
    ids=["up-to-date", "missing", "changed", "unlabelled", "rebuild-asked"],
)
def test_out_of_date_images_are_missing_changed_unlabelled_or_asked_for(
    carried: dict[str, str | None], rebuild: bool, expected: list[str]
) -> None:
    assert image_inputs.out_of_date(carried, {"a": "d1", "b": "d2"}, rebuild=rebuild) == expected


def test_image_label_is_read_back_and_none_for_a_missing_image_fake_podman(
    tmp_path: Path,
) -> None:
    fakes = FakeTools.create(tmp_path, state={})
    runner = fakes.runner()
    argv = build.build_argv(tmp_path, tmp_path / "Containerfile", "sbx/x:1",
                             labels={image_inputs.INPUTS_LABEL: "abc"})  # fmt: skip
    build.build_image(argv, "sbx/x:1", runner=runner, log_file=tmp_path / "x.log",
                       log=lambda _: None)  # fmt: skip
    assert image_label(runner, "sbx/x:1", image_inputs.INPUTS_LABEL) == "abc"
    assert image_label(runner, "sbx/x:1", "other") == ""
    assert image_label(runner, "sbx/none:1", image_inputs.INPUTS_LABEL) is None


def test_the_label_is_the_last_build_step_so_layers_stay_cached() -> None:
    argv = build.build_argv(Path("c"), Path("c/Containerfile"), "t", labels={"k": "v"})
    assert argv[argv.index("--label") + 1] == "k=v"
    assert argv[-1] == "c"


NAMES = {"model-server": "sbx/model:1", "supervisor": "sbx/sup:1", "tools": "sbx/sup:1"}


def _stack_with_labels(
    tmp_path: Path, stale: tuple[str, ...] = ()
) -> tuple[Stack, Path, dict[str, str]]:
    """A stack whose fake compose names two images and whose fake podman has them labelled
    with the digests their inputs have now, except the ``stale`` services; returns the
    stack, the call log and the digests."""
    config = {"services": {service: {"image": image} for service, image in NAMES.items()}}
    answers = {f"--project-directory {ROOT} config --format json": (0, json.dumps(config))}
    built, log = make_stack(tmp_path, answers)
    wanted = image_inputs.wanted_inputs(built)
    for service, digest in wanted.items():
        if service not in NAMES:  # the egress proxy: not in this project (EGRESS_ALLOW empty)
            continue
        key = f"image inspect --format {{{{json .Labels}}}} {NAMES[service]}"
        carried = "stale" if service in stale else digest
        answers[key] = (0, json.dumps({image_inputs.INPUTS_LABEL: carried}))
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    return built, log, wanted


def test_unchanged_images_are_not_rebuilt_and_it_says_so_fake_podman(tmp_path: Path) -> None:
    built, log, _ = _stack_with_labels(tmp_path)
    messages: list[str] = []
    built.log = messages.append
    images.prepare_images(built)
    assert not [call for call in calls(log) if call[1:2] == ["build"]]
    assert messages == ["images up to date: sbx/model:1, sbx/sup:1"]


def test_only_the_image_whose_inputs_changed_is_rebuilt_with_the_new_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor's label is stale: it alone is rebuilt, labelled with the digest its
    inputs have now (the builders are replaced: their real work is tested elsewhere)."""
    built, _, wanted = _stack_with_labels(tmp_path, stale=("supervisor",))
    messages: list[str] = []
    built.log = messages.append
    done: dict[str, object] = {}
    monkeypatch.setattr(base_image, "ensure_base_image", lambda *a, **k: None)
    monkeypatch.setattr(model_image, "build_model_image", lambda *a, **k: done.update(model=k))
    monkeypatch.setattr(
        supervisor_image,
        "build_supervisor_image",
        lambda *a, **k: done.update(supervisor=k["labels"]),
    )
    images.prepare_images(built)
    assert done == {"supervisor": {image_inputs.INPUTS_LABEL: wanted["supervisor"]}}
    assert "sbx/sup:1: its inputs changed since it was built, rebuilding" in messages


def _builders_that_meet(
    monkeypatch: pytest.MonkeyPatch, side_fails: bool = False
) -> dict[str, object]:
    """Replace the builders: the model's waits (10 s at most) for the supervisor's to have
    started, so it finishes only when the two run at the same time."""
    started = threading.Event()
    seen: dict[str, object] = {}

    def model(*_args: object, **kwargs: object) -> None:
        seen["met"] = started.wait(10)

    def supervisor(*_args: object, **kwargs: object) -> None:
        started.set()
        seen["supervisor_live"] = kwargs["live"]
        if side_fails:
            raise build.ImageBuildError("supervisor build failed")

    monkeypatch.setattr(base_image, "ensure_base_image", lambda *a, **k: None)
    monkeypatch.setattr(model_image, "place_llama_source", lambda *a, **k: None)
    monkeypatch.setattr(model_image, "build_model_image", model)
    monkeypatch.setattr(supervisor_image, "build_supervisor_image", supervisor)
    return seen


def test_the_supervisor_image_builds_beside_the_model_compile_without_a_live_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both images out of date: the supervisor's build runs while the model's does (the
    model's fake returns only once the other has started), and says only when it starts."""
    built, _, _ = _stack_with_labels(tmp_path, stale=("model-server", "supervisor"))
    messages: list[str] = []
    built.log = messages.append
    seen = _builders_that_meet(monkeypatch)
    images.prepare_images(built)
    assert seen == {"met": True, "supervisor_live": False}
    assert "building sbx/sup:1 beside the model-server compile" in messages


def test_with_all_output_asked_for_the_builds_run_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--verbose` streams each build's whole output: two at once would interleave."""
    built, _, _ = _stack_with_labels(tmp_path, stale=("model-server", "supervisor"))
    built.log = lambda _line: None
    started = threading.Event()
    order: list[str] = []
    monkeypatch.setattr(base_image, "ensure_base_image", lambda *a, **k: None)
    monkeypatch.setattr(model_image, "place_llama_source", lambda *a, **k: None)
    monkeypatch.setattr(
        model_image,
        "build_model_image",
        lambda *a, **k: order.append(f"model, supervisor started: {started.is_set()}"),
    )

    def supervisor(*_args: object, **kwargs: object) -> None:
        started.set()
        order.append(f"supervisor live={kwargs['live']}")

    monkeypatch.setattr(supervisor_image, "build_supervisor_image", supervisor)
    images.prepare_images(built, verbose=True)
    assert order == ["model, supervisor started: False", "supervisor live=True"]


def test_a_failed_build_beside_the_compile_fails_up_after_the_compile_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built, _, _ = _stack_with_labels(tmp_path, stale=("model-server", "supervisor"))
    built.log = lambda _line: None
    seen = _builders_that_meet(monkeypatch, side_fails=True)
    with pytest.raises(StackError, match="supervisor build failed"):
        images.prepare_images(built)
    assert seen["met"] is True


def test_a_sandbox_inside_a_folder_named_like_a_cache_still_has_its_inputs(
    tmp_path: Path,
) -> None:
    """Only the parts of a path inside the sandbox are matched against the caches left out:
    a sandbox under ``tools.egg-info/`` or ``__pycache__/`` hashes the same files."""
    root = tmp_path / "tools.egg-info" / "sbx"
    shutil.copytree(ROOT / "supervisor" / "src", root / "supervisor" / "src")
    names = set(image_inputs.supervisor_inputs(root))
    assert names >= {n for n in image_inputs.supervisor_inputs(ROOT) if n.startswith("src/")}


def test_the_egress_proxy_gives_the_supervisor_image_its_remote_tools() -> None:
    """Turning EGRESS_ALLOW on changes the supervisor's build arguments, and so its inputs
    digest: `up` rebuilds it with git's HTTPS helper and pip's wheels, and without them
    when egress is turned off."""
    closed = supervisor_image.supervisor_build_args("localhost/base:1")
    opened = supervisor_image.supervisor_build_args("localhost/base:1", remote_tools=True)
    assert (closed["REMOTE_TOOLS"], opened["REMOTE_TOOLS"]) == ("", "https")
    files = image_inputs.supervisor_inputs(ROOT)
    assert image_inputs.inputs_digest(files, closed) != image_inputs.inputs_digest(files, opened)
