"""The index of runs: one row per run (id, start, task, model, status, steps, tokens,
seconds), sorted and filtered on the server from the page's query, so the page needs no
script. A query value that names no column or no order falls back to the default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from sandboxctl.runview.model import model_of
from sandboxctl.stack.runs import Run

COLUMNS = ("id", "start", "task", "model", "status", "steps", "tokens", "seconds")
NUMERIC = frozenset({"steps", "tokens", "seconds"})


def run_href(run_id: str) -> str:
    """The server's path of a run's page (the id quoted whole: no ``/``, ``:`` or ``?``)."""
    return "/run/" + quote(run_id, safe="")


@dataclass(frozen=True)
class Query:
    """How the index is sorted and filtered."""

    sort: str = "start"
    order: str = "desc"
    status: str = ""
    model_name: str = ""

    def href(self, **changes: str) -> str:
        """The index's path with this query, ``changes`` applied."""
        query = replace(self, **changes)
        return "/?" + urlencode(
            {"sort": query.sort, "order": query.order, "status": query.status,
             "model": query.model_name}
        )  # fmt: skip


def parse_query(params: Mapping[str, Sequence[str]]) -> Query:
    """The query of ``/?sort=..&order=..&status=..&model=..`` (first values; unknown
    sort columns and orders give the defaults)."""

    def first(name: str) -> str:
        values = params.get(name) or [""]
        return str(values[0])[:200]

    sort = first("sort") if first("sort") in COLUMNS else "start"
    order = first("order") if first("order") in ("asc", "desc") else "desc"
    return Query(sort, order, first("status"), first("model"))


@dataclass(frozen=True)
class Row:
    """One run in the index."""

    run_id: str
    start: str
    task: str
    model_name: str
    status: str
    steps: int
    tokens: int
    seconds: float
    href: str

    def key(self, column: str) -> Any:
        """The value the index sorts ``column`` by."""
        return getattr(self, {"id": "run_id", "model": "model_name"}.get(column, column))


def row(run: Run) -> Row:
    """The index row of ``run``."""
    return Row(
        run.run_id,
        run.started[:19].replace("T", " "),
        run.task,
        model_of(run),
        run.reason,
        run.steps,
        run.tokens,
        run.seconds,
        run_href(run.run_id),
    )


def rows(runs: Sequence[Run], query: Query) -> list[Row]:
    """The rows that pass the query's filters, in its order."""
    found = [
        r
        for r in map(row, runs)
        if (not query.status or r.status == query.status)
        and (not query.model_name or r.model_name == query.model_name)
    ]
    return sorted(found, key=lambda r: r.key(query.sort), reverse=query.order == "desc")


@dataclass(frozen=True)
class Column:
    """A column heading: its name, the link that sorts by it, and its arrow."""

    name: str
    href: str
    mark: str
    numeric: bool


def columns(query: Query) -> list[Column]:
    """The headings; each links to the index sorted by it (again: the other way)."""
    out = []
    for name in COLUMNS:
        current = name == query.sort
        order = ("asc" if query.order == "desc" else "desc") if current else "desc"
        mark = (" \u25bc" if query.order == "desc" else " \u25b2") if current else ""
        out.append(Column(name, query.href(sort=name, order=order), mark, name in NUMERIC))
    return out


def choices(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """The statuses and the models the runs have, for the filters."""
    return sorted({run.reason for run in runs}), sorted({model_of(run) for run in runs})
