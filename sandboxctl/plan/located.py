"""YAML with line numbers: every key path of a document mapped to the line that writes it,
so each drift the plan check finds points at a file and a line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sandboxctl.errors import SandboxError

Path_ = tuple[Any, ...]


class PlanError(SandboxError):
    """PLAN.md cannot be read or its machine-readable section is malformed."""

    exit_code = 2


@dataclass
class Located:
    """A parsed YAML document plus the line of each key path (1-based, in ``file``)."""

    file: str
    data: Any
    lines: dict[Path_, int]

    def has(self, *path: Any) -> bool:
        """Tell whether ``path`` was written in this document."""
        return tuple(path) in self.lines

    def line(self, *path: Any) -> int:
        """Return the line of ``path``, or of its nearest written ancestor (1 at worst)."""
        keys = tuple(path)
        while keys:
            if keys in self.lines:
                return self.lines[keys]
            keys = keys[:-1]
        return 1

    def depth(self, *path: Any) -> int:
        """Return how many leading keys of ``path`` this document writes."""
        keys = tuple(path)
        while keys and keys not in self.lines:
            keys = keys[:-1]
        return len(keys)


class _Constructor(SafeConstructor):
    """Builds plain scalars from composed nodes (ints, bools, nulls, strings)."""


def _scalar(node: ScalarNode) -> Any:
    return _Constructor().construct_object(node, deep=True)


def _convert(
    node: Node,
    path: Path_,
    lines: dict[Path_, int],
    offset: int,
) -> Any:
    if isinstance(node, ScalarNode):
        return _scalar(node)
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            line = item.start_mark.line + 1 + offset
            value = _convert(item, (*path, index), lines, offset)
            lines[(*path, index)] = line
            if isinstance(value, str | int | bool):
                lines.setdefault((*path, str(value)), line)
            items.append(value)
        return items
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "<<":
                merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in merged:
                    base = _convert(source, path, lines, offset)
                    if isinstance(base, dict):
                        for key, value in base.items():
                            result.setdefault(key, value)
                continue
            key = _convert(key_node, path, {}, offset)
            lines[(*path, key)] = key_node.start_mark.line + 1 + offset
            result[key] = _convert(value_node, (*path, key), lines, offset)
        return result
    return None


def load_located(text: str, file: str, *, offset: int = 0) -> Located:
    """Parse one YAML document, recording the line of every key (``offset`` lines added).

    Merge keys (``<<: *anchor``) are applied; the merged keys keep the anchor's lines.
    Values are read as written: the interpolated model comes from Compose itself.
    """
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = (mark.line + 1 + offset) if mark is not None else 1
        raise PlanError(f"{file}:{line}: not valid YAML: {error}") from error
    lines: dict[Path_, int] = {}
    data = _convert(node, (), lines, offset) if node is not None else None
    return Located(file, data, lines)
