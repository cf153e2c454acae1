"""One rule for where a sandbox is: the folder the command stands in, never the location of
the installed package, so the template's environment run inside a rendered sandbox (the
demo's folder) reads and writes that sandbox's files, not the template's."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxctl import scaffold
from sandboxctl.catalog import catalog
from sandboxctl.config import find_root
from sandboxctl.host import prepare
from sandboxctl.llama import source

PACKAGE = Path(__file__).resolve().parents[2] / "sandboxctl"
ALLOWED = {
    # The environment's own sandbox, named in the "no sandbox here" message only.
    "invoke_entry.py",
    # Package data shipped with the code (the bundled eval suite), not a sandbox file.
    "eval/taskfile.py",
}


@pytest.fixture
def other_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sandbox elsewhere (answers file, tasks.py), with the working directory in a
    subfolder of it; no SANDBOX_MODEL_DIR override."""
    root = tmp_path / "demo-sandbox"
    (root / "model-server" / "sub").mkdir(parents=True)
    (root / ".copier-answers.yml").write_text("_src_path: x\n")
    (root / "tasks.py").write_text("")
    monkeypatch.chdir(root / "model-server" / "sub")
    monkeypatch.delenv("SANDBOX_MODEL_DIR", raising=False)
    return root


def test_root_is_the_folder_with_the_answers_file_above_the_working_directory(
    other_sandbox: Path,
) -> None:
    assert find_root() == other_sandbox


def test_models_are_fetched_into_the_sandbox_stood_in(other_sandbox: Path) -> None:
    """`model.fetch`/`model.add` write into this sandbox's models/, not the package's."""
    assert catalog.model_dir() == other_sandbox / "models"


def test_catalogs_are_those_of_the_sandbox_stood_in(other_sandbox: Path) -> None:
    assert catalog.catalog_file() == other_sandbox / "model-server" / "catalog.yaml"
    assert catalog.local_catalog_path() == other_sandbox / "model-server" / "catalog.local.yaml"


def test_llama_source_is_placed_in_the_sandbox_stood_in(other_sandbox: Path) -> None:
    assert source.sources_file() == other_sandbox / "model-server" / "llama-cpp-sources.yaml"
    assert source.context_dir() == other_sandbox / "model-server" / "context"


def test_package_list_is_read_from_the_sandbox_stood_in(other_sandbox: Path) -> None:
    (other_sandbox / "requirements").mkdir()
    (other_sandbox / "requirements" / "debian-packages.txt").write_text("only-this  # x\n")
    assert prepare.read_package_list() == ("only-this",)


def test_importing_the_tooling_reads_no_sandbox_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Import time reads nothing from the working directory's project: `invoke` loads
    tasks.py in folders that lack the package list or the catalog (a test's temporary
    sandbox) and must still start."""
    monkeypatch.chdir(tmp_path)
    code = "import tasks, sandboxctl.__main__"
    env = {"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_rendered_sandbox_is_not_the_template(other_sandbox: Path) -> None:
    assert not scaffold.is_template_repository()


def uses_own_location(path: Path) -> bool:
    """Whether a module derives a path from ``__file__`` (its own location)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.Name) and node.id == "__file__" for node in ast.walk(tree))


def test_no_module_finds_the_sandbox_from_its_own_location() -> None:
    """Only the allowed modules look at ``__file__``; every other path to a sandbox file
    goes through find_root()."""
    offenders = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if uses_own_location(path) and path.relative_to(PACKAGE).as_posix() not in ALLOWED
    ]
    assert offenders == []
