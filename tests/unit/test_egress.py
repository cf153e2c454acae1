"""Unit tests of the egress allowlist (EGRESS_ALLOW), its settings rules and the proxy's
log lines (sandboxctl.egress, sandboxctl.config)."""

from __future__ import annotations

import pytest

from sandboxctl import config
from sandboxctl.egress import (
    DEFAULT_PORTS,
    Allowed,
    EgressError,
    lines_between,
    parse_allow,
    parse_log_line,
    parse_prefix,
)

EGRESS_FILES = "compose.yaml:compose.egress.yaml"


def test_empty_allowlist_means_no_proxy() -> None:
    assert parse_allow("") == ()
    assert parse_allow(" , ,") == ()


def test_entries_split_on_commas_and_spaces_with_default_and_given_ports() -> None:
    found = parse_allow("pypi.org, .pythonhosted.org  Git.Example.com:8443")
    assert found == (
        Allowed("pypi.org", DEFAULT_PORTS),
        Allowed(".pythonhosted.org", DEFAULT_PORTS),
        Allowed("git.example.com", (8443,)),
    )


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("https://pypi.org/simple", "not a URL"),
        ("10.0.0.1", "an address"),
        ("*.example.com", "'.example.com'"),
        ("exa mple.com;rm", "not a host name"),
        ("bad_name.org", "not a host name"),
        ("ok.org:0", "port must be"),
        ("ok.org:99999", "port must be"),
        ("ok.org:http", "port must be"),
        ("-lead.org", "not a host name"),
        ("a..b", "not a host name"),
        ("user@host.org", "not a URL"),
    ],
)
def test_each_kind_of_bad_entry_is_refused_with_why(entry: str, why: str) -> None:
    with pytest.raises(EgressError, match=why):
        parse_allow(f"pypi.org,{entry}")


def test_every_bad_entry_is_named_at_once() -> None:
    with pytest.raises(EgressError) as caught:
        parse_allow("1.2.3.4, ok.org, x.org:0")
    assert "'1.2.3.4'" in str(caught.value)
    assert "'x.org:0'" in str(caught.value)


def test_net_prefix_is_three_numbers_up_to_255() -> None:
    assert parse_prefix("10.90.24") == "10.90.24"
    for bad in ("10.90", "10.90.24.0", "10.300.1", "a.b.c", ""):
        with pytest.raises(EgressError, match="SANDBOX_NET_PREFIX"):
            parse_prefix(bad)


def test_settings_carry_the_allowlist_when_compose_file_has_the_proxy() -> None:
    settings = config.settings_from_mapping(
        {"EGRESS_ALLOW": "pypi.org", "COMPOSE_FILE": EGRESS_FILES}
    )
    assert settings.egress_allow == (Allowed("pypi.org"),)
    assert settings.net_prefix == "10.90.24"


def test_allowlist_without_the_proxy_file_is_a_mismatch() -> None:
    with pytest.raises(config.ConfigError, match=r"COMPOSE_FILE lacks compose\.egress\.yaml"):
        config.settings_from_mapping({"EGRESS_ALLOW": "pypi.org", "COMPOSE_FILE": "compose.yaml"})


def test_proxy_file_without_an_allowlist_is_a_mismatch() -> None:
    with pytest.raises(config.ConfigError, match=r"COMPOSE_FILE has compose\.egress\.yaml"):
        config.settings_from_mapping({"EGRESS_ALLOW": "", "COMPOSE_FILE": EGRESS_FILES})


def test_bad_allowlist_and_bad_prefix_are_reported_together() -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.settings_from_mapping(
            {"EGRESS_ALLOW": "1.2.3.4", "SANDBOX_NET_PREFIX": "10.1", "COMPOSE_FILE": EGRESS_FILES}
        )
    assert "EGRESS_ALLOW" in str(caught.value)
    assert "SANDBOX_NET_PREFIX" in str(caught.value)


def test_the_old_egress_net_prefix_is_refused_with_its_new_name() -> None:
    with pytest.raises(config.ConfigError, match="EGRESS_NET_PREFIX is now SANDBOX_NET_PREFIX"):
        config.settings_from_mapping({"EGRESS_NET_PREFIX": "10.90.25"})


ALLOWED = "2026-12-06T19:26:58Z TCP_TUNNEL 200 CONNECT allowed.test 8443 5120 410"
DENIED = "2026-12-06T19:26:59Z TCP_DENIED 403 CONNECT denied.test 443 3900 180"


def test_log_lines_say_allowed_or_denied_host_port_and_bytes() -> None:
    allowed, denied = parse_log_line(ALLOWED), parse_log_line(DENIED)
    assert allowed is not None
    assert denied is not None
    assert (allowed.allowed, allowed.host, allowed.port, allowed.bytes_in) == (
        True, "allowed.test", "8443", 5120,
    )  # fmt: skip
    assert not denied.allowed
    assert denied.status == 403
    assert denied.describe() == "DENIED CONNECT denied.test:443 -> 403, 180 B out, 3900 B in"


def test_an_upstream_error_status_is_still_an_allowed_request() -> None:
    line = parse_log_line("2026-12-06T19:26:58Z TCP_MISS 404 GET allowed.test 80 300 90")
    assert line is not None
    assert line.allowed


@pytest.mark.parametrize(
    "damaged", ["", "2026-12-06T19:26:58Z TCP_TUNNEL 200", "x " * 8, ALLOWED.replace("5120", "-")]
)
def test_a_line_that_is_not_a_log_line_is_left_out(damaged: str) -> None:
    assert parse_log_line(damaged) is None


def test_a_run_gets_the_lines_written_while_it_ran() -> None:
    text = "\n".join(
        [
            "2026-12-06T19:26:57Z TCP_TUNNEL 200 CONNECT before.test 443 1 1",
            ALLOWED,
            "torn line",
            DENIED,
            "2026-12-06T19:27:05Z TCP_TUNNEL 200 CONNECT after.test 443 1 1",
        ]
    )
    found = lines_between(text, "2026-12-06T19:26:58.100000Z", "2026-12-06T19:26:59.900000Z")
    assert [line.host for line in found] == ["allowed.test", "denied.test"]
    running = lines_between(text, "2026-12-06T19:26:58.100000Z", "")
    assert [line.host for line in running][-1] == "after.test"
