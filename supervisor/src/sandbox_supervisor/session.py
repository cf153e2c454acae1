"""The pieces the commands are assembled from: executors, log paths, one agent run.

:func:`run_task` is ``sandbox-supervisor run`` without the argument parsing: it
connects to the model (or a scripted one), picks the tool mode, runs the loop with
the trajectory and returns the exit code (see :mod:`.exit_codes`).
"""

from __future__ import annotations

import ctypes
import platform
import re
import secrets
import signal
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from sandbox_supervisor import __version__
from sandbox_supervisor.agent import Agent, Setup
from sandbox_supervisor.client import (
    ChatModel,
    ModelClient,
    ModelError,
    context_size,
    detect_tool_mode,
)
from sandbox_supervisor.config import ConfigError, Settings
from sandbox_supervisor.exit_codes import EXIT_CODES, for_status
from sandbox_supervisor.recording import RunRecord
from sandbox_supervisor.scripted import ScriptedModel, load_script
from sandbox_supervisor.tools import Executor, ExecutorUnavailable, InProcessExecutor, Workspace
from sandbox_supervisor.tools.remote import RemoteExecutor
from sandbox_supervisor.trajectory import TrajectoryWriter, print_json_lines
from sandbox_supervisor.view import Progress, answer_preview


def versions() -> dict[str, str]:
    """Versions of the supervisor, Python and the libraries that shape its behaviour."""
    found = {"sandbox-supervisor": __version__, "python": platform.python_version()}
    for name in ("openai", "httpx", "pydantic"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "unknown"
    found["platform"] = platform.platform()
    return found


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
"""What a run id given from outside may be: it names the trajectory file too."""


def new_run_id() -> str:
    """A fresh run id: the UTC start second and six random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def checked_run_id(run_id: str) -> str:
    """Return ``run_id`` when it may name a run (and its file); else raise ValueError."""
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(
            f"run id {run_id!r}: expected up to 80 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


def checked_task(task: str) -> str:
    """Return ``task`` when it asks for something; else raise ValueError (an empty or
    blank task would run the model on nothing)."""
    if not task.strip():
        raise ValueError("the task is empty: say in words what the agent should do")
    return task


def checked_check(command: str, shell: str = "/bin/sh") -> str:
    """Return ``command`` when ``shell`` can parse it (``sh -n``: nothing runs); else raise
    ValueError with the shell's own message, so a quoting mistake is caught before the run,
    not after it as a failed check."""
    if not command.strip():
        raise ValueError("the check is empty: give a command, e.g. 'test -f hello.txt'")
    try:
        parsed = subprocess.run(
            [shell, "-n", "-c", command], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"the check could not be parsed by {shell}: {exc}") from exc
    if parsed.returncode != 0:
        why = " ".join(parsed.stderr.split()) or f"{shell} -n exited {parsed.returncode}"
        raise ValueError(f"the check {command!r} is not valid shell: {why}")
    return command


def log_path(
    settings: Settings, given: Path | None, prefix: str = "", run_id: str | None = None
) -> tuple[Path, str]:
    """The trajectory file and the run id of a new run: ``run_id`` (a new one when None)
    and ``given`` (``LOG_DIR/PREFIX+RUN_ID.jsonl`` when None)."""
    run_id = new_run_id() if run_id is None else checked_run_id(run_id)
    return (given or settings.log_dir / f"{prefix}{run_id}.jsonl"), run_id


def make_executor(
    settings: Settings, workspace: Path | None = None, subdir: str | None = None
) -> Executor:
    """The tools service when ``SUPERVISOR_TOOLS_URL`` is set (and no workspace is given),
    else an in-process executor on the workspace; ``subdir`` confines it to a
    subdirectory of the workspace (created when missing)."""
    if settings.tools_url and workspace is None:
        if settings.tools_token is None:
            raise ConfigError(
                "SUPERVISOR_TOOLS_URL is set but SUPERVISOR_TOOLS_TOKEN_FILE is not: "
                "the tools service needs its token"
            )
        return RemoteExecutor(
            settings.tools_url,
            settings.tools_token.get_secret_value(),
            ready_timeout_s=settings.tools_ready_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            redact=settings.secrets(),
            root=subdir,
        )
    executor = local_executor(settings, workspace)
    return executor.within(subdir) if subdir else executor


def local_executor(settings: Settings, workspace: Path | None = None) -> InProcessExecutor:
    ws = Workspace.open(
        workspace or settings.workspace, allow_protected_writes=settings.allow_protected_writes
    )
    return InProcessExecutor(ws, settings.tool_limits(), holds_key=settings.api_key is not None)


def finish(
    result_status: str,
    answer: str | None,
    path: Path,
    progress: Progress,
    *,
    records_out: bool = False,
) -> int:
    """Say where the trajectory is, print the answer (labelled, a few lines at most) or,
    with ``records_out``, the trajectory's checked records as JSON lines and nothing else
    on stdout (a caller parses them: no model-written text outside a record); return the
    exit code of the status."""
    code = for_status(result_status)
    progress(f"trajectory: {path}")
    if records_out:
        print_json_lines(path)
    elif answer is not None:
        print(answer_preview(answer), flush=True)
    return code


PR_SET_DUMPABLE = 4


def not_dumpable() -> bool:
    """Make this process non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): its ``/proc``
    files (``environ``, ``mem``, ``fd/``) become root's, so another process of the same
    user, a command included, cannot read the key from them. False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM (``docker stop``) into KeyboardInterrupt so the run ends recorded."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def ended_before_start(
    log: TrajectoryWriter, task: str, info: dict[str, Any], where: str, kind: str, message: str
) -> None:
    """Record a run that could not start: run_start, the error, run_end."""
    log.write("run_start", task=task, **info)
    log.write("error", where=where, kind=kind, message=message)
    log.write(
        "run_end", status=kind, reason=message, answer=None, steps=0, exit_code=EXIT_CODES[kind]
    )


def run_task(
    settings: Settings,
    task: str,
    *,
    scripted: str | None,
    log: Path | None,
    quiet: bool,
    script: list[dict[str, Any]] | None = None,
    check: str | None = None,
    setup: Setup | None = None,
    subdir: str | None = None,
    run_id: str | None = None,
    records_out: bool = False,
) -> int:
    """Run one task to its end; return the exit code of its outcome.

    ``scripted`` names a script (or ``script`` gives its steps) for a scripted model;
    ``setup`` prepares the workspace first, ``check`` judges it after (see
    :class:`~.agent.Agent`); ``subdir`` confines the run to a subdirectory of the
    workspace. ``run_id`` names the run (and, without ``log``, its trajectory file).
    ``records_out``: stdout gets the trajectory's records at the end (:func:`finish`).
    """
    interrupt_on_sigterm()
    if settings.api_key is not None:
        not_dumpable()
    progress = Progress(quiet)
    executor = make_executor(settings, subdir=subdir)
    path, run_id = log_path(settings, log, run_id=run_id)
    info: dict[str, Any] = {"config": settings.public_dict(), "versions": versions()}
    model: ChatModel
    client: ModelClient | None = None
    mode: str = settings.tool_mode
    with TrajectoryWriter(path, run_id, fsync=settings.fsync) as writer:
        n_ctx: int | None = None
        if scripted or script is not None:
            model = ScriptedModel(script if script is not None else load_script(str(scripted)))
            info["model_source"] = f"scripted:{scripted or 'inline'}"
            if mode == "auto":
                mode, why = "json", "scripted model"
                info["tool_mode_reason"] = why
        else:

            def on_retry(attempt: int, delay: float, why: str) -> None:
                progress(f"retry {attempt} in {delay:.1f} s: {why}")
                writer.write(
                    "error",
                    where="model",
                    kind="retry",
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    message=why,
                )

            client = ModelClient(settings, on_retry=on_retry)
            model = client
            progress(f"waiting for {settings.server_root}/health")
            try:
                client.wait_ready(time.monotonic() + settings.ready_timeout_s)
            except ModelError as exc:
                progress(str(exc))
                ended_before_start(writer, task, info, "model", exc.kind, str(exc))
                client.close()
                return finish(exc.kind, None, path, progress, records_out=records_out)
            props = client.props()
            n_ctx = context_size(props)
            info["server"] = {"n_ctx": n_ctx, "model_path": props.get("model_path")}
            if mode == "auto":
                mode, why = detect_tool_mode(props)
                info["tool_mode_reason"] = why
        progress(f"run {run_id}: tool mode {mode}, log {path}")
        record = RunRecord(settings.log_dir, run_id)
        record.start(subdir)
        info["record"] = str(record.base.relative_to(settings.log_dir))
        try:
            agent = Agent(
                model,
                executor,
                writer,
                mode=mode,
                limits=settings.agent_limits(server_ctx=n_ctx),
                progress=progress,
                setup=setup,
                check=check,
                record=record,
            )
        except ExecutorUnavailable as exc:
            progress(str(exc))
            ended_before_start(writer, task, info, "tools", "tools_unavailable", str(exc))
            if client is not None:
                client.close()
            return finish("tools_unavailable", None, path, progress, records_out=records_out)
        try:
            result = agent.run(task, info)
        finally:
            if client is not None:
                client.close()
            if isinstance(executor, RemoteExecutor):
                executor.close()
    ended = f" (the run ended {result.agent_status})" if result.agent_status else ""
    progress(
        f"{result.status}{ended}: {result.steps} steps, {result.tokens['total']} tokens, "
        f"{result.elapsed_s:.1f} s"
    )
    return finish(result.status, result.answer, path, progress, records_out=records_out)
