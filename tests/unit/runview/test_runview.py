"""Unit tests of sandboxctl.runview: a run's page, the index, an evaluation's page, the
server's routes. Model- and tool-written text is hostile: every field is tested with the
whole class (markup, event handlers, ``javascript:`` links, terminal escapes, bidi), on
runs the real agent loop wrote (the scripted model, tools in process) and on a hand-made
trajectory for the records a scripted run cannot produce (retries, context events, diffs,
odd types)."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sandboxctl.runview import evals, index, model, pages, samples, server, source
from sandboxctl.runview.visible import markup, visible
from sandboxctl.stack.runs import Run, parse_files

FIELDS = ("task", "thought", "content", "file", "output", "reply", "answer", "check")
"""The fields of the hostile sample run whose payloads a page must show as text."""


class Elements(HTMLParser):
    """The elements and attributes of a page, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Elements:
    found = Elements()
    found.feed(html)
    return found


URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "srcset"}


def assert_inert(html: str) -> None:
    """No script, no event handler, no link but to this site (no ``javascript:``), no
    image; no raw terminal escape or bidi override."""
    found = parsed(html)
    tags = {tag for tag, _ in found.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed"}, tags
    for tag, attrs in found.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in URL_ATTRIBUTES & set(attrs):
            assert (attrs[name] or "").startswith(("/", "#", "?")), (tag, attrs)
    assert "\x1b" not in html
    assert "\u202e" not in html
    assert "\x07" not in html


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The demo and hostile sample runs, written by the real agent loop."""
    folder = tmp_path_factory.mktemp("runs")
    samples.demo_run(folder)
    samples.hostile_run(folder)
    return {run.run_id: run for run in source.read_folder(folder / "logs")}


def test_visible_shows_every_control_character_as_a_sign() -> None:
    assert visible("a\x1b[2Jb\x07\u202ec\x9b\x00") == "a\\x1b[2Jb\\x07\\u202ec\\x9b\\x00"
    assert visible("line\n\tindented") == "line\n\tindented"


def test_markup_escapes_text_and_marks_signs() -> None:
    html = markup("<b>\x1b]0;t\x07</b>&")
    assert html == (
        '&lt;b&gt;<span class="ctl">\\x1b</span>]0;t<span class="ctl">\\x07</span>&lt;/b&gt;&amp;'
    )


def test_a_real_run_page_shows_steps_calls_results_check_and_totals(
    sample_runs: dict[str, Run],
) -> None:
    view = model.build(sample_runs["sample-demo"])
    assert (view.status, view.agent_status, len(view.steps)) == ("passed", "finished", 4)
    assert [c.name for s in view.steps for c in s.calls] == [
        "list_dir", "write_file", "run_command", "finish",
    ]  # fmt: skip
    assert view.steps[2].calls[0].output.startswith("Hello from the sandbox")
    assert view.check is not None
    assert view.check.passed
    assert view.tokens["total"] == 443 + 543 + 609 + 662
    html = pages.run_page(view)
    found = parsed(html)
    assert len([a for _, a in found.tags if (a.get("class") or "").startswith("step")]) == 4
    assert 'id="check-verdict" class="verdict passed"' in html
    assert "grep -q Hello hello.txt" in html
    assert html.count("<rect ") == 8  # a bar per step in each of the two charts
    assert_inert(html)


def test_every_hostile_field_of_a_real_run_renders_as_inert_text(
    sample_runs: dict[str, Run],
) -> None:
    html = pages.run_page(model.build(sample_runs["sample-hostile"]))
    assert_inert(html)
    text = "".join(parsed(html).text)
    for field in FIELDS:
        assert f"pwned=`{field}`" in text, field
    for field in ("task", "reply"):  # shown as the model wrote them, not as JSON
        for kind, value in samples.payload(field).items():
            if kind != "terminal":
                assert value in text, (field, kind)
    assert samples.HOSTILE_FILE in text
    assert "\\x1b]0;retitled\\x07\\x1b[2J" in text  # the terminal escapes, visible


def hostile_records() -> list[dict[str, Any]]:
    """A hand-made run with what a scripted run cannot write: retries, a context event,
    per-step diffs, setup output, an error with a traceback, fields of odd types."""
    bad = samples.hostile_text
    records: list[dict[str, Any]] = [
        {"type": "run_start", "task": bad("task"), "tool_mode": bad("mode"),
         "config": {"model": bad("model"), "temperature": bad("setting")},
         "versions": {bad("version"): bad("version")}, "check": bad("check")},
        {"type": "setup", "steps": [{"tool": "write_file", "target": bad("setup"),
                                     "status": bad("status"), "output": bad("setup")}]},
        {"type": "model_request", "step": 1, "context": {"estimated": bad("estimate"),
                                                           "budget": 100}},
        {"type": "error", "where": "model", "kind": "retry", "attempt": 1, "delay_s": 0.5,
         "message": bad("retry")},
        {"type": "context", "step": 1, "n_ctx": bad("ctx"), "budget_tokens": 100,
         "shortened": [1], "removed": "odd"},
        {"type": "model_response", "step": 1, "reply": {"content": bad("reply"),
         "usage": {"prompt_tokens": "many", "completion_tokens": 3}, "latency_s": None,
         "problem": bad("problem")}},
        {"type": "tool_call", "step": 1, "call_id": bad("callid"), "name": bad("tool"),
         "arguments": {bad("key"): [bad("argument")]}},
        {"type": "tool_result", "step": 1, "call_id": bad("callid"), "status": bad("status"),
         "exit_code": bad("exit"), "output": bad("result"), "duration_s": "x",
         "diff": "--- a/x\n+++ b/x\n@@\n-" + bad("diff")},
        {"type": "error", "where": bad("where"), "kind": bad("kind"), "message": bad("error"),
         "traceback": bad("traceback"), "step": 2},
        {"type": "model_response", "step": 2, "reply": "not an object"},
        {"type": "repair", "dropped_bytes": bad("repair")},
        {"type": "check", "command": bad("check"), "passed": "yes", "output": bad("checkout")},
        {"type": "run_end", "status": bad("status"), "reason": bad("reason"),
         "answer": bad("answer"), "steps": 2, "tokens": {"total": "lots"}, "elapsed_s": 1.5},
    ]  # fmt: skip
    return [
        {"v": 1, "seq": n, "ts": "2026-01-01T00:00:00Z", "run_id": bad("id"), **record}
        for n, record in enumerate(records)
    ]


def test_every_field_of_a_hand_made_hostile_run_renders_as_inert_text() -> None:
    run = Run(samples.hostile_text("file"), tuple(hostile_records()))
    view = model.build(run)
    assert view.steps[0].diffs == []
    assert view.steps[0].calls[0].diff.startswith("--- a/x")
    assert [n.kind for n in view.steps[0].notes] == ["retry", "context"]  # a retry has no step
    assert view.check is not None
    assert not view.check.passed
    html = pages.run_page(view)
    assert_inert(html)
    text = "".join(parsed(html).text)
    fields = ["task", "model", "setting", "version", "setup", "retry", "ctx", "reply",
              "problem", "callid", "tool", "key", "argument", "status", "exit", "result",
              "diff", "where", "kind", "error", "traceback", "repair", "check", "checkout",
              "reason", "answer", "id", "file", "mode", "estimate"]  # fmt: skip
    missing = [f for f in fields if f"pwned=`{f}`" not in text]
    assert missing == []


def test_a_diff_on_any_record_of_a_step_shows_under_that_step() -> None:
    records = [
        {"v": 1, "seq": 0, "ts": "t", "run_id": "r", "type": "run_start", "task": "t"},
        {"v": 1, "seq": 1, "ts": "t", "run_id": "r", "type": "model_request", "step": 1,
         "changes": [{"path": "a.txt", "change": "added"}]},
    ]  # fmt: skip
    view = model.build(Run("f", tuple(records)))
    assert len(view.steps[0].diffs) == 1
    assert "a.txt" in view.steps[0].diffs[0]
    assert 'class="diff"' in pages.run_page(view)


def test_each_recorded_step_s_diff_shows_under_its_step_once_and_escaped() -> None:
    """The run's record gives each step's diff (``runs.view`` reads it in a one-shot
    container); it goes on the step's snapshot record, and the page shows it as text."""
    hostile = "diff --git a/x b/x\n+<script>document.title='pwned'</script>\n"
    records = [
        {"v": 1, "seq": 0, "ts": "t", "run_id": "r", "type": "run_start", "task": "t"},
        {"v": 1, "seq": 1, "ts": "t", "run_id": "r", "type": "snapshot", "step": 0,
         "changed": 1, "removed": 0, "stored_bytes": 10, "ms": 1.0},
        {"v": 1, "seq": 2, "ts": "t", "run_id": "r", "type": "model_response", "step": 1,
         "reply": {"content": "ok"}},
        {"v": 1, "seq": 3, "ts": "t", "run_id": "r", "type": "snapshot", "step": 1,
         "changed": 1, "removed": 0, "stored_bytes": 30, "ms": 2.0},
    ]  # fmt: skip
    run = Run("f", tuple(records))
    assert source.recorded_steps(run) == [1]
    view = model.build(source.with_step_diffs(run, {1: hostile}))
    assert view.steps[0].diffs == [hostile]
    assert [note.title for note in view.steps[0].notes] == [
        "changes recorded: 1 changed, 0 removed, 30 bytes stored in 2 ms"
    ]
    page = pages.run_page(view)
    assert "<script>document" not in page
    assert "&lt;script&gt;document.title=" in page
    assert page.count("document.title") == 1


def test_the_page_policy_allows_no_script_and_only_its_own_style(
    sample_runs: dict[str, Run],
) -> None:
    html = pages.run_page(model.build(sample_runs["sample-demo"]))
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert policy is not None
    text = policy.group(1).replace("&#39;", "'")
    assert "default-src 'none'" in text
    assert "script-src 'none'" in text
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style is not None
    assert text == pages.csp(style.group(1))  # the hash is the inline sheet's own
    assert "http" not in html.split("<body>")[0].replace("http-equiv", "")  # loads nothing


def test_a_status_never_reaches_a_class_attribute_as_written() -> None:
    assert pages.style_class('passed" onclick="x') == "other"
    assert pages.style_class("failed") == "failed"
    assert str(pages.plain('a"\x1b<')) == "a&#34;\\x1b&lt;"


def test_the_index_filters_and_sorts_and_escapes(sample_runs: dict[str, Run]) -> None:
    runs = [*sample_runs.values(), Run("h.jsonl", tuple(hostile_records()))]
    query = index.parse_query({"sort": ["tokens"], "order": ["asc"], "status": ["passed"]})
    rows = index.rows(runs, query)
    assert [r.run_id for r in rows] == ["sample-demo", "sample-hostile"]
    assert next(r.run_id for r in index.rows(runs, index.Query("tokens", "desc"))) == (
        "sample-hostile"
    )
    assert index.parse_query({"sort": ["__class__"], "order": ["sideways"]}) == index.Query()
    html = pages.index_page(runs, index.Query())
    assert_inert(html)
    assert "pwned=`task`" in "".join(parsed(html).text)
    assert index.run_href("a/../b?c") == "/run/a%2F..%2Fb%3Fc"


def write_eval(results: Path, stamp: str, logs: dict[str, str]) -> None:
    """An eval.json as `invoke eval` writes it, its runs' logs as in the stack."""
    folder = results / stamp
    folder.mkdir(parents=True)
    tasks = {"hello": {"runs": 1, "passed": 1, "pass_rate": 1.0, "steps_mean": 4.0,
                       "tokens_mean": 2257.0, "wall_s_mean": 0.4, "end_reasons": {"passed": 1}},
             "<b>x</b>": {"runs": 1, "passed": 1, "pass_rate": 0.0, "steps_mean": 4.0,
                          "tokens_mean": 10.0, "wall_s_mean": 0.2,
                          "end_reasons": {"failed": 1}}}  # fmt: skip
    data = {
        "meta": {"stamp": stamp, "tasks": 2, "repeat": 1, "models": ["scripted"]},
        "models": {"scripted": {"all": tasks["hello"], "tasks": tasks}},
        "runs": [{"model": "scripted", "task": task, "repeat": 1, "status": "passed",
                  "log": log} for task, log in logs.items()],
    }  # fmt: skip
    (folder / "eval.json").write_text(json.dumps(data))


def test_an_eval_page_links_every_point_to_its_runs(tmp_path: Path) -> None:
    demo = samples.demo_run(tmp_path / "made").read_bytes()
    runs = parse_files({"eval/S1/scripted-hello-1.jsonl": demo})
    write_eval(tmp_path / "eval", "S1", {"hello": "/logs/eval/S1/scripted-hello-1.jsonl",
                                         "<b>x</b>": "/logs/eval/S1/gone.jsonl"})  # fmt: skip
    assert evals.stamps(tmp_path / "eval") == ["S1"]
    html = pages.eval_page("S1", evals.load(tmp_path / "eval", "S1"), runs)
    assert_inert(html)
    points = re.findall(r'<a class="point" href="#(m0-t\d)"', html)
    assert points == ["m0-t1", "m0-t2"]
    assert 'id="m0-t1"' in html
    assert 'class="run-link" href="/run/sample-demo"' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # a task id is text too
    with pytest.raises(evals.EvalViewError):
        evals.load(tmp_path / "eval", "../eval/S1")


@pytest.fixture
def served(sample_runs: dict[str, Run], tmp_path: Path) -> Iterator[int]:
    """The server on a free port of 127.0.0.1, serving the sample runs."""
    write_eval(tmp_path / "eval", "S1", {"hello": "/logs/eval/S1/x.jsonl"})
    site = server.Site(lambda: list(sample_runs.values()), tmp_path / "eval")
    httpd = server.make_server(site, 0)
    # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def request(port: int, path: str, method: str = "GET", host: str = "") -> tuple[int, Any, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", host or f"127.0.0.1:{port}")
    connection.endheaders()
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, response.headers, body


def test_the_server_answers_its_routes_with_the_policy(served: int) -> None:
    for path in ("/", "/?sort=steps&order=asc", "/run/sample-hostile", "/evals", "/eval/S1"):
        status, headers, body = request(served, path)
        assert status == 200, path
        assert "script-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert_inert(body)
    assert server.HOST == "127.0.0.1"


@pytest.mark.parametrize(
    "path",
    ["/../../etc/passwd", "/run/../../etc/passwd", "/run/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
     "/eval/..%2f..%2fetc", "/eval/../eval/S1", "/style.css", "/run/", "/run/a/b",
     "/run/nope", "//etc/passwd", "/eval/S1/eval.json"],
)  # fmt: skip
def test_the_server_answers_nothing_but_its_routes(served: int, path: str) -> None:
    status, _, body = request(served, path)
    assert status == 404
    assert "root:" not in body


def test_the_server_refuses_writes_and_foreign_hosts(served: int) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert request(served, "/", method)[0] == 405
    assert request(served, "/", host="attacker.example:80")[0] == 421
    assert request(served, "/", host=f"localhost:{served}")[0] == 200


def test_a_page_is_written_under_a_safe_name(tmp_path: Path) -> None:
    assert source.page_name("../../x y") == "run-.._.._x_y.html"
    written = source.write_page("<p>", "a/b", tmp_path)
    assert written == tmp_path / "run-a_b.html"
    assert written.read_text() == "<p>"


def test_the_page_templates_name_no_copier_question() -> None:
    """Copier copies the page templates as they are; the template's leftover check
    (tests/template) flags any ``{{ }}`` naming a question, so none may (``model``...)."""
    from sandboxctl.answers import ANSWERS

    questions = {a.question for a in ANSWERS if a.question} | {"project_name", "engine"}
    folder = Path(pages.__file__).parent / "templates"
    named = {
        (path.name, match)
        for path in folder.glob("*.j2")
        for match in re.findall(r"\{\{.*?\}\}|\{%.*?%\}", path.read_text(), flags=re.S)
        if set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", match)) & questions
    }
    assert named == set()
