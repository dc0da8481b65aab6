"""The RunConfig's remote and outgoing-auth parts: what a remote proxy may carry, and what not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage_api.outgoing import (
    find_duplicate_headers,
    header_name_problem,
    is_private_address,
    remote_url_problem,
)
from moorage_api.runconfig import RunConfig, RunConfigError, load_runconfig, render_runconfig_json

REMOTE = {"url": "https://mcp.example.com/mcp", "transport": "streamable-http"}


def remote_config(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": "moorage/v1",
        "name": "saas",
        "namespace": "tools",
        "remote": dict(REMOTE),
    }
    data.update(overrides)
    return data


def error_of(data: dict[str, Any]) -> str:

    with pytest.raises(RunConfigError) as caught:
        load_runconfig(json.dumps(data))
    return str(caught.value)


def test_a_remote_runconfig_needs_no_image_and_round_trips() -> None:
    rc = RunConfig.model_validate(
        remote_config(
            remote={
                **REMOTE,
                "headers": [
                    {"name": "X-Team", "value": "payments"},
                    {"name": "X-Api-Key", "value_from": {"env": "MOORAGE_HEADER_1"}},
                ],
            },
            outgoing_auth={
                "type": "tokenExchange",
                "config_name": "exchange",
                "token_exchange": {
                    "token_url": "https://idp.example.com/token",
                    "client_id": "proxy",
                    "client_secret": {
                        "env": "MOORAGE_TOKEN_EXCHANGE_CLIENT_SECRET",
                        "secret_key_ref": {"name": "idp", "key": "secret"},
                    },
                    "audience": "saas",
                    "scopes": ["tools"],
                },
            },
        )
    )
    assert rc.image == ""
    assert load_runconfig(render_runconfig_json(rc)) == rc


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"remote": None}, "image: required unless remote is set"),
        ({"image": "ghcr.io/x/y:1"}, "image: not allowed with remote"),
        (
            {"args": ["--x"], "backend_replicas": 2},
            "args, backend_replicas: not allowed with remote",
        ),
        (
            {"remote": {"url": "ftp://x.example.com"}},
            "remote.url: 'ftp://x.example.com' must use http or https",
        ),
        ({"remote": {"url": "http://127.0.0.1:8080/mcp"}}, "set allowPrivateEndpoint"),
        ({"remote": {"url": "https://u:p@x.example.com/"}}, "must not carry credentials"),
        ({"remote": {"url": "https://x.example.com", "transport": "stdio"}}, "remote.transport"),
        (
            {
                "remote": {
                    **REMOTE,
                    "headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
                }
            },
            "duplicate names ['x-a']",
        ),
        (
            {"remote": {**REMOTE, "headers": [{"name": "X-A"}]}},
            "header X-A: set exactly one of value and value_from",
        ),
        (
            {"remote": {**REMOTE, "headers": [{"name": "Authorization", "value": "Bearer x"}]}},
            "credentials come from an MCPExternalAuthConfig",
        ),
        (
            {"remote": {**REMOTE, "headers": [{"name": "X-A", "value": "a\r\nX-B: b"}]}},
            "line break",
        ),
        (
            {"remote": {**REMOTE, "headers": [{"name": "X A", "value": "1"}]}},
            "remote.headers[0].name",
        ),
        (
            {"outgoing_auth": {"type": "bearerToken", "config_name": "c"}},
            "outgoing_auth.bearer_token: required when type is bearerToken",
        ),
        (
            {
                "outgoing_auth": {
                    "type": "unauthenticated",
                    "config_name": "c",
                    "bearer_token": {"env": "T"},
                }
            },
            "outgoing_auth.bearer_token: not allowed when type is unauthenticated",
        ),
        (
            {
                "outgoing_auth": {
                    "type": "headerInjection",
                    "config_name": "c",
                    "header_injection": {"name": "X-Key", "value": "inline"},
                }
            },
            "the value must come from a Secret",
        ),
        (
            {
                "outgoing_auth": {
                    "type": "tokenExchange",
                    "config_name": "c",
                    "token_exchange": {"token_url": "idp/token", "client_id": "p"},
                }
            },
            "token_exchange.token_url",
        ),
    ],
)
def test_a_remote_runconfig_refuses_with_the_field_named(
    overrides: dict[str, Any], message: str
) -> None:
    assert message in error_of(remote_config(**overrides))


def test_a_stdio_server_takes_no_outgoing_auth() -> None:
    data = remote_config(
        remote=None,
        image="ghcr.io/x/y:1",
        outgoing_auth={"type": "unauthenticated", "config_name": "c"},
    )
    assert "a stdio server has no upstream" in error_of(data)
    data["transport"] = "streamable-http"
    assert load_runconfig(json.dumps(data)).outgoing_auth is not None


@pytest.mark.parametrize(
    ("url", "allow", "problem"),
    [
        ("https://mcp.example.com/mcp", False, None),
        ("http://mcp.example.com:8080/", False, None),
        ("http://localhost:8080/mcp", False, "allowPrivateEndpoint"),
        ("http://api.localhost/mcp", False, "allowPrivateEndpoint"),
        ("http://LOCALHOST./mcp", False, "allowPrivateEndpoint"),
        ("http://10.1.2.3/mcp", False, "allowPrivateEndpoint"),
        ("http://169.254.169.254/latest", False, "allowPrivateEndpoint"),
        ("http://[::1]:9000/mcp", False, "allowPrivateEndpoint"),
        ("http://[fd00::1]/mcp", False, "allowPrivateEndpoint"),
        ("http://0.0.0.0/mcp", False, "allowPrivateEndpoint"),
        ("http://127.0.0.1:8080/mcp", True, None),
        ("https://x.example.com:99999/", True, "is not a URL"),
        ("https://x.example.com:0/", True, "port 0"),
        ("https:///mcp", True, "has no host"),
        ("https://x.example.com/#frag", True, "fragment"),
        ("mcp.example.com/mcp", True, "must use http or https"),
    ],
)
def test_remote_urls(url: str, allow: bool, problem: str | None) -> None:
    found = remote_url_problem(url, allow_private=allow)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("8.8.8.8", False),
        ("127.0.0.53", True),
        ("192.168.1.1", True),
        ("::ffff:10.0.0.1", True),
        ("example.com", False),
    ],
)
def test_private_addresses(address: str, private: bool) -> None:
    assert is_private_address(address) is private


@pytest.mark.parametrize(
    "name", ["Host", "content-length", "MCP-Session-Id", "authorization", "Last-Event-ID"]
)
def test_reserved_headers_are_refused(name: str) -> None:
    assert header_name_problem(name) is not None


def test_header_names_compare_without_case() -> None:
    assert header_name_problem("X-Tenant") is None
    assert find_duplicate_headers(["X-A", "x-b", "X-a", "x-A"]) == ["x-a"]
