"""Unit tests of sandboxctl.migrations: what `copier update` does after rendering a sandbox
from before the model image's folder was renamed (model/ to model-server/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sandboxctl import migrations


def git(cwd: Path, *args: str) -> None:
    """Run git in ``cwd`` with a fixed identity."""
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd, check=True, capture_output=True,
    )  # fmt: skip


def updated_sandbox(root: Path) -> Path:
    """A sandbox as Copier leaves it: model/ committed with the owner's edit and catalog,
    then the template's files rendered into model-server/ and removed from model/."""
    old = root / "model"
    (old / "context" / "llama.cpp").mkdir(parents=True)
    (old / "context" / "llama.cpp" / "CMakeLists.txt").write_text("cmake\n")
    (old / "catalog.yaml").write_text("models: {tiny: {}}\n# my edit\n")
    (old / "catalog.local.yaml").write_text("models: {mine: {}}\n")
    (old / "Containerfile").write_text("FROM scratch\n")
    (root / ".gitignore").write_text("/model/context/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "sandbox")
    new = root / "model-server"
    new.mkdir()
    for name in ("catalog.yaml", "Containerfile"):
        (old / name).unlink()  # Copier removes what it rendered before...
    (new / "catalog.yaml").write_text("models: {tiny: {}}\n")  # ...and renders it here
    (new / "Containerfile").write_text("FROM scratch\n")
    return root


def test_the_owners_files_follow_the_folder_and_model_goes(tmp_path: Path) -> None:
    root = updated_sandbox(tmp_path)
    lines = migrations.move_model_folder(root)
    assert not (root / "model").exists()
    assert (root / "model-server/catalog.local.yaml").read_text() == "models: {mine: {}}\n"
    assert (root / "model-server/context/llama.cpp/CMakeLists.txt").read_text() == "cmake\n"
    assert "moved model/catalog.local.yaml to model-server/catalog.local.yaml" in lines
    assert "moved model/context to model-server/context" in lines


def test_an_edited_template_file_is_named_with_the_command_that_shows_it(
    tmp_path: Path,
) -> None:
    lines = migrations.move_model_folder(updated_sandbox(tmp_path))
    named = [line for line in lines if "differs" in line]
    assert named == [
        "model/catalog.yaml as committed differs from model-server/catalog.yaml (your edit, "
        "or the template's): `git show HEAD:model/catalog.yaml | diff - "
        "model-server/catalog.yaml` shows how"
    ]


def test_a_name_taken_in_model_server_is_kept_where_it_was(tmp_path: Path) -> None:
    root = updated_sandbox(tmp_path)
    (root / "model-server" / "catalog.local.yaml").write_text("theirs\n")
    lines = migrations.move_model_folder(root)
    assert (root / "model/catalog.local.yaml").read_text() == "models: {mine: {}}\n"
    assert (root / "model-server/catalog.local.yaml").read_text() == "theirs\n"
    assert any(line.startswith("kept model/catalog.local.yaml") for line in lines)


def test_nothing_happens_once_model_is_gone(tmp_path: Path) -> None:
    (tmp_path / "model-server").mkdir()
    assert migrations.move_model_folder(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-server"]
