"""`spec.allowedHosts` at admission: host names (optionally `:port` or `:*`) are admitted;
anything else is refused naming the entry and what is expected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from webhook_samples import mcpserver

from moorage_webhook.validation import validate_mcpserver
from moorage_webhook.validation.names import allowed_host_problem


@pytest.mark.parametrize(
    "hosts",
    [
        ["mcp.example.com"],
        ["mcp.example.com:443", "mcp.example.com:*", "internal", "10.0.0.7:8080"],
        ["a" * 63 + "." + "b" * 63],
    ],
    ids=["name", "ports-and-ips", "long-labels"],
)
def test_host_names_with_optional_ports_are_admitted(hosts: list[str]) -> None:
    verdict = validate_mcpserver(mcpserver({"allowedHosts": hosts}))
    assert verdict.allowed, verdict.errors


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("MCP.example.com", "lowercase host name"),
        ("*.example.com", "lowercase host name"),
        ("https://mcp.example.com", "invalid port"),
        ("mcp.example.com/path", "lowercase host name"),
        ("mcp.example.com:0", "invalid port"),
        ("mcp.example.com:65536", "invalid port"),
        ("mcp.example.com:", "invalid port"),
        ("[::1]:8080", "lowercase host name"),
        ("-bad.example.com", "lowercase host name"),
        ("a" * 64 + ".example.com", "at most 63 characters"),
        (".".join(["a" * 50] * 5), "at most 253 characters"),
        ("", "lowercase host name"),
    ],
    ids=[
        "upper-case",
        "wildcard",
        "url",
        "path",
        "port-zero",
        "port-too-big",
        "empty-port",
        "ipv6",
        "leading-dash",
        "long-label",
        "long-name",
        "empty",
    ],
)
def test_anything_else_is_refused_with_the_entry_and_what_is_expected(
    host: str, fragment: str
) -> None:
    verdict = validate_mcpserver(mcpserver({"allowedHosts": ["ok.example.com", host]}))
    messages = [str(e) for e in verdict.errors]
    assert not verdict.allowed
    assert any(m.startswith("spec.allowedHosts[1]: ") and fragment in m for m in messages), messages


def test_a_host_listed_twice_is_refused() -> None:
    verdict = validate_mcpserver(mcpserver({"allowedHosts": ["a.example", "a.example"]}))
    assert [str(e) for e in verdict.errors] == [
        "spec.allowedHosts: hosts must be listed once: a.example"
    ]


@given(st.text(max_size=80))
def test_the_readable_check_agrees_with_the_schema(host: str) -> None:
    verdict = validate_mcpserver(mcpserver({"allowedHosts": [host]}))
    assert verdict.allowed is (allowed_host_problem(host) is None)
