"""Shared plumbing of the task modules: the sandbox's answers, engine and stack, consent.

Their errors (:class:`~sandboxctl.config.ConfigError`, exit 2; an engine or a stack that
cannot be used, exit 1) end the task through :mod:`sandboxctl.tasks._task`, as every
:class:`~sandboxctl.errors.SandboxError` does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from sandbox_supervisor.view import safe

from sandboxctl import stack as stack_
from sandboxctl.config import Settings, find_root, load_settings
from sandboxctl.errors import UsageError
from sandboxctl.host.engine import Engine, resolve_engine
from sandboxctl.host.platform import HostInfo, detect_host
from sandboxctl.stack.workspace import VolumeAccess


def root() -> Path:
    """Return the sandbox root (the folder holding .env / compose.yaml / tasks.py)."""
    return find_root()


def load_answers(require_file: bool = True) -> Settings:
    """The sandbox's answers (``.env``), validated."""
    return load_settings(root(), require_file=require_file)


def host() -> HostInfo:
    """Return this host's facts."""
    return detect_host()


def find_engine(settings: Settings, info: HostInfo | None = None) -> Engine:
    """The engine the answers name on this host (the error says how to create it)."""
    return resolve_engine(info or host(), settings)


def opened() -> stack_.Stack:
    """The sandbox's stack (its answers, engine and Compose)."""
    return stack_.open_stack(root())


def workspace_access() -> VolumeAccess:
    """The stack's workspace and logs volumes, through the supervisor image (which must be
    built: the error says how)."""
    access = VolumeAccess.of(opened())
    access.require()
    return access


def print_safe(text: str, file: TextIO | None = None) -> None:
    """Print each line of ``text`` (a container's notes) with control characters shown."""
    for line in text.splitlines():
        print(safe(line), file=file)


def ask(question: str) -> bool:
    """Ask a yes/no question on the terminal; no terminal means no."""
    if not sys.stdin.isatty():
        print(f"{question} [y/N] (no terminal: answering no; pass --yes)")
        return False
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}


def checked_project(name: str) -> str:
    """``name`` when it may name a project of the workspace, else a :class:`UsageError`."""
    from sandbox_supervisor.projects import ProjectError, checked_name

    try:
        return checked_name(name)
    except ProjectError as error:
        raise UsageError(str(error)) from error
