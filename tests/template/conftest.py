"""Fixtures of the template tests: the template root, its questions and rendered sandboxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from template_support import ROOT

from sandboxctl import scaffold


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
