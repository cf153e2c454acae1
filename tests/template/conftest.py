"""Fixtures of the template tests: the template root, its questions and rendered sandboxes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import compose as compose_pkg
import pytest

from sandboxctl import scaffold

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def questions() -> dict[str, dict[str, Any]]:
    """The questions of copier.yml."""
    return scaffold.load_questions(ROOT)


@pytest.fixture(scope="session")
def default_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox rendered once with every default answer, into a folder named like the
    template root's own project (the slug defaults to the folder's name)."""
    dest = tmp_path_factory.mktemp("default") / "ai-sandbox"
    scaffold.render(dest, src=ROOT)
    return dest


def compose_config(project: Path) -> subprocess.CompletedProcess[str]:
    """Run `docker compose config -q` (Compose v2, no engine needed) in ``project``."""
    binary = Path(compose_pkg.__file__).parent / "docker-compose"
    return subprocess.run(
        [str(binary), "config", "-q"], cwd=project, capture_output=True, text=True, check=False
    )
