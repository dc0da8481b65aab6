"""Outgoing headers and authentication: secrets from the environment, what goes upstream, what
never does, private addresses, and the remote's initialize check."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfig
from moorage_core.startup import StartupFailure
from moorage_proxyrunner.backends.remote.client import (
    OutgoingClient,
    OutgoingRefused,
    outgoing_client,
)
from moorage_proxyrunner.backends.remote.healthcheck import (
    RemoteCheck,
    RemoteChecker,
    interpret_answer,
    remote_check_patch,
)
from moorage_proxyrunner.backends.remote.outgoing import (
    OutgoingAuth,
    exchange_config,
    fixed_headers,
)
from moorage_proxyrunner.backends.reverse.endpoints import forwarded_headers
from moorage_proxyrunner.protocol.pipeline import Identity


def remote_rc(url: str = "http://127.0.0.1:9/mcp", **fields: Any) -> RunConfig:
    remote = {"url": url, "allow_private_endpoint": True} | fields.pop("remote", {})
    return RunConfig.model_validate({"name": "r", "namespace": "n", "remote": remote, **fields})


BEARER = {"type": "bearerToken", "config_name": "c", "bearer_token": {"env": "UP_TOKEN"}}
INJECT = {
    "type": "headerInjection",
    "config_name": "c",
    "header_injection": {"name": "X-Api-Key", "value_from": {"env": "UP_KEY"}},
}
EXCHANGE = {
    "type": "tokenExchange",
    "config_name": "c",
    "token_exchange": {
        "token_url": "http://as/token",
        "client_id": "proxy",
        "client_secret": {"env": "AS_SECRET"},
        "audience": "up",
    },
}
OIDC = {"type": "oidc", "issuer": "http://as", "audience": "proxy"}


def test_fixed_headers_are_the_remote_headers_then_the_credential() -> None:
    rc = remote_rc(
        remote={
            "headers": [
                {"name": "X-Tenant", "value": "blue"},
                {"name": "X-Secret", "value_from": {"env": "HDR"}},
            ]
        },
        outgoing_auth=BEARER,
    )
    headers = fixed_headers(rc, {"HDR": "h", "UP_TOKEN": "t0k"})
    assert headers == {"X-Tenant": "blue", "X-Secret": "h", "Authorization": "Bearer t0k"}
    assert fixed_headers(remote_rc(outgoing_auth=INJECT), {"UP_KEY": "k"}) == {"X-Api-Key": "k"}
    assert (
        fixed_headers(remote_rc(outgoing_auth={"type": "unauthenticated", "config_name": "c"}), {})
        == {}
    )


def test_a_missing_or_multiline_secret_stops_the_start_up_naming_the_variable() -> None:
    with pytest.raises(StartupFailure) as missing:
        fixed_headers(remote_rc(outgoing_auth=BEARER), {})
    assert "UP_TOKEN" in str(missing.value)
    assert missing.value.setting == "outgoing_auth.bearer_token"
    with pytest.raises(StartupFailure, match="line break"):
        fixed_headers(remote_rc(outgoing_auth=INJECT), {"UP_KEY": "a\r\nX-Evil: 1"})


def test_token_exchange_needs_an_authenticated_caller() -> None:
    with pytest.raises(StartupFailure, match="oidc is off"):
        exchange_config(remote_rc(outgoing_auth=EXCHANGE), {"AS_SECRET": "s"})
    config = exchange_config(remote_rc(outgoing_auth=EXCHANGE, oidc=OIDC), {"AS_SECRET": "s"})
    assert config is not None
    assert (config.client_secret, config.audience) == ("s", "up")


def test_an_mcpserver_without_outgoing_auth_keeps_the_plain_client() -> None:
    rc = RunConfig.model_validate(
        {"name": "r", "namespace": "n", "image": "x", "transport": "streamable-http"}
    )
    assert outgoing_client(rc, {}, registry=CollectorRegistry()) is None
    with_auth = rc.model_copy(
        update={"outgoing_auth": remote_rc(outgoing_auth=BEARER).outgoing_auth}
    )
    client = outgoing_client(with_auth, {"UP_TOKEN": "t"}, registry=CollectorRegistry())
    assert client is not None
    assert client.allow_private  # its own pods are private addresses


def test_the_client_headers_forwarded_upstream_never_carry_credentials() -> None:
    sent = forwarded_headers(
        {
            "Authorization": "Bearer caller",
            "Proxy-Authorization": "Basic x",
            "Cookie": "a=b",
            "Connection": "keep-alive",
            "Mcp-Session-Id": "s",
            "Accept": "application/json",
        }
    )
    assert sent == {"Mcp-Session-Id": "s", "Accept": "application/json"}


async def test_without_an_exchanger_or_a_caller_only_the_fixed_headers_go() -> None:
    auth = OutgoingAuth(fixed={"X-A": "1"})
    assert await auth.headers(Identity(subject="alice", token="caller")) == {"X-A": "1"}
    assert await auth.headers(None) == {"X-A": "1"}


class Recorder:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.answer: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": "moorage-remote-check",
            "result": {"protocolVersion": "2025-11-25", "serverInfo": {"name": "far"}},
        }
        self.status = 200
        self.deleted: list[str] = []

    async def post(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response(self.answer, headers={"Mcp-Session-Id": "sess-1"})

    async def delete(self, request: web.Request) -> web.Response:
        self.deleted.append(request.headers.get("Mcp-Session-Id", ""))
        return web.Response(status=204)


@pytest.fixture
async def remote() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/mcp", recorder.post)
    app.router.add_delete("/mcp", recorder.delete)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield recorder, f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"
    await runner.cleanup()


async def test_the_client_adds_the_fixed_headers_to_every_request(
    remote: tuple[Recorder, str],
) -> None:
    recorder, url = remote
    client = OutgoingClient(OutgoingAuth(fixed={"Authorization": "Bearer up"}), allow_private=True)
    try:
        target = client.target(url)
        response = await client.request(
            "POST", target, headers={"Content-Type": "application/json"}, body=b"{}"
        )
        await response.read()
    finally:
        await client.close()
    assert recorder.headers[0]["Authorization"] == "Bearer up"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_address_is_refused_at_connection_time(
    remote: tuple[Recorder, str], host: str
) -> None:
    recorder, url = remote
    client = OutgoingClient(OutgoingAuth(), allow_private=False)
    try:
        target = client.target(url.replace("127.0.0.1", host))
        with pytest.raises(OutgoingRefused, match="private or loopback") as refused:
            await client.request("POST", target, headers={}, body=b"{}")
        assert refused.value.status == 502
    finally:
        await client.close()
    assert recorder.headers == []


def test_https_targets_are_reached_over_tls_by_the_remote_client_only() -> None:
    client = OutgoingClient(OutgoingAuth(), allow_private=False)
    target = client.target("https://mcp.example.com/mcp")
    assert (target.tls, target.port, target.host) == (True, 443, "mcp.example.com")


def test_answers_to_initialize_say_whether_and_what_answered() -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "v", "serverInfo": {"name": "s"}}}
    ).encode()
    assert interpret_answer(200, "application/json", body, needs_caller=False) == RemoteCheck(
        True, "the remote answered initialize", "v", "s"
    )
    sse = b"event: message\ndata: " + body + b"\n\n"
    assert interpret_answer(200, "text/event-stream", sse, needs_caller=False).server_name == "s"
    assert interpret_answer(401, "", b"", needs_caller=True).answered
    assert not interpret_answer(401, "", b"", needs_caller=False).answered
    refused = interpret_answer(
        200,
        "application/json",
        b'{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"no"}}',
        needs_caller=False,
    )
    assert (refused.answered, refused.message) == (False, "the remote refused initialize: no")
    assert not interpret_answer(200, "text/html", b"<html>", needs_caller=False).answered


def test_the_status_patch_touches_only_remote_check() -> None:
    patch = remote_check_patch(
        RemoteCheck(True, "ok", "2025-11-25", "far"), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert patch == {
        "status": {
            "remoteCheck": {
                "answered": True,
                "checkedAt": "2026-01-02T03:04:05Z",
                "protocolVersion": "2025-11-25",
                "serverName": "far",
                "message": "ok",
            }
        }
    }


async def test_the_check_reports_only_changes_and_closes_its_session(
    remote: tuple[Recorder, str],
) -> None:
    recorder, url = remote
    reports: list[RemoteCheck] = []

    async def report(check: RemoteCheck) -> None:
        reports.append(check)

    client = OutgoingClient(OutgoingAuth(fixed={"X-Key": "k"}), allow_private=True)
    checker = RemoteChecker(client, url, transport="streamable-http", report=report)
    try:
        await checker.run_once()
        await checker.run_once()
        assert [r.server_name for r in reports] == ["far"]
        assert recorder.deleted == ["sess-1", "sess-1"]
        assert all(h["X-Key"] == "k" for h in recorder.headers)
        recorder.status = 503
        await checker.run_once()
        assert [r.answered for r in reports] == [True, False]
    finally:
        await client.close()


async def test_a_failed_report_is_tried_again_at_the_next_check(
    remote: tuple[Recorder, str],
) -> None:
    _, url = remote
    calls: list[RemoteCheck] = []

    async def report(check: RemoteCheck) -> None:
        calls.append(check)
        if len(calls) == 1:
            raise OSError("apiserver away")

    client = OutgoingClient(OutgoingAuth(), allow_private=True)
    checker = RemoteChecker(client, url, transport="streamable-http", report=report)
    try:
        await checker.run_once()
        await checker.run_once()
        await checker.run_once()
    finally:
        await client.close()
    assert len(calls) == 2
