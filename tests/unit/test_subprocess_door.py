"""``Runner`` (sandboxctl/_proc.py) is the one door to subprocesses: no other module of
sandboxctl imports ``subprocess`` (at the top or inside a function) or starts a process
through ``os``, so every command can be run against fake executables on ``PATH``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sandboxctl"
DOOR = PACKAGE / "_proc.py"
OS_STARTERS = ("system", "popen", "exec", "spawn", "posix_spawn", "fork")
"""Names (or name prefixes: ``execvp``, ``spawnl``) of ``os``'s own ways to start a process."""


def _starts_a_process(name: str) -> bool:
    return name.startswith(OS_STARTERS)


def process_doors(path: Path) -> list[str]:
    """Each place ``path`` imports ``subprocess`` or uses ``os`` to start a process, as
    ``LINE: what``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "subprocess"
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            names = [alias.name for alias in node.names]
            if top == "subprocess" or (
                node.module == "os" and any(_starts_a_process(name) for name in names)
            ):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(names)}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and _starts_a_process(node.attr)
        ):
            found.append(f"{node.lineno}: os.{node.attr}")
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_runner_starts_processes(path: Path) -> None:
    doors = process_doors(path)
    if path == DOOR:
        assert any("import subprocess" in door for door in doors)
    else:
        assert doors == [], f"{path.relative_to(PACKAGE)}: use sandboxctl._proc.Runner"


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess\n",
        "import os, subprocess as sp\n",
        "from subprocess import run\n",
        "def f():\n    from subprocess import PIPE, Popen\n",
        "class A:\n    def f(self):\n        import subprocess\n",
        "import os\nos.system('true')\n",
        "import os\nos.execvp('true', ['true'])\n",
        "from os import posix_spawnp\n",
    ],
)
def test_the_check_sees_every_way_in(tmp_path: Path, source: str) -> None:
    """The checker itself can fail: each form of import or ``os`` call is found."""
    module = tmp_path / "bad.py"
    module.write_text(source)
    assert len(process_doors(module)) == 1


def test_the_check_leaves_other_imports_alone(tmp_path: Path) -> None:
    module = tmp_path / "good.py"
    module.write_text(
        "import os\nfrom os import environ\nfrom sandboxctl._proc import Runner\n"
        "os.environ.get('PATH')\nRunner().run(['true'])\n"
    )
    assert process_doors(module) == []
