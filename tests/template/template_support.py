"""What the template tests share: the template root and Compose v2's own ``config``.

Tests import these names from here (``from template_support import ...``), never from
``conftest``: pytest loads every folder's conftest under the one name ``conftest``, so an
import of it finds whichever folder's was loaded last. ``conftest.py`` holds the fixtures.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import compose as compose_pkg

ROOT = Path(__file__).resolve().parents[2]


def compose_config(project: Path) -> subprocess.CompletedProcess[str]:
    """Run `docker compose config -q` (Compose v2, no engine needed) in ``project``."""
    binary = Path(compose_pkg.__file__).parent / "docker-compose"
    return subprocess.run(
        [str(binary), "config", "-q"], cwd=project, capture_output=True, text=True, check=False
    )
