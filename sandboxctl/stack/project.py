"""The sandbox's Compose project on its engine: open it, check it, run Compose, load the
model into its volume, wait for readiness and run one agent task.

Everything goes through one :class:`Stack`, which holds the engine, the Compose command
and the answers; :func:`open_stack` resolves them (starting the local Podman service
when needed).
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sandboxctl._proc import Result, Runner
from sandboxctl.config import Settings
from sandboxctl.download import sha256_file
from sandboxctl.errors import SandboxError
from sandboxctl.host.engine import Engine
from sandboxctl.stack.compose import ComposeCommand, run_compose

READY_DEADLINE_S = 300.0


def read_contract(contract: Path | None = None) -> dict[str, Any]:
    """Return the supervisor's exit-code contract, parsed: ``exit_codes.json``, the one
    definition, read here and never copied (default: the one of the supervisor package
    this environment has, data that goes with the code reading it)."""
    if contract is None:
        text = resources.files("sandbox_supervisor").joinpath("exit_codes.json").read_text()
    else:
        text = contract.read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def finished_exit_codes(contract: Mapping[str, Any]) -> frozenset[int]:
    """Return the exit codes of a run that ended on its own terms (``finished`` in the
    supervisor's contract: done, a budget ran out, it gave up on unusable replies)."""
    codes = contract["codes"].values()
    return frozenset(int(entry["code"]) for entry in codes if entry["finished"])


def exit_code_named(name: str, contract: Mapping[str, Any]) -> int:
    """Return the exit code the supervisor's contract names ``name`` (``check_failed``...)."""
    return int(contract["codes"][name]["code"])


_CONTRACT = read_contract()
FINISHED_EXIT_CODES = finished_exit_codes(_CONTRACT)
CHECK_FAILED_EXIT_CODE = exit_code_named("check_failed", _CONTRACT)
"""The run ended on its own terms, and its ``--check`` failed: the task was not done."""


class StackError(SandboxError, RuntimeError):
    """A stack operation failed; the message says what and how to fix it."""


def model_tarball(model_file: Path, name: str, digest: str, out: Path) -> Path:
    """Write a tarball holding ``name`` (the model, 0644) and ``name.sha256`` into ``out``.

    Entries are owned by root and world-readable, so the server's non-root user reads them
    from the volume and cannot change them.
    """
    with tarfile.open(out, "w") as tar:
        info = tar.gettarinfo(str(model_file), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o644
        with model_file.open("rb") as handle:
            tar.addfile(info, handle)
        stamp = f"{digest}  {name}\n".encode()
        entry = tarfile.TarInfo(f"{name}.sha256")
        entry.size, entry.mode, entry.mtime = len(stamp), 0o644, int(time.time())
        tar.addfile(entry, io.BytesIO(stamp))
    return out


def probe_intervals(first_s: float, most_s: float) -> Iterator[float]:
    """Seconds between readiness probes: ``first_s``, then twice the last, up to ``most_s``."""
    interval = first_s
    while True:
        yield interval
        interval = min(interval * 2, most_s)


@dataclass
class Stack:
    """The sandbox's Compose project on its engine."""

    root: Path
    settings: Settings
    engine: Engine
    compose: ComposeCommand
    runner: Runner = field(default_factory=Runner)
    log: Callable[[str], None] = print

    @property
    def project(self) -> str:
        """The Compose project name (``COMPOSE_PROJECT_NAME``)."""
        return self.settings.compose_project_name

    def volume(self, name: str) -> str:
        """The engine's name of the project's volume ``name`` (Compose prefixes it)."""
        return f"{self.project}_{name}"

    def __post_init__(self) -> None:
        """Point every command this stack runs (podman, builds, Compose) at its engine."""
        self.runner = replace(self.runner, extra_env={**self.engine.env(), **self.runner.extra_env})

    def podman(self, *args: str, capture: bool = True) -> Result:
        """Run ``podman ARGS`` against this stack's engine (see :meth:`Engine.env`)."""
        return self.runner.run(["podman", *args], capture=capture)

    def compose_run(
        self,
        *args: str,
        capture: bool = False,
        input_text: str | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Run ``compose ARGS`` in the sandbox folder against the engine; exit code kept.

        ``input_text`` goes to the command's stdin (``compose exec -T ... -`` reads it)."""
        return run_compose(
            self.compose,
            list(args),
            engine=self.engine,
            project_dir=self.root,
            runner=self.runner,
            capture=capture,
            timeout=timeout,
            input_text=input_text,
        )

    def require(self, result: Result, what: str) -> Result:
        """Raise :class:`StackError` naming ``what`` when ``result`` failed, with the last
        lines it printed (or a pointer to them when they went to the terminal)."""
        if not result.ok:
            lines = (result.stderr or result.stdout).strip().splitlines()[-5:]
            detail = "\n  ".join(lines) if lines else "(its output is above)"
            raise StackError(f"{what} failed (exit {result.returncode}):\n  {detail}")
        return result

    def model_in_volume(self, name: str, image: str) -> str | None:
        """Return the SHA-256 recorded next to ``name`` in the model-data volume, if any."""
        result = self.podman(
            "run", "--rm", "--pull=never", "--network=none", "--entrypoint", "cat",
            "-v", f"{self.volume('model-data')}:/models:ro",
            image, f"/models/{name}.sha256",
        )  # fmt: skip
        return result.stdout.split()[0] if result.ok and result.stdout.strip() else None

    def load_model(self, model_file: Path, image: str, scratch: Path) -> bool:
        """Copy the model into the model-data volume unless the same bytes are there already.

        Returns True when it copied. The volume must exist (``compose create`` makes it).
        """
        name = model_file.name
        digest = sha256_file(model_file)
        if self.model_in_volume(name, image) == digest:
            self.log(f"model-data already holds {name} ({digest[:12]}...)")
            return False
        tarball = model_tarball(model_file, name, digest, scratch / f".{name}.tar")
        try:
            self.log(f"copying {name} ({model_file.stat().st_size / 1e6:.0f} MB) into model-data")
            self.require(
                self.podman("volume", "import", self.volume("model-data"), str(tarball)),
                "podman volume import",
            )
        finally:
            tarball.unlink(missing_ok=True)
        return True

    def wait_ready(
        self, deadline_s: float = READY_DEADLINE_S, every_s: float = 0.25, most_s: float = 2.0
    ) -> float:
        """Wait until llama-server's /health is 200 (probed inside its container), probing
        every ``every_s`` at first and half as often after each miss, down to every
        ``most_s`` (a small model is ready in about a second, a large one takes minutes).

        Returns the seconds it took; raises :class:`StackError` with the server's last log
        lines when the deadline passes. Does not rely on the engine running healthchecks.
        """
        start = time.monotonic()
        last_note = start
        intervals = probe_intervals(every_s, most_s)
        while True:
            probe = self.compose_run(  # a probe that hangs counts as not ready
                "exec", "-T", "model-server", "/app/healthcheck.sh", capture=True, timeout=20
            )
            if probe.ok:
                return time.monotonic() - start
            now = time.monotonic()
            if now - start > deadline_s:
                tail = self.compose_run("logs", "--tail", "20", "model-server", capture=True)
                raise StackError(
                    f"model-server not ready after {deadline_s:.0f} s; its last log lines:\n"
                    f"{tail.stdout.strip()}"
                )
            if now - last_note >= 10:
                self.log(f"waiting for model-server /health ({now - start:.0f} s)")
                last_note = now
            time.sleep(next(intervals))

    def run_task(
        self, task: str, extra: Sequence[str] = (), check: str | None = None
    ) -> tuple[Result, str]:
        """Run one agent task in the supervisor container; return its result and log path.

        ``check`` is a command run in the tools container after the run: its exit status
        makes the run passed or failed (``sandbox-supervisor run --check``)."""
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        log_path = f"/logs/{run_id}.jsonl"  # the file is named after the run, as by default
        checked = ["--check", check] if check else []
        result = self.compose_run(
            "exec", "-T", "supervisor", "sandbox-supervisor", "run",
            "--run-id", run_id, "--log", log_path, *extra, *checked, "--", task,
        )  # fmt: skip
        return result, log_path


def require_running(stack: Stack, service: str = "supervisor") -> None:
    """Raise :class:`StackError` unless ``service`` runs (``invoke up`` starts it)."""
    listed = stack.compose_run("ps", "--status", "running", "--services", capture=True)
    if service not in listed.stdout.split():
        raise StackError(
            f"the stack {stack.project} is not running ({service} is not up): run `invoke up`"
        )


def open_stack(root: Path, log: Callable[[str], None] = print) -> Stack:
    """Resolve the engine (starting the local Podman service when needed) and Compose.

    Raises :class:`StackError` with the fix when the answers, engine or Compose are missing.
    """
    from sandboxctl.config import ConfigError, load_settings
    from sandboxctl.host.engine import EngineError, resolve_engine
    from sandboxctl.host.platform import detect_host
    from sandboxctl.host.service import ensure_service
    from sandboxctl.stack.compose import ComposeError, find_compose

    try:
        settings = load_settings(root, require_file=True)
        engine = resolve_engine(detect_host(), settings)
        status = ensure_service(engine)
        if not status.serving:
            raise StackError(
                f"the container engine at {engine.docker_host} does not answer "
                f"({status.message}): run `invoke machine.start` or `invoke doctor`"
            )
        if status.started:
            log(status.message)
        compose = find_compose()
    except (ConfigError, EngineError, ComposeError) as error:
        raise StackError(str(error)) from error
    return Stack(root, settings, engine, compose, log=log)
