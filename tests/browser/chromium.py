"""Headless Chromium from Debian's ``chromium`` package, driven from its command line: the
DOM after the page ran (``--dump-dom``) and a screenshot. Each call is a fresh browser
with a throwaway profile, no extensions, no background networking."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

NAMES = ("chromium", "chromium-browser")
TIMEOUT_S = 90


def find() -> str:
    """The Chromium executable; an error saying how to install it when there is none."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no chromium on PATH: `sudo apt-get install chromium` "
        "(requirements/debian-check-packages.txt; `./bootstrap.sh nox` installs it)"
    )


def _run(url: str, *flags: str) -> str:
    """Run headless Chromium on ``url`` with ``flags``; its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [
            find(), "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--virtual-time-budget=3000", *flags, url,
        ]  # fmt: skip
        if os.geteuid() == 0:  # Chromium's own sandbox cannot run as root
            argv.insert(1, "--no-sandbox")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str) -> str:
    """The page's DOM, serialised after it loaded and any script on it ran."""
    return _run(url, "--dump-dom")


def screenshot(url: str, dest: Path, width: int = 1200, height: int = 1800) -> Path:
    """A PNG of the page's first ``width`` x ``height`` pixels at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(url, f"--screenshot={dest}", f"--window-size={width},{height}")
    if not dest.is_file() or dest.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot at {dest}")
    return dest


class Dom(HTMLParser):
    """A dumped DOM: its elements (with attributes, in order) and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.chunks: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        """The text of the page, as one string."""
        return "".join(self.chunks)

    def root(self) -> dict[str, str]:
        """The attributes of ``<html>``."""
        return next(attrs for tag, attrs in self.elements if tag == "html")

    def having(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """The elements named ``tag`` whose attributes include ``attrs``."""
        return [
            found
            for name, found in self.elements
            if name == tag
            and all(found.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]
