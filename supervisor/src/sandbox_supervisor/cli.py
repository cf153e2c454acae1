"""The ``sandbox-supervisor`` command: ``run``, ``show``, ``replay``, ``check``,
``recover`` and ``serve``.

Progress goes to stderr, results to stdout. ``run`` exits with a code that says how
the run ended (see ``EXIT_CODES`` in :mod:`sandbox_supervisor.agent` and the README).
``serve`` runs the ``tools`` service (:mod:`sandbox_supervisor.tools.service`); with
``SUPERVISOR_TOOLS_URL`` set, ``run`` executes tool calls there instead of in process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from sandbox_supervisor import __version__
from sandbox_supervisor.agent import EXIT_CODES, Agent, AgentLimits
from sandbox_supervisor.client import (
    ChatModel,
    ModelClient,
    ModelError,
    context_size,
    detect_tool_mode,
)
from sandbox_supervisor.config import ConfigError, Settings, load_settings
from sandbox_supervisor.scripted import ScriptedModel, load_script
from sandbox_supervisor.tools import (
    Executor,
    ExecutorUnavailable,
    InProcessExecutor,
    Limits,
    ToolRequest,
    Workspace,
)
from sandbox_supervisor.tools.remote import RemoteExecutor
from sandbox_supervisor.trajectory import (
    TrajectoryError,
    TrajectoryWriter,
    is_locked,
    iter_runs,
    read_records,
    recover_dir,
    unfinished_run,
)

EXIT_USAGE = 2
EXIT_UNAVAILABLE = EXIT_CODES["model_unavailable"]


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


class Progress:
    """Progress lines on stderr with the time since start."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:7.2f}s] {message}", file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    overrides = {
        "workspace": getattr(args, "workspace", None),
        "log_dir": getattr(args, "log_dir", None),
        "tool_mode": getattr(args, "tool_mode", None),
        "max_steps": getattr(args, "max_steps", None),
        "model_url": getattr(args, "model_url", None),
    }
    for field, value in overrides.items():
        if value is not None:
            env[f"SUPERVISOR_{field.upper()}"] = str(value)
    return load_settings(env, args.config)


def _secrets(settings: Settings) -> tuple[str, ...]:
    """The secret values this process holds (kept out of commands and outputs)."""
    held = (settings.api_key, settings.tools_token)
    return tuple(value.get_secret_value() for value in held if value is not None)


def _limits(settings: Settings) -> Limits:
    secret = _secrets(settings)
    return Limits(
        read_cap_bytes=settings.read_cap_bytes,
        write_cap_bytes=settings.write_cap_bytes,
        output_cap_bytes=settings.output_cap_bytes,
        command_timeout_s=settings.command_timeout_s,
        command_grace_s=settings.command_grace_s,
        secrets=secret,
    )


def _agent_limits(settings: Settings, min_steps: int = 0) -> AgentLimits:
    return AgentLimits(
        max_steps=max(settings.max_steps, min_steps),
        max_wall_s=settings.max_wall_s,
        max_total_tokens=settings.max_total_tokens,
        max_invalid_replies=settings.max_invalid_replies,
        max_tool_timeouts=settings.max_tool_timeouts,
        max_observation_chars=settings.max_observation_chars,
    )


def _log_path(settings: Settings, given: Path | None, prefix: str = "") -> tuple[Path, str]:
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    return (given or settings.log_dir / f"{prefix}{run_id}.jsonl"), run_id


def _executor(settings: Settings, workspace: Path | None = None) -> Executor:
    """The tools service when ``SUPERVISOR_TOOLS_URL`` is set (and no workspace is given),
    else an in-process executor on the workspace."""
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
            redact=_secrets(settings),
        )
    return _local_executor(settings, workspace)


def _local_executor(settings: Settings, workspace: Path | None = None) -> InProcessExecutor:
    ws = Workspace.open(
        workspace or settings.workspace, allow_protected_writes=settings.allow_protected_writes
    )
    return InProcessExecutor(ws, _limits(settings))


def _finish(result_status: str, answer: str | None, log_path: Path, progress: Progress) -> int:
    code = EXIT_CODES.get(result_status, 1)
    progress(f"trajectory: {log_path}")
    if answer is not None:
        print(answer)
    return code


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM (``docker stop``) into KeyboardInterrupt so the run ends recorded."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _ended_before_start(
    log: TrajectoryWriter, task: str, info: dict[str, Any], where: str, kind: str, message: str
) -> None:
    """Record a run that could not start: run_start, the error, run_end."""
    log.write("run_start", task=task, **info)
    log.write("error", where=where, kind=kind, message=message)
    log.write(
        "run_end", status=kind, reason=message, answer=None, steps=0, exit_code=EXIT_CODES[kind]
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Run one task and exit with the outcome's code."""
    _interrupt_on_sigterm()
    settings = _settings(args)
    progress = Progress(args.quiet)
    executor = _executor(settings)
    log_path, run_id = _log_path(settings, args.log)
    info: dict[str, Any] = {"config": settings.public_dict(), "versions": versions()}
    model: ChatModel
    client: ModelClient | None = None
    mode: str = settings.tool_mode
    with TrajectoryWriter(log_path, run_id, fsync=settings.fsync) as log:
        if args.scripted:
            model = ScriptedModel(load_script(args.scripted))
            info["model_source"] = f"scripted:{args.scripted}"
            if mode == "auto":
                mode, why = "json", "scripted model"
                info["tool_mode_reason"] = why
        else:

            def on_retry(attempt: int, delay: float, why: str) -> None:
                progress(f"retry {attempt} in {delay:.1f} s: {why}")
                log.write(
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
                _ended_before_start(log, args.task, info, "model", exc.kind, str(exc))
                client.close()
                return _finish(exc.kind, None, log_path, progress)
            props = client.props()
            info["server"] = {"n_ctx": context_size(props), "model_path": props.get("model_path")}
            if mode == "auto":
                mode, why = detect_tool_mode(props)
                info["tool_mode_reason"] = why
        progress(f"run {run_id}: tool mode {mode}, log {log_path}")
        try:
            agent = Agent(
                model, executor, log, mode=mode, limits=_agent_limits(settings), progress=progress
            )
        except ExecutorUnavailable as exc:
            progress(str(exc))
            _ended_before_start(log, args.task, info, "tools", "tools_unavailable", str(exc))
            if client is not None:
                client.close()
            return _finish("tools_unavailable", None, log_path, progress)
        try:
            result = agent.run(args.task, info)
        finally:
            if client is not None:
                client.close()
            if isinstance(executor, RemoteExecutor):
                executor.close()
    progress(
        f"{result.status}: {result.steps} steps, {result.tokens['total']} tokens, "
        f"{result.elapsed_s:.1f} s"
    )
    return _finish(result.status, result.answer, log_path, progress)


def render(records: list[dict[str, Any]]) -> str:
    """A readable rendering of a trajectory: steps, tool calls, timings, tokens."""
    out: list[str] = []
    for record in records:
        kind = record["type"]
        if kind == "run_start":
            model = record.get("config", {}).get("model", record.get("model_source", "?"))
            out.append(
                f"== run {record['run_id']} at {record['ts']} model={model} "
                f"mode={record.get('tool_mode')}"
            )
            out.append(f"   task: {record.get('task')}")
        elif kind == "model_response":
            reply = record["reply"]
            usage = reply.get("usage", {})
            what = ", ".join(c["name"] for c in reply.get("tool_calls", [])) or _short(
                reply.get("content") or "", 100
            )
            out.append(
                f"-- step {record['step']}: model {reply.get('latency_s', 0):.2f}s "
                f"tokens {usage.get('prompt_tokens', 0)}+"
                f"{usage.get('completion_tokens', 0)} try {reply.get('attempts', 1)}: "
                f"{what}"
            )
        elif kind == "tool_call":
            out.append(f"   -> {record['name']} {_short(json.dumps(record.get('arguments')), 120)}")
        elif kind == "tool_result":
            extra = f" exit={record['exit_code']}" if record.get("exit_code") is not None else ""
            first = _short(record.get("output", ""), 100)
            out.append(
                f"   <- {record['status']}{extra} {record.get('duration_s', 0):.3f}s {first}"
            )
        elif kind == "error":
            out.append(f"   !! {record.get('kind')}: {_short(record.get('message', ''), 160)}")
        elif kind == "repair":
            out.append(f"   (log repaired: {record.get('dropped_bytes')} torn bytes cut)")
        elif kind == "run_end":
            tokens = record.get("tokens") or {}
            out.append(
                f"== end: {record['status']} after {record.get('steps')} steps, "
                f"{tokens.get('total', 0)} tokens, {record.get('elapsed_s', 0)} s"
                + (f"; answer: {record['answer']}" if record.get("answer") else "")
                + (f"; {record['reason']}" if record.get("reason") else "")
            )
    return "\n".join(out)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cmd_show(args: argparse.Namespace) -> int:
    """Print a trajectory in readable form (or its records as JSON lines)."""
    result = read_records(args.log)
    if args.json:
        for record in result.records:
            print(json.dumps(record))
    else:
        print(render(result.records))
        if unfinished_run(result.records) is not None:
            state = (
                "still being written"
                if is_locked(args.log)
                else "interrupted: no run_end and no process writes it "
                "(`sandbox-supervisor recover` records that)"
            )
            print(f"== unfinished: {state}")
    if result.torn_bytes:
        print(f"warning: torn last line ({result.torn_bytes} bytes) ignored", file=sys.stderr)
    return 0


def _pick_run(path: Path, index: int) -> list[dict[str, Any]]:
    runs = list(iter_runs(read_records(path).records))
    if not runs:
        raise TrajectoryError(f"{path} holds no run")
    try:
        return runs[index]
    except IndexError:
        raise TrajectoryError(
            f"{path} holds {len(runs)} runs; --run {index} is out of range"
        ) from None


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run recorded tool calls, or re-feed recorded model replies through the loop."""
    settings = _settings(args)
    run = _pick_run(args.log, args.run)
    progress = Progress(args.quiet)
    if args.model:
        replies = [{"reply": r["reply"]} for r in run if r["type"] == "model_response"]
        start = run[0]
        mode = start.get("tool_mode", "json")
        log_path, run_id = _log_path(settings, args.out, prefix="replay-")
        with TrajectoryWriter(log_path, run_id, fsync=settings.fsync) as log:
            agent = Agent(
                ScriptedModel(replies, model="replay"),
                _executor(settings, args.workspace),
                log,
                mode=mode,
                limits=_agent_limits(settings, len(replies)),
                progress=progress,
            )
            result = agent.run(
                str(start.get("task", "")),
                {
                    "config": settings.public_dict(),
                    "versions": versions(),
                    "model_source": f"replay:{args.log}",
                    "replay_of": start["run_id"],
                },
            )
        return _finish(result.status, result.answer, log_path, progress)
    executor = _executor(settings, args.workspace)
    recorded = {r["call_id"]: r for r in run if r["type"] == "tool_result"}
    differ = 0
    for record in run:
        if record["type"] != "tool_call" or record["name"] == "finish":
            continue
        request = ToolRequest(record["call_id"], record["name"], record.get("arguments", {}))
        outcome = executor.execute(request)
        before = recorded.get(record["call_id"])
        same = before is not None and (
            before["status"],
            before.get("exit_code"),
            before.get("output"),
        ) == (outcome.status, outcome.exit_code, outcome.output)
        differ += not same
        print(
            f"{record['call_id']} {record['name']}: {outcome.status}"
            f"{'' if outcome.exit_code is None else f' exit={outcome.exit_code}'}"
            f" {'same as recorded' if same else 'DIFFERS from recorded'}"
        )
        if not same and args.verbose:
            print(f"  recorded: {json.dumps(before)}\n  now:      {json.dumps(outcome.to_dict())}")
    return 1 if differ else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Reach the model server; report its model, context size and tool-calling support."""
    settings = _settings(args)
    client = ModelClient(settings)
    report: dict[str, Any] = {"model_url": settings.model_url}
    try:
        ready, seen = client.health(settings.connect_timeout_s)
        report["health"] = seen
        report["ready"] = ready
        try:
            report["models"] = client.models()
        except Exception as exc:  # report, do not crash: this is a diagnostic
            report["models_error"] = f"{type(exc).__name__}: {exc}"
        props = client.props()
        report["model_alias"] = props.get("model_alias")
        report["n_ctx"] = context_size(props)
        mode, why = detect_tool_mode(props)
        report["tool_calling"] = mode == "native"
        report["detected_tool_mode"] = mode
        report["tool_mode_reason"] = why
        report["configured_tool_mode"] = settings.tool_mode
    finally:
        client.close()
    ok = bool(report["ready"]) and "models_error" not in report
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
        if not ok:
            print(
                "model server not usable: see above; is it running, and is "
                "SUPERVISOR_MODEL_URL right?",
                file=sys.stderr,
            )
    return 0 if ok else EXIT_UNAVAILABLE


def cmd_recover(args: argparse.Namespace) -> int:
    """Mark every run that ended without ``run_end`` (its process died) as interrupted."""
    log_dir = args.log_dir or _settings(args).log_dir
    outcome = recover_dir(log_dir)
    for path, what in outcome.items():
        print(f"{path}: {what}")
    if not args.quiet:
        print(f"recover: {len(outcome)} file(s) needed it under {log_dir}", file=sys.stderr)
    return 1 if any(what != "interrupted" for what in outcome.values()) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the tools service until SIGTERM or Ctrl-C."""
    from sandbox_supervisor.tools.service import ToolService, make_server

    _interrupt_on_sigterm()
    settings = _settings(args)
    if settings.tools_token is None:
        raise ConfigError(
            "SUPERVISOR_TOOLS_TOKEN_FILE: the tools service needs a token file "
            "(a random secret of at least 16 characters)"
        )
    try:
        service = ToolService(_local_executor(settings), settings.tools_token.get_secret_value())
    except ValueError as exc:
        raise ConfigError(f"SUPERVISOR_TOOLS_TOKEN_FILE: {exc}") from exc
    server = make_server(service, args.host, args.port)
    print(
        f"tools: serving {settings.workspace} on {args.host}:{server.server_address[1]} "
        f"(command timeout {settings.command_timeout_s:g} s)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("tools: stopping", file=sys.stderr, flush=True)
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sandbox-supervisor``."""
    parser = argparse.ArgumentParser(
        prog="sandbox-supervisor",
        description="Run an AI agent against an OpenAI-compatible model, confined to a workspace.",
        epilog="Settings come from SUPERVISOR_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, help="TOML or JSON settings file")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one task")
    run.add_argument("task", help="what the agent should do")
    run.add_argument("--workspace", type=Path, help="workspace root (SUPERVISOR_WORKSPACE)")
    run.add_argument("--log-dir", type=Path, help="trajectory directory (SUPERVISOR_LOG_DIR)")
    run.add_argument("--log", type=Path, help="trajectory file (default: LOG_DIR/RUN_ID.jsonl)")
    run.add_argument("--tool-mode", choices=["auto", "native", "json"])
    run.add_argument("--max-steps", type=int)
    run.add_argument("--model-url")
    run.add_argument(
        "--scripted",
        metavar="SCRIPT",
        help="use a scripted model: 'demo' or a JSON file of steps (offline)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    run.set_defaults(func=cmd_run)

    show = sub.add_parser("show", help="print a trajectory readably")
    show.add_argument("log", type=Path)
    show.add_argument("--json", action="store_true", help="print the checked records as JSON")
    show.set_defaults(func=cmd_show)

    replay = sub.add_parser("replay", help="re-run a recorded run's tool calls or model replies")
    replay.add_argument("log", type=Path)
    what = replay.add_mutually_exclusive_group()
    what.add_argument(
        "--tools",
        action="store_true",
        help="re-run the recorded tool calls and compare results (default)",
    )
    what.add_argument(
        "--model", action="store_true", help="re-feed the recorded model replies through the loop"
    )
    replay.add_argument("--workspace", type=Path, help="workspace to run against")
    replay.add_argument("--run", type=int, default=-1, help="which run of the file (default last)")
    replay.add_argument("--out", type=Path, help="trajectory of the --model replay")
    replay.add_argument("-v", "--verbose", action="store_true")
    replay.add_argument("-q", "--quiet", action="store_true")
    replay.set_defaults(func=cmd_replay)

    check = sub.add_parser("check", help="reach the model server and report what it offers")
    check.add_argument("--model-url")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check)

    recover = sub.add_parser(
        "recover", help="mark runs that ended without run_end (killed) as interrupted"
    )
    recover.add_argument("--log-dir", type=Path, help="trajectory directory (SUPERVISOR_LOG_DIR)")
    recover.add_argument("-q", "--quiet", action="store_true")
    recover.set_defaults(func=cmd_recover)

    serve = sub.add_parser("serve", help="run the tools service (the tools container's command)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    serve.add_argument("--port", type=int, default=8700, help="port to listen on")
    serve.add_argument("--workspace", type=Path, help="workspace root (SUPERVISOR_WORKSPACE)")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"sandbox-supervisor: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (TrajectoryError, OSError, ValueError) as exc:
        print(f"sandbox-supervisor: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_CODES["interrupted"]
