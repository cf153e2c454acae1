"""The import graph of sandboxctl flows one way: no module imports from a layer above its
own (lazy imports inside functions included). The layers, lowest first, are the ones
README.md's layout section draws."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sandboxctl"
LAYERS: dict[str, int] = {
    "errors": 0,
    "_proc": 1, "answers": 1, "_chart": 1, "_text": 1, "egress": 1, "download": 1,
    "migrations": 2, "journal": 2,
    "config": 2,
    "host": 3,
    "llama": 4,
    "catalog": 5,
    "stack": 6,
    "kube": 7, "devcontainer": 7, "scaffold": 7, "eval": 7, "bench": 7,
    "plan": 8, "runview": 8,
    "checks": 9,
    "__main__": 10, "tasks": 10,
    "invoke_entry": 11,
}  # fmt: skip


def unit_of(path: Path) -> str:
    """The top-level unit (module or subpackage) a file of sandboxctl belongs to."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(path: Path) -> set[str]:
    """The sandboxctl units ``path`` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "sandboxctl":
                found |= {alias.name for alias in node.names} if len(parts) == 1 else {parts[1]}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sandboxctl.")}
    return found - {"__init__"}


FILES = sorted(p for p in PACKAGE.rglob("*.py") if unit_of(p) != "__init__")


def test_every_unit_has_a_layer() -> None:
    assert {unit_of(path) for path in FILES} <= set(LAYERS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_reaches_a_layer_above(path: Path) -> None:
    own = unit_of(path)
    upward = sorted(
        unit for unit in imported_units(path) - {own} if LAYERS.get(unit, 99) >= LAYERS[own]
    )
    assert upward == [], f"{own} (layer {LAYERS[own]}) imports {upward} from its layer or above"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself can fail: an import of tasks from host is found."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from sandboxctl.tasks import stack\n")
    assert imported_units(module) == {"tasks"}
