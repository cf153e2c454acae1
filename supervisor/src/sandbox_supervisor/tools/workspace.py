"""Confinement of every path a tool touches to the workspace root.

A path from the model is relative to the workspace root. It is refused when it is
absolute, contains a NUL byte, is longer than ``MAX_PATH`` or has a component
longer than ``MAX_NAME``, or when resolving it for real (``..`` and every symbolic
link, in the path itself or in a parent directory) lands outside the root. A
dangling link anywhere on the path is refused too: writing through it would
create its target, which may be outside. Writes into protected directories
(``.git``, ``.devcontainer``, ``.vscode``) are refused unless allowed.

The check resolves the path just before use and the final open uses
``O_NOFOLLOW``; the stronger boundary is the ``tools`` container, which mounts the
workspace and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_PATH = 4096
MAX_NAME = 255
PROTECTED_DIRS = frozenset({".git", ".devcontainer", ".vscode"})


class PathRefused(ValueError):
    """A path was refused; the message says why, in terms a model can act on."""


@dataclass(frozen=True)
class Workspace:
    """The root directory that all tool paths are confined to."""

    root: Path
    allow_protected_writes: bool = False

    @classmethod
    def open(cls, root: Path | str, *, allow_protected_writes: bool = False) -> Workspace:
        """Return a workspace for an existing directory (resolved for real)."""
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise FileNotFoundError(f"workspace {root} is not a directory")
        return cls(real, allow_protected_writes)

    def _inside(self, real: str) -> bool:
        root = str(self.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """Return the real absolute path for ``path`` or raise :class:`PathRefused`."""
        if not isinstance(path, str):
            raise PathRefused("path must be a string")
        if "\x00" in path:
            raise PathRefused("path contains a NUL byte")
        if len(path) > MAX_PATH:
            raise PathRefused(f"path is longer than {MAX_PATH} characters")
        if path == "":
            path = "."
        if os.path.isabs(path) or path.startswith("~"):
            raise PathRefused(f"{path!r}: use a path relative to the workspace root")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME for p in parts):
            raise PathRefused(f"a component of the path is longer than {MAX_NAME} bytes")
        # Walk component by component so that links are resolved where they are.
        current = str(self.root)
        for index, part in enumerate(parts):
            current = os.path.dirname(current) if part == ".." else os.path.join(current, part)
            if os.path.islink(current):
                target = os.path.realpath(current)
                if not os.path.exists(current):
                    raise PathRefused(f"{'/'.join(parts[: index + 1])!r} is a dangling link")
                current = target
            if not self._inside(current):
                raise PathRefused(f"{path!r} leaves the workspace")
        real = os.path.realpath(current)
        if not self._inside(real):
            raise PathRefused(f"{path!r} leaves the workspace")
        if write:
            self.check_writable(Path(real))
        return Path(real)

    def check_writable(self, real: Path) -> None:
        """Refuse writes to the root itself and into protected directories."""
        rel = self.relative(real)
        if rel == ".":
            raise PathRefused("cannot write the workspace root itself")
        if not self.allow_protected_writes and rel.split("/", 1)[0] in PROTECTED_DIRS:
            raise PathRefused(f"{rel!r} is in a protected directory ({rel.split('/', 1)[0]}/)")

    def relative(self, real: Path) -> str:
        """Return ``real`` relative to the root, with ``/`` separators (``.`` for the root)."""
        rel = os.path.relpath(real, self.root)
        return "." if rel == "." else rel.replace(os.sep, "/")
