"""The run viewer in a rendered sandbox, on the stack's own runs: `invoke runs.view` writes
the page of the run the e2e made; `invoke eval` (the scripted model, one task) and then
`invoke runs.view` show the step's diff from the run's record, `invoke runs.serve` the
evaluation, its point linked to the run in the logs volume, and Ctrl-C stops the server."""

from __future__ import annotations

import html
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from e2e_sandbox import TASK, E2EStack


def test_runs_view_writes_the_page_of_the_stacks_run(e2e_stack: E2EStack, tmp_path: Path) -> None:
    run_id = str(e2e_stack.records[0]["run_id"])  # other tests run tasks in the stack too
    printed = e2e_stack.invoke("runs.view", "--id", run_id, "--output", str(tmp_path)).stdout
    printed = printed.strip()
    page = Path(printed.splitlines()[-1])
    assert page.parent == tmp_path
    text = page.read_text(encoding="utf-8")
    assert html.escape(TASK, quote=False) in text
    assert "script-src &#39;none&#39;" in text
    steps = sum(1 for r in e2e_stack.records if r.get("type") == "model_response")
    assert text.count('<section class="step"') == steps


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode("utf-8"))


def test_an_evaluations_runs_are_served_and_ctrl_c_stops_the_server(
    e2e_stack: E2EStack, tmp_path: Path
) -> None:
    e2e_stack.invoke(
        "eval", "--model", "scripted", "--tasks", "create-file", "--out", str(tmp_path / "S1")
    )
    viewed = e2e_stack.invoke("runs.view", "--output", str(tmp_path / "page.html")).stdout
    assert "page.html" in viewed  # the eval's run is the stack's last one
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    diffs = re.findall(r'<pre class="diff">(.*?)</pre>', page, re.DOTALL)
    assert len(diffs) == 1, "the step that wrote hello.txt shows its diff, read from the record"
    assert "diff --git a/hello.txt b/hello.txt" in diffs[0]
    assert "+Hello, world!" in html.unescape(diffs[0])
    server = subprocess.Popen(
        [sys.executable, "-m", "invoke", "runs.serve", "--port", "0", "--results", str(tmp_path)],
        cwd=e2e_stack.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line
        base = found.group().rstrip("/")
        index = get(base + "/")
        assert html.escape(TASK, quote=False) in index
        evaluation = get(base + "/eval/S1")
        links = re.findall(r'class="run-link" href="(/run/[^"]+)"', evaluation)
        assert len(links) == 1, evaluation
        assert "create-file" in get(base + links[0])
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out
    assert "runs.serve: stopped" in out
