"""Does the remote MCP server answer `initialize`? Checked at start and then periodically.

The proxy sends `initialize` with the configured headers and outgoing authentication (there is
no caller, so a token exchange has nothing to exchange: a 401 then means "reachable, needs the
caller's token"), reads the answer's protocol version and server name, and closes the session
it opened with DELETE. A legacy SSE remote answers when its stream sends the `endpoint` event.
In a cluster the result is written to the MCPRemoteProxy's `status.remoteCheck` (the operator
turns it into the `RemoteAvailable` condition), only when something other than the time changed.

`interpret_answer` and `remote_check_patch` are pure; `RemoteChecker` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from moorage_proxyrunner.backends.remote.client import OutgoingClient, OutgoingRefused
from moorage_proxyrunner.backends.reverse.upstream import Response, UpstreamError
from moorage_proxyrunner.protocol.eras import LATEST_HANDSHAKE
from moorage_proxyrunner.protocol.sse import EventParser

log = structlog.get_logger(__name__)

CHECK_TIMEOUT: Final = 10.0
MAX_ANSWER_BYTES: Final = 1024 * 1024
INITIALIZE: Final = {
    "jsonrpc": "2.0",
    "id": "moorage-remote-check",
    "method": "initialize",
    "params": {
        "protocolVersion": LATEST_HANDSHAKE,
        "capabilities": {},
        "clientInfo": {"name": "moorage-proxyrunner", "version": "1"},
    },
}


@dataclass(frozen=True, slots=True)
class RemoteCheck:
    """One check's outcome, as `status.remoteCheck` carries it (with `checkedAt`)."""

    answered: bool
    message: str
    protocol_version: str | None = None
    server_name: str | None = None

    def same_as(self, other: RemoteCheck | None) -> bool:
        return other is not None and self == other


def _answer_message(content_type: str, body: bytes) -> Any:
    if content_type == "text/event-stream":
        for event in EventParser().feed(body + b"\n\n"):
            with contextlib.suppress(ValueError):
                message = json.loads(event.data)
                if isinstance(message, dict) and ("result" in message or "error" in message):
                    return message
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def interpret_answer(
    status: int, content_type: str, body: bytes, *, needs_caller: bool
) -> RemoteCheck:
    """What an answer to `initialize` says about the remote."""
    if status == 401 and needs_caller:
        return RemoteCheck(True, "reachable; requires the caller's token (token exchange)")
    if status >= 400:
        return RemoteCheck(False, f"the remote answered initialize with HTTP {status}")
    message = _answer_message(content_type, body)
    if not isinstance(message, Mapping):
        return RemoteCheck(False, "the remote's answer to initialize is not a JSON-RPC answer")
    result = message.get("result")
    if not isinstance(result, Mapping):
        error = message.get("error")
        detail = error.get("message") if isinstance(error, Mapping) else None
        return RemoteCheck(False, f"the remote refused initialize: {detail or 'no result'}")
    version = result.get("protocolVersion")
    info = result.get("serverInfo")
    name = info.get("name") if isinstance(info, Mapping) else None
    return RemoteCheck(
        True,
        "the remote answered initialize",
        protocol_version=version if isinstance(version, str) else None,
        server_name=name if isinstance(name, str) else None,
    )


def remote_check_patch(check: RemoteCheck, checked_at: datetime) -> dict[str, Any]:
    """The JSON merge patch of the MCPRemoteProxy's status: `status.remoteCheck` only."""
    return {
        "status": {
            "remoteCheck": {
                "answered": check.answered,
                "checkedAt": checked_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "protocolVersion": check.protocol_version,
                "serverName": check.server_name,
                "message": check.message,
            }
        }
    }


async def _read_limited(response: Response) -> bytes:
    data = b""
    async for piece in response.chunks():
        data += piece
        if len(data) > MAX_ANSWER_BYTES or (
            response.content_type == "text/event-stream" and b'"result"' in data
        ):
            break
    return data


class RemoteChecker:
    """Checks one remote with the proxy's upstream client; `report` hears changed results."""

    def __init__(
        self,
        client: OutgoingClient,
        url: str,
        *,
        transport: str,
        report: Callable[[RemoteCheck], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.target = client.target(url)
        self.transport = transport
        self.report = report
        self.last: RemoteCheck | None = None

    async def check(self) -> RemoteCheck:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                if self.transport == "sse":
                    return await self._check_sse()
                return await self._check_streamable()
        except TimeoutError:
            return RemoteCheck(False, f"the remote did not answer within {CHECK_TIMEOUT:g}s")
        except (UpstreamError, OutgoingRefused) as exc:
            return RemoteCheck(False, str(exc))

    async def _check_streamable(self) -> RemoteCheck:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        response = await self.client.request(
            "POST", self.target, headers=headers, body=json.dumps(INITIALIZE).encode()
        )
        try:
            body = await _read_limited(response)
        finally:
            response.close()
        check = interpret_answer(
            response.status,
            response.content_type,
            body,
            needs_caller=self.client.auth.exchanger is not None,
        )
        session = response.headers.get("mcp-session-id")
        if session:
            with contextlib.suppress(UpstreamError, OutgoingRefused):
                closing = await self.client.request(
                    "DELETE", self.target, headers={"Mcp-Session-Id": session}
                )
                closing.close()
        return check

    async def _check_sse(self) -> RemoteCheck:
        response = await self.client.request(
            "GET", self.target, headers={"Accept": "text/event-stream"}
        )
        try:
            if response.status == 401 and self.client.auth.exchanger is not None:
                return interpret_answer(401, "", b"", needs_caller=True)
            if response.status >= 400:
                return RemoteCheck(
                    False, f"the remote's SSE stream answered HTTP {response.status}"
                )
            parser = EventParser()
            async for piece in response.chunks():
                if any(event.event == "endpoint" for event in parser.feed(piece)):
                    return RemoteCheck(True, "the remote's SSE stream sent its endpoint")
            return RemoteCheck(False, "the remote's SSE stream ended without an endpoint")
        finally:
            response.close()

    async def run_once(self) -> RemoteCheck:
        """Check, log and report when the outcome differs from the last one."""
        check = await self.check()
        if not check.same_as(self.last):
            log.info(
                "remote_check",
                url=self.url,
                answered=check.answered,
                protocol_version=check.protocol_version,
                server_name=check.server_name,
                message=check.message,
            )
            if self.report is not None:
                try:
                    await self.report(check)
                except Exception as exc:  # a failed write is retried at the next check
                    log.warning("remote_check_report_failed", error=str(exc))
                    return check
        self.last = check
        return check

    async def run_forever(self, interval: float) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(interval)
