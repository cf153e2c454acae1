"""What each ``sandbox-supervisor`` subcommand does, given its parsed arguments.

:mod:`.cli` parses the command line and hands the arguments to one ``cmd_*`` function
here, which returns the exit code: ``run`` (one task; the code says how it ended, see
:mod:`.exit_codes`), ``show``/``replay``/``recover`` (recorded trajectories), ``check``
(the model server), ``serve`` (the tools service), ``workspace`` (projects in and out),
``record`` (a run's recorded changes) and ``exit-codes``. Progress and refusals go to
stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

from sandbox_supervisor import exit_codes
from sandbox_supervisor.agent import Agent, Setup
from sandbox_supervisor.client import ModelClient, context_size, detect_tool_mode
from sandbox_supervisor.config import ConfigError, Settings, load_settings
from sandbox_supervisor.scripted import ScriptedModel
from sandbox_supervisor.session import (
    finish,
    interrupt_on_sigterm,
    local_executor,
    log_path,
    make_executor,
    run_task,
    versions,
)
from sandbox_supervisor.tools import ToolRequest
from sandbox_supervisor.tools.commands import terminate_all
from sandbox_supervisor.trajectory import (
    TrajectoryError,
    TrajectoryWriter,
    is_locked,
    iter_runs,
    print_json_lines,
    read_for_showing,
    read_records,
    recover_dir,
    unfinished_run,
)
from sandbox_supervisor.view import Progress, render

EXIT_UNAVAILABLE = exit_codes.UNAVAILABLE


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings from the environment and ``--config``, with this command's options on top."""
    options = ("workspace", "log_dir", "tool_mode", "max_steps", "model_url")
    overrides = {name: getattr(args, name, None) for name in options}
    return load_settings(None, args.config, overrides)


def read_spec(source: str) -> dict[str, Any]:
    """A run's spec from a JSON file or ``-`` (stdin): ``{"setup": {"files": {...},
    "commands": [...]}, "check": "CMD", "script": [...], "subdir": "DIR"}``, each optional."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"--spec {source}: a JSON object is needed")
    unknown = set(data) - {"setup", "check", "script", "subdir"}
    if unknown:
        raise ValueError(f"--spec {source}: unknown keys {sorted(unknown)}")
    script = data.get("script")
    if script is not None and (
        not isinstance(script, list) or not all(isinstance(s, dict) for s in script)
    ):
        raise ValueError(f"--spec {source}: script must be a list of steps")
    return data


def cmd_run(args: argparse.Namespace) -> int:
    """Run one task and exit with the outcome's code."""
    settings = settings_for(args)
    spec = read_spec(args.spec) if args.spec else {}
    setup = Setup.from_dict(spec["setup"]) if spec.get("setup") else None
    return run_task(
        settings,
        args.task,
        scripted=args.scripted,
        log=args.log,
        quiet=args.quiet,
        script=spec.get("script"),
        check=args.check if args.check is not None else spec.get("check"),
        setup=setup,
        subdir=args.subdir or spec.get("subdir"),
        run_id=args.run_id,
        records_out=args.json,
    )


def cmd_show(args: argparse.Namespace) -> int:
    """Print a trajectory in readable form (or its records as JSON lines)."""
    if args.json:
        print_json_lines(args.log)
        return 0
    result = read_for_showing(args.log)
    print(render(result.records))
    if unfinished_run(result.records) is not None:
        state = (
            "still being written"
            if is_locked(args.log)
            else "interrupted: no run_end and no process writes it "
            "(`sandbox-supervisor recover` records that)"
        )
        print(f"== unfinished: {state}")
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
    settings = settings_for(args)
    run = _pick_run(args.log, args.run)
    progress = Progress(args.quiet)
    if args.model:
        replies = [{"reply": r.get("reply")} for r in run if r["type"] == "model_response"]
        if not all(isinstance(step["reply"], dict) for step in replies):
            raise TrajectoryError(f"{args.log}: a model_response record has no reply object")
        start = run[0]
        mode = start.get("tool_mode", "json")
        path, run_id = log_path(settings, args.out, prefix="replay-")
        with TrajectoryWriter(path, run_id, fsync=settings.fsync) as log:
            agent = Agent(
                ScriptedModel(replies, model="replay"),
                make_executor(settings, args.workspace),
                log,
                mode=mode,
                limits=settings.agent_limits(len(replies)),
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
        return finish(result.status, result.answer, path, progress)
    executor = make_executor(settings, args.workspace)
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
    settings = settings_for(args)
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
        slots = props.get("total_slots")
        report["slots"] = slots if isinstance(slots, int) and not isinstance(slots, bool) else None
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
    log_dir = args.log_dir or settings_for(args).log_dir
    outcome = recover_dir(log_dir)
    for path, what in outcome.items():
        print(f"{path}: {what}")
    if not args.quiet:
        print(f"recover: {len(outcome)} file(s) needed it under {log_dir}", file=sys.stderr)
    return 1 if any(what != "interrupted" for what in outcome.values()) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the tools service until SIGTERM or Ctrl-C."""
    from sandbox_supervisor.tools.service import ToolService, make_server

    interrupt_on_sigterm()
    settings = settings_for(args)
    if settings.tools_token is None:
        raise ConfigError(
            "SUPERVISOR_TOOLS_TOKEN_FILE: the tools service needs a token file "
            "(a random secret of at least 16 characters)"
        )
    try:
        service = ToolService(local_executor(settings), settings.tools_token.get_secret_value())
    except ValueError as exc:
        raise ConfigError(f"SUPERVISOR_TOOLS_TOKEN_FILE: {exc}") from exc
    server = make_server(service, args.host, args.port)
    print(
        f"tools: serving {settings.workspace} on {args.host}:{server.server_address[1]} "
        f"(command timeout {settings.tools.command_timeout_s:g} s)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        sys.stderr.write("tools: stopping\n")  # one write per line: no partial log lines
        sys.stderr.flush()
    finally:
        server.server_close()
        ended = terminate_all(settings.tools.command_grace_s)  # no command outlives the service
        if ended:
            sys.stderr.write(f"tools: ended {ended} running command(s)\n")
            sys.stderr.flush()
    return 0


def cmd_exit_codes(args: argparse.Namespace) -> int:
    """Print the exit-code contract (``exit_codes.json``) for the host and for people."""
    if args.json:
        print(json.dumps(exit_codes.contract(), indent=2))
        return 0
    for name, entry in exit_codes.contract()["codes"].items():
        finished = "finished" if entry["finished"] else "did not finish"
        print(f"{entry['code']:>3}  {name:<12} {finished:<15} {entry['meaning']}")
    statuses: dict[str, list[str]] = {}
    for status, name in exit_codes.contract()["statuses"].items():
        statuses.setdefault(name, []).append(status)
    print("\nstatuses (run_end) by code:")
    for name, names in statuses.items():
        print(f"  {name:<12} {', '.join(names)}")
    return 0


def cmd_workspace(args: argparse.Namespace) -> int:
    """List, pack (to stdout) or unpack (from stdin) the workspace's projects."""
    from sandbox_supervisor import projects
    from sandbox_supervisor.treewalk import TreeLimits

    root = args.workspace or settings_for(args).workspace
    limits = TreeLimits(max_file_bytes=args.max_file_bytes)
    if args.action == "list":
        for name, files, size in projects.list_projects(root, limits):
            print(f"{name}\t{files} files\t{size} bytes")
        return 0
    if args.name is None:
        raise ValueError(f"workspace {args.action}: a project NAME is needed")
    if args.action == "pack":
        copied = projects.pack_project(root, args.name, sys.stdout.buffer, limits)
        sys.stdout.buffer.flush()
        verb = "packed"
    else:
        copied = projects.unpack_project(
            root, args.name, sys.stdin.buffer, limits, replace=args.replace
        )
        verb = "unpacked"
    for line in copied.refused:
        print(f"left out: {line}", file=sys.stderr)
    print(projects.summary(copied, verb), file=sys.stderr)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Show a run's recorded changes as a diff, or rewind its folder to a step."""
    from sandbox_supervisor import recording

    log_dir = args.log_dir or settings_for(args).log_dir
    record = recording.open_record(log_dir, args.run_id)
    steps = record.steps()
    if args.action == "steps":
        print(" ".join(str(step) for step in steps))
        return 0
    if args.action == "diffs":  # every recorded step's own diff, for the run viewer
        diffs: dict[str, str] = {}
        left: dict[str, list[str]] = {}
        for old_step, new_step in itertools.pairwise(steps):
            diffs[str(new_step)], left[str(new_step)] = recording.diff(record, old_step, new_step)
        print(json.dumps({"diffs": diffs, "left_out": left}, ensure_ascii=True))
        return 0
    if args.action == "rewind":
        if args.step is None:
            raise ValueError("rewind: --step N is needed (0: before the run)")
        if args.step not in steps:
            args.step = max((s for s in steps if s <= args.step), default=0)
        workspace = args.workspace or settings_for(args).workspace
        fd = recording.run_root(workspace, record)
        try:
            left_out = recording.restore(record, args.step, fd)
        finally:
            os.close(fd)
        for line in left_out:
            print(f"not restored: {line}", file=sys.stderr)
        print(f"rewound to step {args.step}", file=sys.stderr)
        return 0
    if args.step is None:
        old, new = 0, None
    else:
        earlier = [s for s in steps if s < args.step]
        if args.step not in steps or not earlier:
            print(f"step {args.step} changed nothing (recorded: {steps})", file=sys.stderr)
            return 0
        old, new = earlier[-1], args.step
    text, left_out = recording.diff(record, old, new)
    sys.stdout.write(text)
    sys.stdout.flush()
    for line in left_out:
        print(f"left out: {line}", file=sys.stderr)
    return 0
