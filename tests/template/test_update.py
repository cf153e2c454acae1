"""`copier update`: a sandbox rendered from an older release takes template changes and
keeps its owner's edits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from template_support import ROOT

from sandboxctl import scaffold


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity and return its output."""
    result = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def snapshot_template(dest: Path) -> Path:
    """Copy the template's working tree (tracked and untracked, not ignored) into a new repo."""
    listed = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "template v1")
    git(dest, "tag", "v1.0.0")
    return dest


@pytest.mark.long  # copier copy, git commits and copier update: seconds
def test_update_keeps_user_edit_and_applies_template_change(tmp_path: Path) -> None:
    """From tag v1.0.0 to HEAD: the user's edit survives, the template's new line lands,
    and no merge conflict is left in the file."""
    template = snapshot_template(tmp_path / "template")
    sandbox = tmp_path / "sandbox"
    scaffold.render(sandbox, src=template, vcs_ref="v1.0.0")
    git(sandbox, "init", "-q", "-b", "main")
    env = sandbox / ".env"
    env.write_text(env.read_text().replace("MACHINE_CPUS=4\n", "MACHINE_CPUS=8\n"))
    git(sandbox, "add", "-A")
    git(sandbox, "commit", "-q", "-m", "sandbox with my edit")

    env_template = template / "template" / ".env.jinja"
    env_template.write_text(env_template.read_text() + "TEMPLATE_SETTING=new\n")
    git(template, "commit", "-q", "-am", "template v2")
    git(template, "tag", "v2.0.0")

    from copier import run_update

    run_update(str(sandbox), defaults=True, overwrite=True, unsafe=True, quiet=True)

    lines = env.read_text().splitlines()
    assert "MACHINE_CPUS=8" in lines
    assert "MACHINE_CPUS=4" not in lines
    assert "TEMPLATE_SETTING=new" in lines
    assert not [line for line in lines if line.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
    answers = yaml.safe_load((sandbox / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v2.0.0"


@pytest.mark.long  # copier copy, git commits and copier update: seconds
def test_user_catalog_is_never_rendered_nor_overwritten(tmp_path: Path) -> None:
    """model-server/catalog.local.yaml is the user's: a developer's copy in the template
    repository is not rendered, and `copier update` leaves the sandbox's own one as it was."""
    template = tmp_path / "template"
    template.mkdir()
    (template / "model-server").mkdir()
    (template / "model-server" / "catalog.local.yaml").write_text(
        "schema: 1\nmodels: {}\n# dev's\n"
    )
    snapshot_template(template)  # commits it too, as a careless `git add -A` would
    assert "model-server/catalog.local.yaml" in git(template, "ls-files", "model-server")
    sandbox = tmp_path / "sandbox"
    scaffold.render(sandbox, src=template, vcs_ref="v1.0.0")
    local = sandbox / "model-server" / "catalog.local.yaml"
    assert not local.exists()

    git(sandbox, "init", "-q", "-b", "main")
    mine = "schema: 1\nmodels: {}  # my models\n"
    local.write_text(mine)
    git(sandbox, "add", "-A")
    git(sandbox, "commit", "-q", "-m", "sandbox with my catalog")
    catalog_file = template / "model-server" / "catalog.yaml"
    catalog_file.write_text(catalog_file.read_text() + "# template v2\n")
    git(template, "commit", "-q", "-am", "template v2")
    git(template, "tag", "v2.0.0")

    from copier import run_update

    run_update(str(sandbox), defaults=True, overwrite=True, unsafe=True, quiet=True)

    assert local.read_text() == mine
    assert (sandbox / "model-server" / "catalog.yaml").read_text().endswith("# template v2\n")


@pytest.mark.long  # copier copy, git commits and copier update: seconds
def test_update_keeps_every_executable_bit(tmp_path: Path) -> None:
    """After `copier update` from an older release, the files the template ships executable
    are still executable (the bit is not lost by re-rendering)."""
    template = snapshot_template(tmp_path / "template")
    sandbox = tmp_path / "sandbox"
    scaffold.render(sandbox, src=template, vcs_ref="v1.0.0")
    git(sandbox, "init", "-q", "-b", "main")
    git(sandbox, "add", "-A")
    git(sandbox, "commit", "-q", "-m", "sandbox")
    script = template / "template" / "bootstrap.sh"
    script.write_text(script.read_text() + "# template v2\n")
    git(template, "commit", "-q", "-am", "template v2")
    git(template, "tag", "v2.0.0")

    from copier import run_update

    run_update(str(sandbox), defaults=True, overwrite=True, unsafe=True, quiet=True)

    executables = git(template, "ls-files", "-s", "template", "model-server", "supervisor")
    shipped = [
        line.split("\t", 1)[1] for line in executables.splitlines() if line.startswith("100755")
    ]
    assert "template/bootstrap.sh" in shipped
    rendered = [name.removeprefix("template/") for name in shipped]
    assert (sandbox / "bootstrap.sh").read_text().endswith("# template v2\n")
    lost = [name for name in rendered if not (sandbox / name).stat().st_mode & 0o100]
    assert lost == []


@pytest.mark.long  # copier copy, git commits and copier update: seconds
def test_update_across_the_model_folder_rename_keeps_the_users_files(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """From a release with model/ to one with model-server/: Copier renders the new folder,
    and the migration moves the user's catalog into it and names their edit of a file the
    template shipped in model/."""
    template = snapshot_template(tmp_path / "template")
    git(template, "mv", "model-server", "model")
    (template / "template" / "model-server").unlink()
    (template / "template" / "model").symlink_to("../model")
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "as 0.1.0 was: model/")
    git(template, "tag", "v0.1.0")
    git(template, "revert", "--no-edit", "HEAD")
    git(template, "tag", "v0.2.0")
    sandbox = tmp_path / "sandbox"
    scaffold.render(sandbox, src=template, vcs_ref="v0.1.0")
    mine = "schema: 1\nmodels: {}  # my models\n"
    (sandbox / "model" / "catalog.local.yaml").write_text(mine)
    catalog_file = sandbox / "model" / "catalog.yaml"
    catalog_file.write_text(catalog_file.read_text() + "# my edit\n")
    git(sandbox, "init", "-q", "-b", "main")
    git(sandbox, "add", "-A")
    git(sandbox, "commit", "-q", "-m", "sandbox with my catalog and edit")

    from copier import run_update

    run_update(str(sandbox), defaults=True, overwrite=True, unsafe=True, quiet=True)

    assert not (sandbox / "model").exists()
    assert (sandbox / "model-server" / "catalog.local.yaml").read_text() == mine
    assert (sandbox / "model-server" / "Containerfile").is_file()
    told = capfd.readouterr().out
    assert "moved model/catalog.local.yaml to model-server/catalog.local.yaml" in told
    assert "model/catalog.yaml as committed differs from model-server/catalog.yaml" in told
    assert "# my edit" in git(sandbox, "show", "HEAD:model/catalog.yaml")
