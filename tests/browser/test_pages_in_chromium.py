"""The run viewer's pages in a real browser: headless Chromium (Debian's package) opens a
run's page from disk and the served index and evaluation, and the DOM it built is checked:
the steps, the verdict, every hostile string present as text, and no injected script run
(the ``data-pwned`` canary on ``<html>`` unset). Escaping and the Content-Security-Policy
are each proven on their own, and the canary is proven able to fire. Screenshots go to
``results/browser/``."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import chromium
import pytest

from sandboxctl.runview import model, pages, samples, server, source
from sandboxctl.stack.runs import Run

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "results" / "browser"
FIELDS = ("task", "thought", "content", "file", "output", "reply", "answer", "check")
POLICY = re.compile(r'<meta http-equiv="Content-Security-Policy" content="[^"]*">\n')


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The demo and the hostile run, written by the supervisor's real agent loop."""
    folder = tmp_path_factory.mktemp("made")
    samples.demo_run(folder)
    samples.hostile_run(folder)
    return {run.run_id: run for run in source.read_folder(folder / "logs")}


@pytest.fixture(scope="module")
def pages_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pages")


def page_file(folder: Path, name: str, html: str) -> str:
    path = folder / name
    path.write_text(html, encoding="utf-8")
    return path.as_uri()


def assert_no_script_ran(dom: chromium.Dom) -> None:
    assert samples.CANARY not in dom.root(), f"an injected script ran: {dom.root()}"


def assert_hostile_text_is_text(dom: chromium.Dom) -> None:
    # nothing of the payloads became an element: the page's own are the only ones
    assert dom.having("script") == [], "a <script> element was injected"
    assert dom.having("img") == [], "an <img> element was injected"
    handlers = [(t, a) for t, a in dom.elements if any(k.startswith("on") for k in a)]
    assert handlers == [], "an element with an event handler was injected"
    hrefs = [a["href"] for tag, a in dom.elements if tag == "a" and "href" in a]
    assert all(h.startswith(("#", "/")) for h in hrefs), hrefs
    for field in FIELDS:
        assert f"pwned=`{field}`" in dom.text, f"{field}: its payload is not shown as text"
    assert samples.payload("task")["script"] in dom.text
    assert samples.payload("reply")["img"] in dom.text
    assert "\\x1b]0;retitled\\x07" in dom.text  # the terminal escape, visible


def test_a_run_page_from_disk_shows_its_steps_and_verdict(
    runs: dict[str, Run], pages_dir: Path
) -> None:
    url = page_file(pages_dir, "demo.html", pages.run_page(model.build(runs["sample-demo"])))
    dom = chromium.Dom(chromium.dump_dom(url))
    assert len(dom.having("section", class_="step")) == 4
    assert dom.having("span", id="verdict", class_="verdict passed")
    assert dom.having("span", id="check-verdict", class_="verdict passed")
    assert "Hello from the sandbox" in dom.text
    assert len(dom.having("rect")) == 8
    assert_no_script_ran(dom)
    chromium.screenshot(url, SHOTS / "run-demo.png", height=2300)


def test_every_hostile_field_stays_text_in_the_browser(
    runs: dict[str, Run], pages_dir: Path
) -> None:
    html = pages.run_page(model.build(runs["sample-hostile"]))
    url = page_file(pages_dir, "hostile.html", html)
    dom = chromium.Dom(chromium.dump_dom(url))
    assert_hostile_text_is_text(dom)
    assert_no_script_ran(dom)
    chromium.screenshot(url, SHOTS / "run-hostile.png", height=2600)


def test_escaping_alone_keeps_the_page_inert_without_its_policy(
    runs: dict[str, Run], pages_dir: Path
) -> None:
    """The same page with its Content-Security-Policy cut out: escaping holds by itself."""
    html = pages.run_page(model.build(runs["sample-hostile"]))
    stripped, cut = POLICY.subn("", html)
    assert cut == 1
    dom = chromium.Dom(chromium.dump_dom(page_file(pages_dir, "no-policy.html", stripped)))
    assert_no_script_ran(dom)
    assert_hostile_text_is_text(dom)


def test_the_policy_alone_stops_markup_that_was_never_escaped(pages_dir: Path) -> None:
    """Payloads pasted raw into a page: with the pages' policy no script runs; without it
    the canary fires (so the canary can see a script that ran)."""
    raw = "".join(samples.payload("raw")[kind] for kind in ("script", "img", "svg"))
    head = f'<meta http-equiv="Content-Security-Policy" content="{pages.csp()}">'
    guarded = f"<!DOCTYPE html><html><head>{head}</head><body>{raw}</body></html>"
    bare = f"<!DOCTYPE html><html><head></head><body>{raw}</body></html>"
    dom = chromium.Dom(chromium.dump_dom(page_file(pages_dir, "raw-guarded.html", guarded)))
    assert_no_script_ran(dom)
    dom = chromium.Dom(chromium.dump_dom(page_file(pages_dir, "raw-bare.html", bare)))
    assert dom.root().get(samples.CANARY) == "raw"


@pytest.fixture(scope="module")
def served(runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``runs.serve``'s server on a free port of 127.0.0.1, with an evaluation."""
    results = tmp_path_factory.mktemp("results")
    (results / "S1").mkdir()
    (results / "S1" / "eval.json").write_text(
        '{"meta": {"tasks": 1, "repeat": 1}, "models": {"scripted": {"all": {"runs": 1, '
        '"passed": 1, "pass_rate": 1.0, "steps_mean": 4, "tokens_mean": 2257, '
        '"wall_s_mean": 0.4}, "tasks": {"hello": {"runs": 1, "passed": 1, "pass_rate": 1.0, '
        '"steps_mean": 4, "tokens_mean": 2257, "wall_s_mean": 0.4}}}}, "runs": [{"model": '
        '"scripted", "task": "hello", "repeat": 1, "status": "passed", '
        '"log": "/logs/sample-demo.jsonl"}]}'
    )
    found = list(runs.values())
    httpd = server.make_server(server.Site(lambda: found, results), 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{server.HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_served_index_lists_the_runs_and_stays_inert(served: str) -> None:
    dom = chromium.Dom(chromium.dump_dom(served + "/?sort=tokens&order=desc"))
    rows = dom.having("tr", class_="run")
    assert len(rows) == 2
    links = [
        a["href"] for tag, a in dom.elements if tag == "a" and a.get("href", "").startswith("/run/")
    ]
    assert links == ["/run/sample-hostile", "/run/sample-demo"]
    assert "pwned=`task`" in dom.text
    assert_no_script_ran(dom)
    assert dom.having("script") == []
    assert dom.having("img") == []
    chromium.screenshot(served + "/", SHOTS / "index.png", height=700)


def test_a_served_evaluation_links_its_point_to_its_run(served: str) -> None:
    dom = chromium.Dom(chromium.dump_dom(served + "/eval/S1"))
    assert dom.having("a", class_="point", href="#m0-t1")
    assert dom.having("a", class_="run-link", href="/run/sample-demo")
    assert_no_script_ran(dom)
    chromium.screenshot(served + "/eval/S1", SHOTS / "eval.png", height=900)
