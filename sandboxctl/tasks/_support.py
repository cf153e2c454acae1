"""Shared plumbing of the host, machine and images task modules: answers, host, consent."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.exceptions import Exit

from sandboxctl.config import ConfigError, Settings, find_root, load_settings
from sandboxctl.host.engine import Engine, EngineError, resolve_engine
from sandboxctl.host.platform import HostInfo, detect_host


def root() -> Path:
    """Return the sandbox root (the folder holding .env / compose.yaml / tasks.py)."""
    return find_root()


def settings_or_exit(require_file: bool = True) -> Settings:
    """Load the answers, or exit with the validation message."""
    try:
        return load_settings(root(), require_file=require_file)
    except ConfigError as error:
        raise Exit(str(error), code=2) from error


def host() -> HostInfo:
    """Return this host's facts."""
    return detect_host()


def engine_or_exit(settings: Settings, info: HostInfo | None = None) -> Engine:
    """Resolve the engine, or exit with how to create it."""
    try:
        return resolve_engine(info or host(), settings)
    except EngineError as error:
        raise Exit(str(error), code=1) from error


def ask(question: str) -> bool:
    """Ask a yes/no question on the terminal; no terminal means no."""
    if not sys.stdin.isatty():
        print(f"{question} [y/N] (no terminal: answering no; pass --yes)")
        return False
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}


def checked_project(name: str) -> str:
    """``name`` when it may name a project of the workspace, else a one-line exit."""
    from sandbox_supervisor.projects import ProjectError, checked_name

    try:
        return checked_name(name)
    except ProjectError as error:
        raise Exit(str(error), code=2) from error
