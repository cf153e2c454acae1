"""A rendered sandbox's own quick checks pass in a render whose answers are not the
template's: its tests must not depend on the template's project name, port or labels.

The render runs `./bootstrap.sh nox -s lint tests supervisor` exactly as its README tells
its users (its own .venv and Nox sessions, real ruff, mypy, shellcheck, pytest); minutes,
because that is what it costs a user. The folder is named unlike the slug, as a user's
may be. This is the one run of a rendered sandbox's own unit tests: the template root's
`nox -s tests` runs the same tests with the default answers, so a second rendered run
with the defaults (98 s in CI) was dropped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from template_support import ROOT

from sandboxctl import scaffold

OTHER_ANSWERS = {"project_name": "Other Box", "project_slug": "r1-other", "model_port": 8181}
"""The names and the port, which tests used to take from the template root's own .env.
(The other answers change the stack's shape; `test_render` renders every one of them.)"""


def test_rendered_sandbox_quick_checks_pass_with_other_answers(tmp_path: Path) -> None:
    dest = scaffold.render(tmp_path / "other-box", OTHER_ANSWERS, src=ROOT)
    result = subprocess.run(
        ["./bootstrap.sh", "nox", "-s", "lint", "tests", "supervisor"],
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
    assert "Session supervisor was successful" in output
