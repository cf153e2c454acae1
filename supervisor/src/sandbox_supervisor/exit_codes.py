"""The exit codes of ``sandbox-supervisor run``: one definition, shared with the host.

The table lives in ``exit_codes.json`` next to this module (shipped in the wheel), so
the host tooling reads the same file without importing the supervisor, and
``sandbox-supervisor exit-codes --json`` prints it from an image. Each *code* has a
number, whether a run that ends with it ``finished`` on its own terms (done, a budget
ran out, it gave up on unusable replies, its check failed) and a meaning; each run
*status* (the ``run_end`` record's ``status``) maps to one code. A status names what is
known: ``finished`` when the model called finish and nothing checked it; with a check,
``passed`` or ``failed`` by the check's exit status alone (:data:`VERDICTS`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

CONTRACT_FILE = "exit_codes.json"


def contract() -> dict[str, Any]:
    """The parsed ``exit_codes.json`` (the machine-readable contract)."""
    text = resources.files("sandbox_supervisor").joinpath(CONTRACT_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


_CONTRACT = contract()


CODES: dict[str, int] = {name: int(entry["code"]) for name, entry in _CONTRACT["codes"].items()}
"""Code number by name (``ok``, ``error``, ``usage``, ``budget``, ``check_failed``, ...)."""

OK = CODES["ok"]
ERROR = CODES["error"]
USAGE = CODES["usage"]
UNAVAILABLE = CODES["unavailable"]
INTERRUPTED = CODES["interrupted"]

#: Exit code of ``sandbox-supervisor run`` for each run status.
EXIT_CODES: dict[str, int] = {status: CODES[name] for status, name in _CONTRACT["statuses"].items()}

#: Codes of a run that ended on its own terms (the host treats them as "the run finished").
FINISHED: frozenset[int] = frozenset(
    entry["code"] for entry in _CONTRACT["codes"].values() if entry["finished"]
)


#: The statuses a check decides (the run carried a check and it ran).
VERDICTS: frozenset[str] = frozenset({"passed", "failed"})


def for_status(status: str) -> int:
    """The exit code of a run that ended with ``status`` (unknown statuses are errors)."""
    return EXIT_CODES.get(status, ERROR)
