"""Shared by every test folder here (and, through template/tests/, by a rendered
sandbox's): tests marked ``long`` run first (see :func:`pytest_collection_modifyitems`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests marked ``long`` first, the others in their order: pytest-xdist hands
    tests out in this order, and a long test handed out last keeps one worker busy after
    the others have finished."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
