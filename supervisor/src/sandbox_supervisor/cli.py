"""The ``sandbox-supervisor`` command: ``run``, ``show``, ``replay``, ``check``,
``recover``, ``serve``, ``workspace``, ``record`` and ``exit-codes``: its parser and its
entry point; what each subcommand does is :mod:`.subcommands`'.

Progress goes to stderr, results to stdout. ``run`` exits with a code that says how
the run ended (see :mod:`.exit_codes`, ``sandbox-supervisor exit-codes`` and the README).
``serve`` runs the ``tools`` service (:mod:`sandbox_supervisor.tools.service`); with
``SUPERVISOR_TOOLS_URL`` set, ``run`` executes tool calls there instead of in process.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sandbox_supervisor import __version__, exit_codes
from sandbox_supervisor.config import ConfigError
from sandbox_supervisor.session import checked_check, checked_run_id, checked_task
from sandbox_supervisor.subcommands import (
    cmd_check,
    cmd_exit_codes,
    cmd_record,
    cmd_recover,
    cmd_replay,
    cmd_run,
    cmd_serve,
    cmd_show,
    cmd_workspace,
)
from sandbox_supervisor.trajectory import TrajectoryError

EXIT_USAGE = exit_codes.USAGE


def _run_id(text: str) -> str:
    try:
        return checked_run_id(text)
    except ValueError as error:  # argparse shows only an ArgumentTypeError's message
        raise argparse.ArgumentTypeError(str(error)) from error


def _task(text: str) -> str:
    try:
        return checked_task(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _check(text: str) -> str:
    try:
        return checked_check(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


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
    run.add_argument("task", type=_task, help="what the agent should do")
    run.add_argument("--workspace", type=Path, help="workspace root (SUPERVISOR_WORKSPACE)")
    run.add_argument("--log-dir", type=Path, help="trajectory directory (SUPERVISOR_LOG_DIR)")
    run.add_argument("--log", type=Path, help="trajectory file (default: LOG_DIR/RUN_ID.jsonl)")
    run.add_argument(
        "--run-id",
        type=_run_id,
        help="the run's id (default: the UTC start time and 6 random hex digits)",
    )
    run.add_argument("--tool-mode", choices=["auto", "native", "json"])
    run.add_argument("--max-steps", type=int)
    run.add_argument("--model-url")
    run.add_argument(
        "--scripted",
        metavar="SCRIPT",
        help="use a scripted model: 'demo' or a JSON file of steps (offline)",
    )
    run.add_argument(
        "--check",
        metavar="CMD",
        type=_check,
        help="after the run, run CMD in the workspace (where the tools run): its exit "
        "status alone makes the run passed (0) or failed",
    )
    run.add_argument(
        "--subdir",
        metavar="DIR",
        help="confine the run to this subdirectory of the workspace (created when missing)",
    )
    run.add_argument(
        "--spec",
        metavar="FILE",
        help="JSON with setup (files, commands), check, script and subdir; '-' reads stdin",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    run.add_argument(
        "--json",
        action="store_true",
        help="when the run ends, print its trajectory's checked records as JSON lines (as "
        "`show --json` does) instead of the answer: stdout holds nothing else",
    )
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

    workspace = sub.add_parser(
        "workspace", help="list, pack (tar to stdout) or unpack (tar from stdin) projects"
    )
    workspace.add_argument("action", choices=["list", "pack", "unpack"])
    workspace.add_argument("name", nargs="?", help="the project's folder in the workspace")
    workspace.add_argument("--workspace", type=Path, help="workspace root (SUPERVISOR_WORKSPACE)")
    workspace.add_argument("--replace", action="store_true", help="unpack over an existing one")
    workspace.add_argument(
        "--max-file-bytes", type=int, default=1 << 30, help="larger files are left out"
    )
    workspace.set_defaults(func=cmd_workspace)

    record = sub.add_parser(
        "record",
        help="a run's recorded changes: steps, diff (whole run or --step), diffs (each "
        "step's, as JSON), rewind",
    )
    record.add_argument("action", choices=["steps", "diff", "diffs", "rewind"])
    record.add_argument("run_id", type=_run_id)
    record.add_argument("--step", type=int, help="one step (diff) or the step to go back to")
    record.add_argument("--log-dir", type=Path, help="trajectory directory (SUPERVISOR_LOG_DIR)")
    record.add_argument("--workspace", type=Path, help="workspace root (SUPERVISOR_WORKSPACE)")
    record.set_defaults(func=cmd_record)

    codes = sub.add_parser("exit-codes", help="print what each exit code of `run` means")
    codes.add_argument("--json", action="store_true", help="the machine-readable contract")
    codes.set_defaults(func=cmd_exit_codes)
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
        return exit_codes.INTERRUPTED
