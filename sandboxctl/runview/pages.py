"""The pages as HTML: Jinja templates with autoescaping, every string made visible first,
and a Content-Security-Policy that allows no script and only the page's own style.

A page is one self-contained file: its style sheet sits inline, allowed by its hash; it
loads nothing (``default-src 'none'``), so it opens from disk with no network. Its charts
are inline SVG. Every string a template prints passes through :func:`_finalize`: HTML-escaped, its
control characters made visible; autoescaping stays on behind it for anything else. Only
markup made in this package (the style sheet, the marked signs) is printed as it is.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from sandboxctl.runview import chart, evals, index
from sandboxctl.runview.model import RunView
from sandboxctl.runview.visible import markup, visible
from sandboxctl.stack.runs import Run

FOOTER = "Written by sandboxctl's run viewer; what the model and its tools wrote is shown as text."


def _finalize(value: Any) -> Any:
    """What a template prints: strings escaped, their control characters made visible
    (:func:`~sandboxctl.runview.visible.markup`); markup already made is left as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return markup(value)
    return value


def plain(value: Any) -> Markup:
    """A value for an attribute: signs without marks (no markup inside quotes), escaped."""
    return escape(visible(str(value)))


CLASSES = frozenset({"passed", "failed", "finished", "error", "context", "retry", "repair"})
"""The statuses and note kinds the style sheet colours."""


def style_class(name: Any) -> str:
    """The style class of a status or note kind: itself when the style sheet knows it, else
    ``other`` (no run-written text in a class attribute)."""
    return str(name) if name in CLASSES else "other"


def _css() -> str:
    return resources.files("sandboxctl.runview").joinpath("templates/style.css").read_text()


CSS = _css()


def csp(css: str = CSS) -> str:
    """The pages' Content-Security-Policy: nothing loads, no script runs, no form leaves
    the server, and only the inline style sheet whose hash it names applies."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; script-src 'none'; object-src 'none'; "
        f"style-src 'sha256-{digest}'; img-src 'none'; base-uri 'none'; form-action 'self'"
    )


def environment() -> Environment:
    """The Jinja environment of the pages (autoescape on for every template)."""
    env = Environment(
        loader=PackageLoader("sandboxctl.runview", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["plain"] = plain
    env.filters["cls"] = style_class
    return env


_ENV = environment()


def render(template: str, *, nav: bool, **values: Any) -> str:
    """Render ``template`` with the shared head (policy, style) and ``values``."""
    style = Markup(CSS)  # noqa: S704 (this package's own style sheet, whose hash the policy names)
    return _ENV.get_template(template).render(
        csp=csp(), css=style, nav=nav, footer=FOOTER, **values
    )


def run_page(view: RunView, *, nav: bool = False) -> str:
    """A run's page; ``nav`` adds links to the server's index (not in a file on disk)."""
    return render(
        "run.html.j2",
        nav=nav,
        run=view,
        time_chart=chart.bars("seconds per step", [s.seconds for s in view.steps], "s"),
        token_chart=chart.bars("tokens per step", [s.tokens for s in view.steps], "tokens", 1),
    )


def index_page(runs: Sequence[Run], query: index.Query) -> str:
    """The server's index of runs, sorted and filtered by ``query``."""
    statuses, models = index.choices(runs)
    return render(
        "index.html.j2",
        nav=True,
        rows=index.rows(runs, query),
        total=len(runs),
        query=query,
        columns=index.columns(query),
        statuses=statuses,
        models=models,
    )


def evals_page(stamps: Sequence[str], folder: str) -> str:
    """The list of evaluations, each linked to its page."""
    return render(
        "evals.html.j2", nav=True, evals=[(s, evals.eval_href(s)) for s in stamps], folder=folder
    )


def eval_page(stamp: str, data: dict[str, Any], runs: Sequence[Run]) -> str:
    """An evaluation's page: its tables, its chart (points linked to their runs)."""
    return render("eval.html.j2", nav=True, **evals.page_values(stamp, data, runs))
