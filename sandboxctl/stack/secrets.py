"""The stack's secrets: the model API key and the tools token, made once per sandbox.

Each is a random token in ``secrets/NAME`` (folder 0700, file 0644: bind-mounted into
containers whose non-root users must read it), written atomically, kept across restarts.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

API_KEY_NAME = "model_api_key"
"""File name of the model API key under ``secrets/`` (the compose secret of that name)."""

TOOLS_TOKEN_NAME = "tools_token"  # noqa: S105 (a file name, not a secret)
"""File name of the tools service's token under ``secrets/`` (the compose secret)."""


def ensure_api_key(root: Path) -> Path:
    """Create ``secrets/model_api_key`` once (a random token) and return its path.

    The folder is 0700, so no other host user reaches the key; the file itself is 0644
    because it is bind-mounted into the containers, whose non-root users must read it.
    An existing key is kept (a restart must not change it), only its modes are repaired.
    """
    return ensure_secret(root, API_KEY_NAME)


def ensure_tools_token(root: Path) -> Path:
    """Create ``secrets/tools_token`` once, like the API key (see :func:`ensure_api_key`).

    The supervisor authenticates to the ``tools`` service with it; only those two
    services mount it.
    """
    return ensure_secret(root, TOOLS_TOKEN_NAME)


MIN_SECRET_CHARS = 16
"""A secret file shorter than this (empty after a crash, say) is replaced, not kept."""


def ensure_secret(root: Path, name: str) -> Path:
    """Create ``secrets/NAME`` once (a random token, folder 0700, file 0644); return it.

    The token is written to a temporary file and renamed into place, so a crash never
    leaves a half-written secret; one that is too short to be ours is replaced.
    """
    folder = root / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    key = folder / name
    if not key.is_file() or len(key.read_text(encoding="utf-8").strip()) < MIN_SECRET_CHARS:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(32))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, key)
        finally:
            Path(temporary).unlink(missing_ok=True)
    key.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return key
