"""A rendered sandbox's own quick checks pass in a render whose answers are not the
template's: its tests must not depend on the template's project name, port or labels.

The render runs `./bootstrap.sh nox -s lint tests` exactly as its README tells its users
(its own .venv and Nox sessions, real ruff, mypy, shellcheck, pytest); minutes, because
that is what it costs a user. The folder is named unlike the slug, as a user's may be.
This is the one run of a rendered sandbox's own unit tests: the template root's
`nox -s tests` runs the same tests with the default answers, so a second rendered run
with the defaults (98 s in CI) was dropped. The supervisor package is copied into a
render byte for byte (no answer reaches it, which this test checks), so its tests are
not run here a third time (35 s): they run in the root's `nox -s supervisor` and, inside
a rendered sandbox with the sandbox's settings in their environment, in the dev
container (`nox -s devcontainer`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from template_support import ROOT

from sandboxctl import scaffold

OTHER_ANSWERS = {"project_name": "Other Box", "project_slug": "r1-other", "model_port": 8181}
"""The names and the port, which tests used to take from the template root's own .env.
(The other answers change the stack's shape; `test_render` renders every one of them.)"""


@pytest.mark.long  # a user's bootstrap, lint and unit tests: a minute and more
def test_rendered_sandbox_quick_checks_pass_with_other_answers(tmp_path: Path) -> None:
    dest = scaffold.render(tmp_path / "other-box", OTHER_ANSWERS, src=ROOT)
    result = subprocess.run(
        ["./bootstrap.sh", "nox", "-s", "lint", "tests"],
        cwd=dest,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    output = result.stdout + result.stderr
    failed = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, "\n".join([*failed, output[-4000:]])
    assert "Session lint was successful" in output
    assert "Session tests was successful" in output


def tracked_files(folder: Path) -> dict[str, bytes]:
    """The files git tracks under ``folder`` of the template, by path within it."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--", "."], cwd=folder, capture_output=True, check=True
    )
    names = filter(None, listing.stdout.decode().split("\0"))
    return {name: (folder / name).read_bytes() for name in names}


def rendered_files(folder: Path) -> dict[str, bytes]:
    """Every file under a rendered ``folder``, by path within it."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_rendered_supervisor_is_the_templates_byte_for_byte(tmp_path: Path) -> None:
    """Why the rendered quick checks leave the supervisor's tests to the other sessions: no
    answer changes a file of the package (sources, tests, lock, Containerfile)."""
    dest = scaffold.render(tmp_path / "other-box", OTHER_ANSWERS, src=ROOT)
    template, rendered = tracked_files(ROOT / "supervisor"), rendered_files(dest / "supervisor")
    assert sorted(rendered) == sorted(template)
    assert [name for name in template if rendered[name] != template[name]] == []
