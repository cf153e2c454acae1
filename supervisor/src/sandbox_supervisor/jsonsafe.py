"""Parsing JSON from untrusted peers (a model server, a model's arguments, a client).

:func:`loads` accepts only what JSON allows: ``NaN``, ``Infinity`` and
``-Infinity`` (which Python's parser takes by default) are refused, nesting deeper
than the parser's recursion allowance is refused instead of raising
``RecursionError``, numbers too large for a float are refused, and lone UTF-16
surrogates (``"\\udada"``, which UTF-8 cannot encode) become U+FFFD. Anything wrong
raises ``ValueError`` and nothing else, so a caller turns it into a message.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def without_lone_surrogates(value: Any) -> Any:
    """Replace lone UTF-16 surrogates with U+FFFD in every string of a parsed value."""
    stack = [value]
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    while stack:  # iterative: the value may be deep
        node = stack.pop()
        items: Any
        if isinstance(node, list):
            items = enumerate(node)
        elif isinstance(node, dict):
            if any(isinstance(k, str) and _SURROGATE.search(k) for k in node):
                fixed = {_SURROGATE.sub("\ufffd", k): v for k, v in node.items()}
                node.clear()
                node.update(fixed)
            items = list(node.items())
        else:
            continue
        for key, item in items:
            if isinstance(item, str):
                node[key] = _SURROGATE.sub("\ufffd", item)
            elif isinstance(item, list | dict):
                stack.append(item)
    return value


def loads(text: str | bytes) -> Any:
    """Parse strict JSON (see the module docstring); raise ``ValueError`` on anything wrong."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"not JSON text: {exc}") from None
    return without_lone_surrogates(value)
