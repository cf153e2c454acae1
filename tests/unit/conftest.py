"""The unit tests mirror sandboxctl's packages (tests/unit/stack/ tests sandboxctl/stack/,
...); the shared fakes and samples stay here, and this file puts this folder on
``sys.path`` for every test below it (pytest's prepend import mode adds a conftest's
folder), so ``from fakes.stack import make_stack`` works from any of them.

Tests marked ``long`` run first (see :func:`pytest_collection_modifyitems`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests marked ``long`` first, the others in their order: pytest-xdist hands
    tests out in this order, and a long test handed out last keeps one worker busy after
    the others have finished."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
