"""The opt-in egress allowlist (``EGRESS_ALLOW``) and the egress proxy's log lines.

``EGRESS_ALLOW`` names the hosts the tools container's commands may reach through the
egress proxy (``compose.egress.yaml``, Squid in ``egress/``); empty means no proxy and no
way out. Entries are separated by commas or spaces; each is a host name, optionally
starting with a dot (the name and every name under it) and ending in ``:PORT`` (otherwise
ports 80 and 443). ``egress/entrypoint.sh`` applies the same rules before Squid starts;
this module refuses bad entries earlier, when ``.env`` is loaded.

The proxy writes one line per request to ``egress/access.log`` in the ``egress-log``
volume, in the format its entrypoint gives Squid:
``TIME STATUS HTTP_CODE METHOD HOST PORT BYTES_TO_CLIENT BYTES_FROM_CLIENT``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandboxctl.errors import UsageError

DEFAULT_PORTS = (80, 443)
"""The ports an entry without ``:PORT`` allows."""
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^\.?{_LABEL}(?:\.{_LABEL})*$")
_PREFIX = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


class EgressError(UsageError, ValueError):
    """An ``EGRESS_ALLOW`` entry or ``SANDBOX_NET_PREFIX`` that is not accepted."""


@dataclass(frozen=True)
class Allowed:
    """One allowed destination: a host (``.name`` for the name and its subdomains) and
    its ports."""

    host: str
    ports: tuple[int, ...] = DEFAULT_PORTS


def parse_allow(text: str) -> tuple[Allowed, ...]:
    """The entries of an ``EGRESS_ALLOW`` value, in order; () when it is empty.

    Raises :class:`EgressError` naming every entry that is not a host name with an optional
    port from 1 to 65535 (an address, a URL, a wildcard ``*``: each refused with why).
    """
    entries: list[Allowed] = []
    problems: list[str] = []
    for entry in text.replace(",", " ").split():
        host, colon, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if "/" in entry or "@" in entry:
            problems.append(f"{entry!r}: a host name, not a URL (drop the scheme and path)")
        elif host.startswith("*."):
            problems.append(f"{entry!r}: write {entry[1:]!r} for the name and its subdomains")
        elif not _HOST.match(host) or len(host) > 253:
            problems.append(f"{entry!r}: not a host name (letters, digits, '-' and '.')")
        elif host.replace(".", "").isdigit():
            problems.append(f"{entry!r}: an address; name the host (the proxy resolves it)")
        elif colon and not (port.isdigit() and 1 <= int(port) <= 65535):
            problems.append(f"{entry!r}: the port must be a number from 1 to 65535")
        else:
            entries.append(Allowed(host.lower(), (int(port),) if colon else DEFAULT_PORTS))
    if problems:
        raise EgressError("EGRESS_ALLOW: " + "; ".join(problems))
    return tuple(entries)


def parse_prefix(text: str) -> str:
    """``SANDBOX_NET_PREFIX``: the first three numbers of the sandbox's /24, where its
    services have fixed addresses (compose.yaml: the stack's networks have no resolver,
    so the egress proxy, too, is found at ``PREFIX.250``). Raises :class:`EgressError`
    when it is not three numbers from 0 to 255."""
    match = _PREFIX.match(text.strip())
    if match is None or not all(0 <= int(part) <= 255 for part in match.groups()):
        raise EgressError(
            f"SANDBOX_NET_PREFIX={text!r}: expected three numbers such as 10.90.24 "
            "(ai-net becomes 10.90.24.0/25 and tools-net 10.90.24.128/25)"
        )
    return text.strip()


@dataclass(frozen=True)
class EgressLine:
    """One request the proxy handled."""

    time: str
    """UTC, ``YYYY-MM-DDTHH:MM:SSZ``."""
    allowed: bool
    status: int
    method: str
    host: str
    port: str
    bytes_in: int
    """Bytes the proxy sent back to the tools container."""
    bytes_out: int
    """Bytes the tools container sent (the request, and a tunnel's upload)."""

    def describe(self) -> str:
        """The line as ``runs.show`` prints it."""
        verdict = "allowed" if self.allowed else "DENIED"
        return (
            f"{verdict} {self.method} {self.host}:{self.port} -> {self.status}, "
            f"{self.bytes_out} B out, {self.bytes_in} B in"
        )


def parse_log_line(line: str) -> EgressLine | None:
    """An access-log line of the proxy, or None when the line is not one (a torn last
    line, damage)."""
    parts = line.split()
    if len(parts) != 8 or not parts[0].endswith("Z"):
        return None
    time, squid_status, code, method, host, port, sent, received = parts
    if not (code.isdigit() and sent.isdigit() and received.isdigit()):
        return None
    allowed = "DENIED" not in squid_status
    return EgressLine(time, allowed, int(code), method, host, port, int(sent), int(received))


def lines_between(text: str, start: str, end: str) -> list[EgressLine]:
    """The log lines of ``text`` whose time falls between two trajectory timestamps
    (``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``end`` empty: still running), to the second."""
    first, last = start[:19], end[:19] if end else "9999"
    found = []
    for raw in text.splitlines():
        line = parse_log_line(raw)
        if line is not None and first <= line.time[:19] <= last:
            found.append(line)
    return found
