"""A read-only web server for the run pages, on 127.0.0.1 only.

Routes, and nothing else: ``/`` (the index, ``?sort=&order=&status=&model=``),
``/run/ID`` (a run's page), ``/evals`` (the evaluations) and ``/eval/STAMP`` (one
evaluation). GET and HEAD only; any other method is refused. No path from a request
reaches the file system: a run id is looked up among the runs read, an evaluation's name
among the folder's listing. A request whose ``Host`` is not this server's loopback
address is refused (a web page's DNS rebinding cannot read the runs). Every answer
carries the pages' Content-Security-Policy, ``nosniff``, ``no-referrer`` and
``frame-ancestors 'none'``.

Runs come from a :data:`RunSource` (the logs volume, read again at most every few
seconds; or a folder of trajectories), evaluations from the results folder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandboxctl.runview import evals, index, pages
from sandboxctl.runview.model import build
from sandboxctl.stack.runs import Run, RunsError

HOST = "127.0.0.1"
RunSource = Callable[[], Sequence[Run]]
"""Where the server's runs come from; called for every page (cache it: :class:`Cached`)."""


class Cached:
    """A :data:`RunSource` that reads again only after ``seconds``."""

    def __init__(self, source: RunSource, seconds: float = 5.0) -> None:
        self.source = source
        self.seconds = seconds
        self._runs: Sequence[Run] = ()
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def __call__(self) -> Sequence[Run]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.seconds:
                self._runs = self.source()
                self._read_at = time.monotonic()
            return self._runs


class Site:
    """The pages the server answers, by path (no sockets: testable on its own)."""

    def __init__(self, runs: RunSource, results: Path) -> None:
        self.runs = runs
        self.results = results

    def page(self, target: str) -> tuple[int, str]:
        """The status and HTML of the page at ``target`` (a request's path and query)."""
        parts = urlsplit(target)
        path = parts.path
        try:
            if path == "/":
                query = index.parse_query(parse_qs(parts.query))
                return 200, pages.index_page(self.runs(), query)
            if path.startswith("/run/") and path.count("/") == 2:
                run_id = unquote(path.removeprefix("/run/"))
                found = [run for run in self.runs() if run.run_id == run_id]
                if found:
                    return 200, pages.run_page(build(found[-1]), nav=True)
                return self.missing(f"no run {run_id!r}")
            if path == "/evals":
                return 200, pages.evals_page(evals.stamps(self.results), str(self.results))
            if path.startswith("/eval/") and path.count("/") == 2:
                stamp = unquote(path.removeprefix("/eval/"))
                data = evals.load(self.results, stamp)
                return 200, pages.eval_page(stamp, data, self.runs())
        except evals.EvalViewError as error:
            return self.missing(str(error))
        except RunsError as error:
            return 503, pages.render("message.html.j2", nav=True, title="cannot read the runs",
                                     message=str(error))  # fmt: skip
        return self.missing("no such page")

    def missing(self, message: str) -> tuple[int, str]:
        """The not-found page."""
        return 404, pages.render("message.html.j2", nav=True, title="not found", message=message)


def handler(site: Site, port: Callable[[], int]) -> type[BaseHTTPRequestHandler]:
    """The request handler class serving ``site``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "sandboxctl-runview"
        sys_version = ""

        def headers_ok(self) -> bool:
            host = self.headers.get("Host", "")
            return host in {f"{HOST}:{port()}", f"localhost:{port()}"}

        def send(self, status: int, body: str, *, head: bool = False) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", pages.csp() + "; frame-ancestors 'none'")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def answer(self, *, head: bool) -> None:
            if not self.headers_ok():
                self.send(HTTPStatus.MISDIRECTED_REQUEST, "wrong Host", head=head)
                return
            status, body = site.page(self.path)
            self.send(status, body, head=head)

        def do_GET(self) -> None:
            self.answer(head=False)

        def do_HEAD(self) -> None:
            self.answer(head=True)

        def refuse(self) -> None:
            self.send(HTTPStatus.METHOD_NOT_ALLOWED, "read-only")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the server prints only where it listens and when it stops."""

    return Handler


def make_server(site: Site, port: int = 0) -> ThreadingHTTPServer:
    """A server for ``site`` bound to 127.0.0.1 (``port`` 0: any free port)."""
    holder: dict[str, int] = {}
    server = ThreadingHTTPServer((HOST, port), handler(site, lambda: holder["port"]))
    server.daemon_threads = True
    holder["port"] = int(server.server_address[1])
    return server


def serve(site: Site, port: int, say: Callable[[str], None] = print) -> None:
    """Serve ``site`` until Ctrl-C."""
    server = make_server(site, port)
    say(f"runs.serve: http://{HOST}:{server.server_address[1]}/ (read-only; Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("runs.serve: stopped")
    finally:
        server.server_close()
