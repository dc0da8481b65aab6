"""What the proxy authorises and audits is exactly what the server runs.

The server here is tests/fixtures/caseserver, written in Go: its `encoding/json` matches keys
case-insensitively with the last one winning, so `{"name": "public_echo", "Name":
"delete_everything"}` runs `delete_everything` there. Through the proxy (stdio bridge and HTTP
backend alike) such a message is refused before anything reaches the server; a clean call runs
exactly the tool that was authorised, and the audit records name it and the client's own id.
Requests that cannot be audited (a lone surrogate) and notifications clients do not send are
refused too, on streamable HTTP and on legacy HTTP+SSE. So is a single key the proxy does not
read but Go does: a member outside the JSON-RPC envelope (`Method` beside a fake `result`, `ID`
on a notification), a protocol member in other case (`Name`, `Arguments`), an argument key in
other case from the one the Cedar policies read (`Path`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from proxykit import (
    JSON,
    TOOLBOX,
    Proxy,
    initialize,
    initialize_request,
    running_proxy,
    serving_toolbox,
)
from testkit.caseserver import caseserver_binary
from testkit.waiting import eventually

from moorage_api.runconfig import RunConfigAuthz
from moorage_proxyrunner.config.toolpolicy import ToolPolicy
from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = pytest.mark.e2e

POLICY = 'permit(principal, action == Action::"call_tool", resource == Tool::"public_echo");'
SETTINGS: dict[str, Any] = {
    "audit": True,
    "authz": RunConfigAuthz(policies=[POLICY]),
    "tool_policy": ToolPolicy(allowed=frozenset({"public_echo"})),
}
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Served:
    """The proxy in front of the case-insensitive server, and what that server acted on."""

    proxy: Proxy
    log: Path
    kind: str

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def ran(self) -> list[str]:
        return [e["name"] for e in self.entries() if e["kind"] == "call"]


@dataclass
class Session:
    """A legacy streamable-HTTP session through the proxy to the case-insensitive server."""

    served: Served
    http: aiohttp.ClientSession
    id: str

    async def post(self, body: bytes) -> tuple[int, dict[str, Any] | None]:
        headers = {**JSON, "Mcp-Session-Id": self.id, "MCP-Protocol-Version": "2025-11-25"}
        async with self.http.post(self.served.proxy.mcp, data=body, headers=headers) as resp:
            if resp.content_type != "application/json":
                return resp.status, None
            return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def served(
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any] | None = None,
) -> AsyncIterator[Served]:
    """The proxy in front of the server, over stdio or streamable HTTP."""
    log = tmp_path / "caseserver.jsonl"
    monkeypatch.setenv("CASESERVER_LOG", str(log))
    command = (str(caseserver_binary()),)
    async with contextlib.AsyncExitStack() as stack:
        if kind == "stdio":
            backend = LocalBackend(transport="stdio", command=(*command, "stdio"))
        else:
            url = await stack.enter_async_context(serving_toolbox("http", command))
            backend = LocalBackend(transport="streamable-http", target_urls=(url,))
        proxy = await stack.enter_async_context(running_proxy(backend, **(settings or SETTINGS)))
        yield Served(proxy, log, kind)


@pytest_asyncio.fixture(params=["stdio", "http"])
async def session(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Session]:
    async with (
        served(request.param, tmp_path, monkeypatch) as srv,
        aiohttp.ClientSession() as http,
    ):
        yield Session(srv, http, await initialize(http, srv.proxy.mcp))


def audit_records(out: str, event: str = "mcp_audit") -> list[dict[str, Any]]:
    return [
        record
        for line in out.splitlines()
        if line.startswith("{") and (record := json.loads(line)).get("event") == event
    ]


ATTACKS = {
    "case-variant-name": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",'
        b'"params":{"name":"public_echo","Name":"delete_everything","arguments":{}}}'
    ),
    "duplicate-name": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",'
        b'"params":{"name":"delete_everything","name":"public_echo","arguments":{}}}'
    ),
    "upper-case-escaped-name": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",'
        b'"params":{"name":"public_echo","\\u004eAME":"delete_everything"}}'
    ),
    "case-variant-argument": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",'
        b'"params":{"name":"public_echo","arguments":{"path":"/tmp","PATH":"/etc"}}}'
    ),
    "case-variant-method": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/list","Method":"tools/call",'
        b'"params":{"name":"delete_everything"}}'
    ),
}


async def test_ambiguous_keys_never_reach_a_case_insensitive_server(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = session.served
    for name, body in ATTACKS.items():
        status, answer = await session.post(body)
        assert status == 400, name
        assert answer is not None
        assert answer["error"]["code"] == -32600, name
        assert "differs from it only in case" in answer["error"]["message"], name
    status, answer = await session.post(
        b'{"jsonrpc":"2.0","id":"mine","method":"tools/call",'
        b'"params":{"name":"public_echo","arguments":{"text":"hi"}}}',
    )
    assert status == 200
    assert answer is not None
    assert answer["result"]["content"][0]["text"] == "ran public_echo"
    assert answer["id"] == "mine"
    assert srv.ran() == ["public_echo"]
    out = capsys.readouterr().out
    calls = [r for r in audit_records(out) if r["method"] == "tools/call"]
    assert [(r["target"], r["decision"], r["request_id"]) for r in calls] == [
        ("public_echo", "allow", "mine")
    ]
    [forward] = [r for r in audit_records(out, "mcp_audit_forward") if r["method"] == "tools/call"]
    assert (forward["forwarded_target"], forward["request_id"]) == ("public_echo", "mine")


SINGLE_VARIANTS = {
    # A fake response: no "method", so not a request to the proxy; Go reads Method and Params.
    "fake-response-result": (
        b'{"jsonrpc":"2.0","id":5,"result":{},"Method":"tools/call",'
        b'"Params":{"name":"delete_everything"}}',
        -32600,
        "'Method' is not a JSON-RPC member",
    ),
    "fake-response-error": (
        b'{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"m"},"Method":"tools/call",'
        b'"Params":{"name":"delete_everything"}}',
        -32600,
        "'Method' is not a JSON-RPC member",
    ),
    # The only name is in other case: the filter and Cedar see none, Go reads it.
    "name-in-other-case": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"Name":"delete_everything"}}',
        -32602,
        "'Name' in params differs only in case from the MCP member 'name'",
    ),
    "arguments-in-other-case": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",'
        b'"params":{"name":"public_echo","Arguments":{"text":"x"}}}',
        -32602,
        "'Arguments' in params differs only in case from the MCP member 'arguments'",
    ),
    # An id on a notification: Go answers it as request 3, which the stdio bridge could route
    # to another session's request 3.
    "notification-with-id": (
        b'{"jsonrpc":"2.0","method":"notifications/progress","ID":3,'
        b'"params":{"progressToken":1,"progress":1}}',
        -32600,
        "'ID' is not a JSON-RPC member",
    ),
    # The stdio bridge maps `progressToken` to its own; Go would read this one unmapped.
    "meta-progress-token-in-other-case": (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call",'
        b'"params":{"name":"public_echo","_meta":{"ProgressToken":1}}}',
        -32602,
        "'ProgressToken' in params._meta differs only in case from the MCP member 'progressToken'",
    ),
    "progress-token-in-other-case": (
        b'{"jsonrpc":"2.0","method":"notifications/progress",'
        b'"params":{"ProgressToken":1,"progress":1}}',
        -32602,
        "'ProgressToken' in params differs only in case from the MCP member 'progressToken'",
    ),
}


async def test_single_keys_in_other_case_never_reach_a_case_insensitive_server(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = session.served
    for name, (body, code, text) in SINGLE_VARIANTS.items():
        status, answer = await session.post(body)
        assert status == 400, name
        assert answer is not None
        assert answer["error"]["code"] == code, name
        assert text in answer["error"]["message"], name
    # The server acted on none of them; a clean call after them still runs.
    status, answer = await session.post(
        b'{"jsonrpc":"2.0","id":6,"method":"tools/call",'
        b'"params":{"name":"public_echo","arguments":{}}}',
    )
    assert (status, answer and answer["id"]) == (200, 6)
    assert srv.ran() == ["public_echo"]
    assert all(e["method"] != "notifications/progress" for e in srv.entries())
    assert all(
        r["method"] != "notifications/progress" for r in audit_records(capsys.readouterr().out)
    )


async def test_the_modern_wire_refuses_client_responses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with served("http", tmp_path, monkeypatch) as srv, aiohttp.ClientSession() as http:
        headers = {**JSON, "MCP-Protocol-Version": MODERN}
        answer = {"jsonrpc": "2.0", "id": 5, "result": {}}
        async with http.post(srv.proxy.mcp, json=answer, headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["message"] == (
                "Clients do not send responses on the 2026-07-28 wire"
            )
    assert srv.entries() == []


FORBID_ETC = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"public_echo");',
    "forbid(principal, action, resource) when "
    '{ context.arguments has path && context.arguments.path like "/etc/*" };',
]


@pytest.mark.parametrize("kind", ["stdio", "http"])
async def test_arguments_are_spelt_as_the_policies_read_them(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"audit": True, "authz": RunConfigAuthz(policies=FORBID_ETC)}
    async with (
        served(kind, tmp_path, monkeypatch, settings) as srv,
        aiohttp.ClientSession() as http,
    ):
        session = Session(srv, http, await initialize(http, srv.proxy.mcp))

        def call(arguments: dict[str, Any]) -> bytes:
            params = {"name": "public_echo", "arguments": arguments}
            return json.dumps(
                {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
            ).encode()

        status, answer = await session.post(call({"Path": "/etc/shadow"}))
        assert status == 400
        assert answer is not None
        assert answer["error"]["code"] == -32602
        assert "'Path' differs only in case from 'path'" in answer["error"]["message"]
        status, _ = await session.post(call({"path": "/etc/shadow"}))
        assert status == 403
        status, _ = await session.post(call({"path": "/tmp/x"}))
        assert status == 200
    assert [e["arguments"] for e in srv.entries() if e["kind"] == "call"] == [{"path": "/tmp/x"}]


async def test_a_denied_call_is_refused_and_audited_under_the_clients_id(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = session.served
    body = {
        "jsonrpc": "2.0",
        "id": 41,
        "method": "tools/call",
        "params": {"name": "delete_everything"},
    }
    status, answer = await session.post(json.dumps(body).encode())
    assert status == 403
    assert answer is not None
    assert (answer["id"], "error" in answer) == (41, True)
    assert srv.ran() == []
    [record] = [r for r in audit_records(capsys.readouterr().out) if r["method"] == "tools/call"]
    assert (record["target"], record["request_id"]) == ("delete_everything", 41)


async def test_refused_before_the_server_lone_surrogates_and_foreign_notifications(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = session.served
    before = len(srv.entries())
    status, answer = await session.post(
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"tools/call",'
        b'"params":{"name":"public_echo","arguments":{}}}',
    )
    assert (status, answer and answer["error"]["code"]) == (400, -32700)
    assert answer is not None
    assert "lone UTF-16 surrogate" in answer["error"]["message"]
    for method in ("tools/call", "notifications/message", "notifications/tools/list_changed"):
        note = {"jsonrpc": "2.0", "method": method, "params": {"name": "delete_everything"}}
        status, answer = await session.post(json.dumps(note).encode())
        assert (status, answer and answer["error"]["code"]) == (400, -32601), method
        assert answer is not None
        assert "notifications/cancelled" in answer["error"]["message"]
    status, _ = await session.post(b'{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}')
    assert status == 202
    await eventually(
        lambda: _has_entry(srv, "notifications/roots/list_changed"),
        message="the client notification reached the server",
    )
    entries = srv.entries()[before:]
    assert [e["method"] for e in entries if e["kind"] == "call"] == []
    assert all(e["method"] != "notifications/message" for e in entries)
    methods = [r["method"] for r in audit_records(capsys.readouterr().out)]
    assert "notifications/roots/list_changed" in methods
    assert "tools/call" not in methods


async def _has_entry(srv: Served, method: str) -> bool:
    return any(e["method"] == method for e in srv.entries())


async def test_the_modern_wire_forwards_routing_headers_taken_from_the_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with served("http", tmp_path, monkeypatch) as srv, aiohttp.ClientSession() as http:
        modern = {"jsonrpc": "2.0", "id": 3, "method": "tools/call"}
        modern["params"] = {"name": "public_echo", "arguments": {}, "_meta": ENVELOPE}
        headers = {
            **JSON,
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call",
            "Mcp-Name": "public_echo",
        }
        async with http.post(srv.proxy.mcp, json=modern, headers=headers) as resp:
            assert resp.status == 200
        # A mirrored argument must say what the body says.
        mirrored = {**modern, "params": {**modern["params"], "arguments": {"path": "/tmp"}}}
        lying = {**headers, "Mcp-Param-Path": "/etc"}
        async with http.post(srv.proxy.mcp, json=mirrored, headers=lying) as resp:
            assert resp.status == 400
            answer = await resp.json()
            assert answer["error"]["code"] == -32020
            assert answer["error"]["message"] == "mcp-param-path does not match the argument 'path'"
        # A legacy client's stray routing headers are not the server's to read.
        forged = {**JSON, "Mcp-Method": "tools/call", "Mcp-Name": "delete_everything"}
        legacy = {"jsonrpc": "2.0", "id": 4, "method": "tools/call"}
        legacy["params"] = {"name": "public_echo", "arguments": {}}
        async with http.post(srv.proxy.mcp, json=legacy, headers=forged) as resp:
            assert resp.status == 200
    calls = [e for e in srv.entries() if e["kind"] == "call"]
    assert [(c["name"], c.get("mcp_method"), c.get("mcp_name")) for c in calls] == [
        ("public_echo", "tools/call", "public_echo"),
        ("public_echo", None, None),
    ]


async def _sse_session(http: aiohttp.ClientSession, proxy: Proxy) -> tuple[str, Any]:
    resp = await http.get(proxy.sse, headers={"Accept": "text/event-stream"})
    assert resp.status == 200
    buffer = b""
    while b"\n\n" not in buffer:
        buffer += await resp.content.readany()
    endpoint = next(
        line[len(b"data: ") :].decode()
        for line in buffer.splitlines()
        if line.startswith(b"data: ")
    )
    return proxy.base + endpoint, resp


@pytest.mark.parametrize("kind", ["stdio", "sse"])
async def test_legacy_sse_refuses_the_same_and_audits_the_clients_id(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if kind == "stdio":
            srv = await stack.enter_async_context(served("stdio", tmp_path, monkeypatch))
            proxy = srv.proxy
        else:
            url = await stack.enter_async_context(serving_toolbox("sse", TOOLBOX))
            backend = LocalBackend(transport="sse", target_urls=(url,))
            proxy = await stack.enter_async_context(
                running_proxy(backend, audit=True, authz=RunConfigAuthz(policies=[POLICY]))
            )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        messages, stream = await _sse_session(http, proxy)
        stack.callback(stream.close)
        refused = {
            "surrogate-id": (
                b'{"jsonrpc":"2.0","id":"\\udfff","method":"ping"}',
                -32700,
            ),
            "case-variant": (
                b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                b'"params":{"name":"public_echo","nAme":"delete_everything"}}',
                -32600,
            ),
            "denied-notification": (
                b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_everything"}}',
                -32601,
            ),
            "server-notification": (
                b'{"jsonrpc":"2.0","method":"notifications/resources/updated"}',
                -32601,
            ),
            "fake-response": (
                b'{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call",'
                b'"Params":{"name":"delete_everything"}}',
                -32600,
            ),
            "notification-with-id": (
                b'{"jsonrpc":"2.0","method":"notifications/roots/list_changed","ID":2}',
                -32600,
            ),
            "name-in-other-case": (
                b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"x"}}',
                -32602,
            ),
        }
        for name, (body, code) in refused.items():
            async with http.post(messages, data=body, headers=JSON) as resp:
                assert resp.status == 400, name
                assert (await resp.json())["error"]["code"] == code, name
        init = initialize_request("init-1")
        async with http.post(messages, json=init, headers=JSON) as resp:
            assert resp.status == 202
        ping = {"jsonrpc": "2.0", "id": "client-ping-9", "method": "ping"}
        async with http.post(messages, json=ping, headers=JSON) as resp:
            assert resp.status == 202

        def recorded() -> list[dict[str, Any]]:
            return audit_records(capsys.readouterr().out)

        seen: list[dict[str, Any]] = []

        async def pinged() -> bool:
            seen.extend(recorded())
            return any(r["request_id"] == "client-ping-9" for r in seen)

        await eventually(pinged, message="the ping is audited under the client's id")
    assert all(r["method"] in ("initialize", "ping") for r in seen)
