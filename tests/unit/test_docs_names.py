"""The guides name images the way every sandbox has them: a rendered sandbox's images are
named after its own project (its folder), so no guide may give the template's names as
the ones to type (the base image, shared by every sandbox, is the one fixed name)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_IMAGE = re.compile(r"localhost/ai-sandbox-(?!base:)[a-z0-9-]+")


def test_guides_name_no_image_of_one_project() -> None:
    found = {
        path.relative_to(ROOT).as_posix(): PROJECT_IMAGE.findall(path.read_text("utf-8"))
        for path in sorted((ROOT / "docs").glob("*.md"))
    }
    assert {name: images for name, images in found.items() if images} == {}
