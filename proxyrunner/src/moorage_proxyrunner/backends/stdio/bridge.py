"""The stdio bridge: one MCP server process shared by every client (spec §4.3).

The backend speaks newline-delimited JSON-RPC over a `StdioChannel` and is initialised once, in
the legacy era. The bridge multiplexes clients ("peers") over it:

- ids: every forwarded request gets a fresh backend id; the response is mapped back to the
  peer's own id, so clients may reuse ids freely;
- `initialize` is sent once per backend connection; the front end answers clients from the
  cached result; `ping`, `logging/setLevel`, subscriptions are partly answered here;
- progress tokens are replaced by the backend id and mapped back, so progress reaches only the
  request that asked for it; `notifications/cancelled` is mapped both ways;
- list-changed notifications go to every peer; resource updates to the peers subscribed (the
  backend sees one subscription per URI, reference-counted);
- log messages are filtered per peer (each legacy session's `logging/setLevel`, each modern
  request's `logLevel`), the backend's level being the most verbose one asked for;
- server-to-client requests (sampling, elicitation, roots) go to the peer whose request is in
  flight; modern (2026-07-28) clients cannot receive requests, so for them the call is answered
  `input_required` and parked until the client retries with `inputResponses`. A request that
  several clients' requests could have caused is failed with an error that says so; one sent
  outside any client request is routed as `unsolicited` decides (to a capable client's stream,
  held until one connects, or refused);
- a list-changed notification sent while no client stream could take it (at start-up, before
  any client) is kept, one per kind, and goes to the next client stream that opens.

When the channel ends, everything in flight is answered with a JSON-RPC error, the factory is
called again (with back-off) and the new backend is initialised and given the subscriptions and
log level it had. Timing and HTTP are not this module's concern: the front end drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.stdio import unsolicited
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed, ChannelFactory, StdioChannel
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.streams import Exchange, Mailbox
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Json,
    Kind,
    Message,
    Rejection,
    RequestId,
    encode,
    error_response,
    notification_envelope,
    parse_message,
    result_response,
)

log = structlog.get_logger(__name__)

STATE_PREFIX: Final = "moorage."
"""`requestState` values minted by this proxy start with this; others belong to the server."""

PROXY_CAPABILITIES: Final[Json] = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
}
"""What the proxy declares to the backend: it can route all of these to some client."""

HELD_LIMIT: Final = 32
"""Server requests held for a client to connect; beyond it the oldest is failed."""

_LIST_CHANGED_FLAGS: Final = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}


class BridgeUnavailable(Exception):
    """The backend is not connected and did not come back in time."""


@dataclass(eq=False, slots=True)
class Peer:
    """A client the bridge serves: a legacy session, one modern request, or a listen stream.

    Invariants: `inflight` maps the peer's own request ids to backend ids of its requests that
    are still pending; `subscriptions` are the resource URIs this peer holds a reference on.
    """

    key: str
    modern: bool = False
    capabilities: Json = field(default_factory=dict)
    log_level: str | None = None
    mailbox: Mailbox | None = None
    listen: Json | None = None
    """A modern listen stream's honoured filter (`toolsListChanged`, ...); None otherwise."""
    listen_id: RequestId | None = None
    subscriptions: set[str] = field(default_factory=set)
    inflight: dict[RequestId, int] = field(default_factory=dict)
    server_requests: dict[str, RequestId] = field(default_factory=dict)
    """Proxy-assigned ids of server-to-client requests sent to this peer → backend ids."""
    owner: object = None
    """Who holds `subscriptions` (the front end's caller identity), so that they can be
    checked again when the access policy changes; opaque to the bridge."""
    principal: str | None = None
    """The authenticated subject the peer acts for (None: unauthenticated); a call parked for
    `input_required` resumes only for the same one."""


@dataclass(slots=True)
class _Input:
    """A server-to-client request a modern client must answer through `inputResponses`."""

    backend_id: RequestId
    method: str
    params: Json


_NO_TOKEN: Final = object()


@dataclass(eq=False, slots=True)
class _Pending:
    """A request the backend has not answered yet.

    `exchange` is None while the call is parked waiting for a modern client's retry;
    `future` is set instead of a peer for requests the proxy makes itself.
    """

    backend_id: int
    method: str
    peer: Peer | None = None
    client_id: RequestId | None = None
    exchange: Exchange | None = None
    progress_token: Any = _NO_TOKEN
    capabilities: Json = field(default_factory=dict)
    log_level: str | None = None
    future: asyncio.Future[Json] | None = None
    on_done: Callable[[Json], None] | None = None
    target: Any = None
    """What a modern retry must repeat: the tool/prompt name or resource URI."""
    inputs: dict[str, _Input] = field(default_factory=dict)
    flush: asyncio.TimerHandle | None = None
    parked_id: str | None = None
    expiry: asyncio.TimerHandle | None = None
    final: Json | None = None
    principal: str | None = None
    """Whose call it is (`Peer.principal`): only that subject's retry resumes it."""


class StdioBridge:
    """Owns the backend connection and every request on it."""

    def __init__(
        self,
        factory: ChannelFactory,
        *,
        metrics: ProxyMetrics | None = None,
        client_info: Json | None = None,
        init_timeout: float = 30.0,
        connect_wait: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        coalesce: float = 0.02,
        park_ttl: float = 300.0,
    ) -> None:
        self._factory = factory
        self._metrics = metrics
        self._client_info = client_info or {"name": "moorage-proxyrunner", "version": "0.1.0"}
        self._init_timeout = init_timeout
        self._connect_wait = connect_wait
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._coalesce = coalesce
        self._park_ttl = park_ttl
        self._channel: StdioChannel | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = itertools.count(1)
        self._server_request_ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._parked: dict[str, _Pending] = {}
        self._routed: dict[str, tuple[Peer, RequestId]] = {}
        self._peers: dict[str, Peer] = {}
        self._subscribers: dict[str, set[str]] = {}
        self._held: deque[Message] = deque()
        """Server requests sent outside any client request, waiting for a client to answer."""
        self._unseen: dict[str, Json] = {}
        """List-changed notifications no client stream could take yet, by method."""
        self._backend_level: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_key = secrets.token_bytes(32)
        self.initialize_result: Json | None = None
        if metrics is not None:
            metrics.backend_inflight.set_function(lambda: self.inflight)
        self.restarts = 0
        self.last_error: str | None = None

    # ---- lifecycle ----

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        """Client requests the backend has not answered (parked ones included)."""
        return sum(1 for p in self._pending.values() if p.future is None)

    @property
    def server_info(self) -> Json | None:
        info = (self.initialize_result or {}).get("serverInfo")
        return info if isinstance(info, dict) else None

    @property
    def capabilities(self) -> Json:
        caps = (self.initialize_result or {}).get("capabilities")
        return caps if isinstance(caps, dict) else {}

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        """Connect (and reconnect) in the background; under `supervisor` when given, so that
        a connection loop that dies ends the process rather than leaving it unready for ever."""
        if self._supervisor is None:
            loop = self._supervise()
            self._supervisor = (
                supervisor.spawn("stdio-bridge", loop)
                if supervisor is not None
                else asyncio.create_task(loop, name="stdio-bridge")
            )

    async def wait_connected(self, timeout: float | None = None) -> bool:
        if self._connected.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._disconnect("the proxy is shutting down")
        for task in list(self._tasks):
            task.cancel()
        for peer in list(self._peers.values()):
            if peer.mailbox is not None:
                peer.mailbox.close()

    async def _supervise(self) -> None:
        delay = self._backoff_initial
        first = True
        while not self._stopping:
            started = time.monotonic()
            try:
                channel = await self._factory()
            except Exception as exc:
                # The supervisor is the bridge's retry loop: whatever a factory raises (a missing
                # command, an API error while attaching) is logged and retried with back-off.
                self.last_error = f"cannot start the MCP server: {exc}"
                log.error("backend_start_failed", error=str(exc), retry_in_s=delay)
            else:
                if not first:
                    self.restarts += 1
                    if self._metrics is not None:
                        self._metrics.backend_restarts.inc()
                first = False
                reason = await self._run_channel(channel)
                self.last_error = reason
                if time.monotonic() - started > self._backoff_max:
                    delay = self._backoff_initial
                log.warning("backend_disconnected", reason=reason, retry_in_s=delay)
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _run_channel(self, channel: StdioChannel) -> str:
        self._channel = channel
        reader = asyncio.create_task(self._read(channel), name="stdio-bridge-reader")
        try:
            await self._handshake()
            self._connected.set()
            if self._metrics is not None:
                self._metrics.backend_up.set(1)
            log.info(
                "backend_connected",
                server=(self.server_info or {}).get("name"),
                protocol_version=(self.initialize_result or {}).get("protocolVersion"),
            )
            await self._restore()
            reason = await reader
        except (ChannelClosed, TimeoutError, BridgeUnavailable) as exc:
            reason = f"initialisation failed: {exc}" if not reader.done() else await reader
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        await self._disconnect(reason)
        return reason

    async def _read(self, channel: StdioChannel) -> str:
        while True:
            try:
                line = await channel.receive()
            except ChannelClosed as exc:
                return exc.reason
            if line.strip():
                self._on_line(line)

    async def _handshake(self) -> None:
        params = {
            "protocolVersion": eras.LATEST_HANDSHAKE,
            "capabilities": PROXY_CAPABILITIES,
            "clientInfo": self._client_info,
        }
        reply = await self._internal("initialize", params, timeout=self._init_timeout)
        result = reply.get("result")
        if not isinstance(result, dict):
            raise BridgeUnavailable(f"initialize was refused: {reply.get('error')}")
        self.initialize_result = result
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _restore(self) -> None:
        """Give a fresh backend the subscriptions and log level the clients hold."""
        self._backend_level = None
        self._apply_log_level()
        for uri in list(self._subscribers):
            self._spawn(self._internal("resources/subscribe", {"uri": uri}))

    async def _disconnect(self, reason: str) -> None:
        self._connected.clear()
        if self._metrics is not None:
            self._metrics.backend_up.set(0)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        message = f"The MCP server connection ended ({reason}); the request was not completed"
        pending = list(self._pending.values())
        self._pending.clear()
        for item in pending:
            self._clear_timers(item)
            if item.future is not None:
                if not item.future.done():
                    item.future.set_exception(ChannelClosed(reason))
                continue
            self._answer(item, error_response(None, INTERNAL_ERROR, message))
        for parked_id in list(self._parked):
            self._clear_timers(self._parked.pop(parked_id))
        for key, (peer, _) in list(self._routed.items()):
            peer.server_requests.pop(key, None)
        self._routed.clear()
        # What the old process asked or announced means nothing to the next one.
        self._held.clear()
        self._unseen.clear()

    # ---- writing ----

    async def _send(self, message: Json) -> None:
        channel = self._channel
        if channel is None:
            raise ChannelClosed("not connected")
        await channel.send(encode(message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("bridge_background_send_failed", error=str(task.exception()))

    def _send_later(self, message: Json) -> None:
        self._spawn(self._send(message))

    async def _internal(self, method: str, params: Json, *, timeout: float = 30.0) -> Json:
        """A request the proxy itself makes; returns the whole response."""
        backend_id = next(self._ids)
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[backend_id] = _Pending(backend_id, method, future=future)
        try:
            await self._send(
                {"jsonrpc": "2.0", "id": backend_id, "method": method, "params": params}
            )
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(backend_id, None)

    # ---- peers ----

    def attach(self, peer: Peer) -> None:
        self._peers[peer.key] = peer

    def detach(self, peer: Peer, *, reason: str = "the client went away") -> None:
        """Forget a peer: cancel its requests, drop its subscriptions and server requests."""
        if self._peers.pop(peer.key, None) is None:
            return
        for backend_id in list(peer.inflight.values()):
            self._cancel_backend(backend_id, reason)
        peer.inflight.clear()
        for key, server_id in list(peer.server_requests.items()):
            self._routed.pop(key, None)
            self._send_later(
                error_response(server_id, INTERNAL_ERROR, f"The client is gone ({reason})")
            )
        peer.server_requests.clear()
        for uri in list(peer.subscriptions):
            self._release(peer, uri)
        if peer.log_level is not None:
            peer.log_level = None
            self._apply_log_level()
        if peer.mailbox is not None:
            peer.mailbox.close()

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def announce(self, method: str) -> None:
        """Send every peer a list-changed notification (`notifications/tools/list_changed`, ...)
        of the proxy's own, as if the server had sent it: the proxy changed what it lists."""
        self._fan_out({"jsonrpc": "2.0", "method": method}, method)

    # ---- client → backend ----

    async def _ensure_connected(self) -> None:
        if not self._connected.is_set() and not await self.wait_connected(self._connect_wait):
            raise BridgeUnavailable(self.last_error or "the MCP server is not connected")

    async def request(
        self,
        peer: Peer,
        message: Json,
        exchange: Exchange,
        *,
        on_done: Callable[[Json], None] | None = None,
    ) -> None:
        """Forward a client's request; the response (or an error) finishes `exchange`.

        Modern peers' requests must have had their envelope stripped by the caller; a retry
        carrying this proxy's `requestState` resumes the parked call instead.
        """
        client_id: RequestId = message["id"]
        method: str = message.get("method", "")
        params = message.get("params")
        if peer.modern and isinstance(params, dict):
            state = params.get("requestState")
            if isinstance(state, str) and state.startswith(STATE_PREFIX):
                self._resume(peer, message, exchange, state)
                return
        if client_id in peer.inflight:
            exchange.finish(
                error_response(client_id, INVALID_REQUEST, "This request id is already in use")
            )
            return
        try:
            await self._ensure_connected()
        except BridgeUnavailable as exc:
            exchange.finish(
                error_response(client_id, INTERNAL_ERROR, f"The MCP server is unavailable: {exc}")
            )
            return
        backend_id = next(self._ids)
        pending = _Pending(
            backend_id,
            method,
            peer=peer,
            client_id=client_id,
            exchange=exchange,
            capabilities=peer.capabilities,
            log_level=peer.log_level,
            on_done=on_done,
            principal=peer.principal,
        )
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                pending.progress_token = meta["progressToken"]
                meta["progressToken"] = backend_id
            key = eras.NAME_BEARING.get(method)
            if key is not None:
                pending.target = params.get(key)
        message["id"] = backend_id
        self._pending[backend_id] = pending
        peer.inflight[client_id] = backend_id
        if peer.modern and peer.log_level is not None:
            self._lower_backend_level(peer.log_level)
        try:
            await self._send(message)
        except ChannelClosed as exc:
            if self._pending.pop(backend_id, None) is pending:
                peer.inflight.pop(client_id, None)
                exchange.finish(
                    error_response(
                        client_id, INTERNAL_ERROR, f"The MCP server is unavailable: {exc}"
                    )
                )

    def cancel(self, peer: Peer, client_id: RequestId, reason: str) -> None:
        """The client cancelled (or, on the modern wire, closed the stream of) a request."""
        backend_id = peer.inflight.pop(client_id, None)
        if backend_id is not None:
            self._cancel_backend(backend_id, reason)

    def _cancel_backend(self, backend_id: int, reason: str) -> None:
        pending = self._pending.pop(backend_id, None)
        if pending is None:
            return
        self._clear_timers(pending)
        if pending.exchange is not None and not pending.exchange.finished:
            # Whoever still waits on this request (a handler, a session being closed) gets an
            # answer instead of waiting for one the server will no longer send.
            pending.exchange.finish(
                error_response(
                    pending.client_id, INTERNAL_ERROR, f"The request was cancelled: {reason}"
                )
            )
        for item in pending.inputs.values():
            self._send_later(
                error_response(item.backend_id, INTERNAL_ERROR, "The request was cancelled")
            )
        if pending.parked_id is not None:
            self._parked.pop(pending.parked_id, None)
        if self._connected.is_set():
            self._send_later(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": backend_id, "reason": reason},
                }
            )

    async def notify(self, peer: Peer, message: Json) -> None:
        """Forward a client's notification (cancellations are mapped; `initialized` is ours)."""
        method = message.get("method")
        if method == "notifications/initialized":
            return
        if method == "notifications/cancelled":
            params = message.get("params") or {}
            request_id = params.get("requestId")
            if request_id is not None:
                self.cancel(
                    peer, request_id, str(params.get("reason") or "cancelled by the client")
                )
            return
        if self._connected.is_set():
            # Rebuilt from the members the proxy read: an id on it would make the server answer
            # it, and that answer would be routed as one of our own requests' answers.
            with contextlib.suppress(ChannelClosed):
                await self._send(notification_envelope(message))

    async def respond(self, peer: Peer, message: Json) -> None:
        """A client's answer to a server-to-client request we routed to it."""
        key = message.get("id")
        if not isinstance(key, str):
            return
        routed = self._routed.get(key)
        if routed is None or routed[0] is not peer:
            log.debug("client_response_dropped", session=peer.key, id=key)
            return
        del self._routed[key]
        backend_id = peer.server_requests.pop(key, routed[1])
        message["id"] = backend_id
        with contextlib.suppress(ChannelClosed):
            await self._send(message)

    # ---- log levels ----

    def set_log_level(self, peer: Peer, level: str) -> None:
        peer.log_level = level
        self._apply_log_level()

    def _apply_log_level(self) -> None:
        levels = [p.log_level for p in self._peers.values() if p.log_level and not p.modern]
        wanted = min(levels, key=lambda lvl: eras.log_rank(lvl) or 0) if levels else None
        if wanted is not None and wanted != self._backend_level:
            self._set_backend_level(wanted)

    def _lower_backend_level(self, level: str) -> None:
        current = eras.log_rank(self._backend_level)
        wanted = eras.log_rank(level)
        if wanted is not None and (current is None or wanted < current):
            self._set_backend_level(level)

    def _set_backend_level(self, level: str) -> None:
        if "logging" not in self.capabilities or not self._connected.is_set():
            return
        self._backend_level = level
        self._spawn(self._quiet_internal("logging/setLevel", {"level": level}))

    async def _quiet_internal(self, method: str, params: Json) -> None:
        with contextlib.suppress(ChannelClosed, TimeoutError):
            reply = await self._internal(method, params)
            if "error" in reply:
                log.warning("backend_refused", method=method, error=reply["error"])

    # ---- resource subscriptions ----

    def hold(self, peer: Peer, uri: str) -> bool:
        """Take a reference on `uri` for `peer`; True when it is the first (ask the backend)."""
        if uri in peer.subscriptions:
            return False
        peer.subscriptions.add(uri)
        holders = self._subscribers.setdefault(uri, set())
        holders.add(peer.key)
        return len(holders) == 1

    def drop_hold(self, peer: Peer, uri: str) -> None:
        """Undo `hold` after the backend refused the subscription."""
        peer.subscriptions.discard(uri)
        holders = self._subscribers.get(uri)
        if holders is not None:
            holders.discard(peer.key)
            if not holders:
                del self._subscribers[uri]

    def release(self, peer: Peer, uri: str) -> bool:
        """Drop `peer`'s reference; True when it was the last (ask the backend to stop)."""
        if uri not in peer.subscriptions:
            return False
        self.drop_hold(peer, uri)
        return uri not in self._subscribers

    def _release(self, peer: Peer, uri: str) -> None:
        if self.release(peer, uri) and self._connected.is_set():
            self._spawn(self._quiet_internal("resources/unsubscribe", {"uri": uri}))

    def unsubscribe(self, peer: Peer, uri: str) -> None:
        """End `peer`'s subscription to `uri` (the backend's, when it was the last holder)."""
        self._release(peer, uri)

    async def subscribe_quietly(self, peer: Peer, uri: str) -> None:
        """A listen stream's subscription: the backend is asked only for the first holder."""
        if self.hold(peer, uri) and self._connected.is_set():
            await self._quiet_internal("resources/subscribe", {"uri": uri})

    # ---- backend → clients ----

    def _on_line(self, line: bytes) -> None:
        parsed = parse_message(line)
        if isinstance(parsed, Rejection):
            log.warning(
                "backend_sent_garbage",
                error=parsed.message,
                line=line[:200].decode("utf-8", "replace"),
            )
            return
        if parsed.kind is Kind.RESPONSE:
            self._on_response(parsed)
        elif parsed.kind is Kind.REQUEST:
            self._on_server_request(parsed)
        else:
            self._on_notification(parsed)

    def _on_response(self, message: Message) -> None:
        backend_id = message.id
        pending = self._pending.pop(backend_id, None) if isinstance(backend_id, int) else None
        if pending is None:
            return
        if pending.future is not None:
            if not pending.future.done():
                pending.future.set_result(message.body)
            return
        if pending.flush is not None:
            pending.flush.cancel()
            pending.flush = None
        # The server answered without waiting for what it asked: nothing left to route.
        pending.inputs.clear()
        self._answer(pending, message.body)

    def _answer(self, pending: _Pending, body: Json) -> None:
        """Deliver the final response of a client request (or keep it for a parked one)."""
        if pending.peer is not None and pending.client_id is not None:
            pending.peer.inflight.pop(pending.client_id, None)
        if pending.on_done is not None:
            pending.on_done(body)
        if pending.exchange is None:
            if pending.parked_id is not None and pending.parked_id in self._parked:
                body["id"] = None
                pending.final = body
            return
        body["id"] = pending.client_id
        pending.exchange.finish(body)

    def _on_notification(self, message: Message) -> None:
        method = message.method
        params = message.params
        if method == "notifications/progress":
            token = params.get("progressToken")
            pending = self._pending.get(token) if isinstance(token, int) else None
            if (
                pending is not None
                and pending.progress_token is not _NO_TOKEN
                and pending.exchange is not None
            ):
                params["progressToken"] = pending.progress_token
                self._to_request(pending, message.body)
            return
        if method == "notifications/message":
            self._on_log(message.body, params.get("level"))
            return
        if method in (
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ):
            self._fan_out(message.body, method)
            return
        if method == "notifications/resources/updated":
            uri = params.get("uri")
            holders = self._subscribers.get(uri, set()) if isinstance(uri, str) else set()
            for key in holders:
                peer = self._peers.get(key)
                if peer is not None:
                    self._to_stream(peer, message.body, subscription=True)
            return
        if method == "notifications/cancelled":
            self._on_server_cancel(params.get("requestId"))
            return
        target = self._only_peer_in_flight()
        if target is not None and not target[0].modern:
            self._to_request(target[1], message.body)

    def _on_log(self, body: Json, level: Any) -> None:
        target = self._only_peer_in_flight()
        if target is not None:
            peer, pending = target
            threshold = pending.log_level if peer.modern else peer.log_level
            if peer.modern and threshold is None:
                return
            if eras.is_logged(level, threshold):
                self._to_request(pending, body)
            return
        for peer in self._peers.values():
            if (
                not peer.modern
                and peer.mailbox is not None
                and eras.is_logged(level, peer.log_level)
            ):
                self._push(peer.mailbox, dict(body))

    def _fan_out(self, body: Json, method: str) -> None:
        reached = False
        for peer in self._peers.values():
            reached = self._announce_to(peer, body, method) or reached
        if not reached:
            self._unseen[method] = body

    def _announce_to(self, peer: Peer, body: Json, method: str) -> bool:
        """Put a list-changed notification on `peer`'s stream if it takes that kind."""
        if peer.mailbox is None or peer.mailbox.closed:
            return False
        if peer.listen is not None:
            if not peer.listen.get(_LIST_CHANGED_FLAGS[method]):
                return False
            self._to_stream(peer, body, subscription=True)
            return True
        if peer.modern:
            return False
        self._to_stream(peer, body)
        return True

    def stream_opened(self, peer: Peer) -> None:
        """`peer` can now receive messages outside its requests (a GET or HTTP+SSE stream, a
        listen stream): give it what waited for such a client."""
        for method, body in list(self._unseen.items()):
            if self._announce_to(peer, body, method):
                del self._unseen[method]
        candidate = self._candidate(peer)
        waiting: deque[Message] = deque()
        for message in self._held:
            if unsolicited.can_answer(candidate, message.method):
                self._send_to_stream(peer, message)
            else:
                waiting.append(message)
        self._held = waiting

    def _to_stream(self, peer: Peer, body: Json, *, subscription: bool = False) -> None:
        if peer.mailbox is None:
            return
        message = dict(body)
        if peer.listen is not None and subscription:
            params = dict(message.get("params") or {})
            meta = dict(params.get("_meta") or {})
            meta[eras.SUBSCRIPTION_ID_KEY] = peer.listen_id
            params["_meta"] = meta
            message["params"] = params
        self._push(peer.mailbox, message)

    def _push(self, mailbox: Mailbox, message: Json) -> None:
        if not mailbox.push(message) and self._metrics is not None:
            self._metrics.dropped.inc()

    def _to_request(self, pending: _Pending, body: Json) -> bool:
        """Put a message on a request's own stream, else on its peer's mailbox."""
        exchange = pending.exchange
        if exchange is not None and exchange.streams:
            if exchange.push(body):
                return True
            if self._metrics is not None:
                self._metrics.dropped.inc()
            return False
        peer = pending.peer
        if peer is not None and peer.mailbox is not None and not peer.modern:
            self._push(peer.mailbox, body)
            return True
        return False

    def _only_peer_in_flight(self) -> tuple[Peer, _Pending] | None:
        """The one peer with requests in flight, and its latest one; None if zero or several."""
        found: tuple[Peer, _Pending] | None = None
        for pending in self._pending.values():
            peer = pending.peer
            if peer is None or pending.exchange is None:
                continue
            if found is not None and found[0] is not peer:
                return None
            found = (peer, pending)
        return found

    # ---- server → client requests ----

    def _on_server_request(self, message: Message) -> None:
        backend_id = message.id
        assert backend_id is not None
        method = message.method
        if method == "ping":
            self._send_later(result_response(backend_id, {}))
            return
        target = self._attribute()
        if target is None:
            busy = {
                p.peer.key
                for p in self._pending.values()
                if p.peer is not None and p.method in eras.INTERACTIVE and p.exchange is not None
            }
            if not busy:
                self._on_unsolicited(message)
                return
            why = f"{len(busy)} clients have requests in flight, so the proxy cannot tell which one to ask"
            self._send_later(
                error_response(backend_id, INTERNAL_ERROR, f"Cannot route {method}: {why}")
            )
            return
        peer, pending = target
        capability = eras.CAPABILITY_FOR_SERVER_REQUEST.get(method)
        if peer.modern:
            self._ask_modern(pending, backend_id, method, message.params, capability)
            return
        if capability is not None and not eras.has_capability(peer.capabilities, capability):
            self._send_later(
                error_response(
                    backend_id, METHOD_NOT_FOUND, f"The client does not support {method}"
                )
            )
            return
        key = f"moorage-{next(self._server_request_ids)}"
        body = dict(message.body)
        body["id"] = key
        if not self._to_request(pending, body):
            self._send_later(
                error_response(
                    backend_id, INTERNAL_ERROR, f"The client has no open stream to receive {method}"
                )
            )
            return
        peer.server_requests[key] = backend_id
        self._routed[key] = (peer, backend_id)

    @staticmethod
    def _candidate(peer: Peer) -> unsolicited.Candidate:
        mailbox = peer.mailbox
        return unsolicited.Candidate(
            key=peer.key,
            capabilities=peer.capabilities,
            modern=peer.modern,
            stream_open=mailbox is not None and not mailbox.closed and peer.listen is None,
        )

    def _on_unsolicited(self, message: Message) -> None:
        """A server request no client request is in flight for (see `unsolicited`)."""
        backend_id = message.id
        assert backend_id is not None
        route = unsolicited.route_unsolicited(
            message.method, (self._candidate(p) for p in self._peers.values())
        )
        if isinstance(route, unsolicited.Deliver):
            self._send_to_stream(self._peers[route.key], message)
        elif isinstance(route, unsolicited.Hold):
            if len(self._held) >= HELD_LIMIT:
                oldest = self._held.popleft()
                self._send_later(
                    error_response(
                        oldest.id, INTERNAL_ERROR, "No client connected to answer in time"
                    )
                )
            self._held.append(message)
            log.info("server_request_held", method=message.method, held=len(self._held))
        else:
            log.info("server_request_refused", method=message.method, reason=route.message)
            self._send_later(error_response(backend_id, route.code, route.message))

    def _send_to_stream(self, peer: Peer, message: Message) -> None:
        """Send a server request to `peer`'s own stream under a proxy-assigned id."""
        assert peer.mailbox is not None
        assert message.id is not None
        key = f"moorage-{next(self._server_request_ids)}"
        body = dict(message.body)
        body["id"] = key
        peer.server_requests[key] = message.id
        self._routed[key] = (peer, message.id)
        self._push(peer.mailbox, body)

    def _attribute(self) -> tuple[Peer, _Pending] | None:
        """The request a server-to-client request belongs to, when that can be decided.

        Only requests during which a server may ask something (tools/call, prompts/get, ...)
        count. One such request, or several from one legacy session, decide it.
        """
        found: tuple[Peer, _Pending] | None = None
        for pending in self._pending.values():
            peer = pending.peer
            if peer is None or pending.method not in eras.INTERACTIVE or pending.exchange is None:
                # A parked call waits on answers the client has not sent yet; it asks nothing new.
                continue
            if found is not None and (found[0] is not peer or peer.modern):
                return None
            found = (peer, pending)
        return found

    def _on_server_cancel(self, backend_id: Any) -> None:
        for key, (peer, routed_id) in list(self._routed.items()):
            if routed_id == backend_id:
                del self._routed[key]
                peer.server_requests.pop(key, None)
                if peer.mailbox is not None:
                    cancel = {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": key},
                    }
                    self._push(peer.mailbox, cancel)
                return
        for pending in self._pending.values():
            for input_key, item in list(pending.inputs.items()):
                if item.backend_id == backend_id:
                    del pending.inputs[input_key]
                    return

    # ---- modern clients: input_required ----

    def _ask_modern(
        self,
        pending: _Pending,
        backend_id: RequestId,
        method: str,
        params: Json,
        capability: str | None,
    ) -> None:
        if capability is None:
            self._send_later(
                error_response(
                    backend_id, METHOD_NOT_FOUND, f"{method} cannot be sent to a 2026-07-28 client"
                )
            )
            return
        if not eras.has_capability(pending.capabilities, capability):
            # The shared backend only knows the proxy's capabilities; tell it this client lacks
            # the one it needs, in the modern wire's own terms, and let it decide (a server
            # that cannot do without it fails the call with this same error).
            code, text, data = eras.missing_capability_error(capability)
            self._send_later(error_response(backend_id, code, text, data))
            return
        key = capability
        number = 2
        while key in pending.inputs:
            key = f"{capability}-{number}"
            number += 1
        pending.inputs[key] = _Input(backend_id, method, params)
        if pending.exchange is not None:
            if pending.flush is not None:
                pending.flush.cancel()
            loop = asyncio.get_running_loop()
            pending.flush = loop.call_later(self._coalesce, self._flush_inputs, pending)

    def _flush_inputs(self, pending: _Pending) -> None:
        """Answer the modern client `input_required` with what the server is waiting for."""
        pending.flush = None
        exchange = pending.exchange
        if exchange is None or not pending.inputs or pending.backend_id not in self._pending:
            return
        # A fresh id each round: a client must echo the latest state, not an earlier one.
        parked_id = secrets.token_urlsafe(12)
        if pending.parked_id is not None:
            self._parked.pop(pending.parked_id, None)
        pending.parked_id = parked_id
        self._parked[parked_id] = pending
        requests = {
            key: {"method": item.method, "params": item.params}
            for key, item in pending.inputs.items()
        }
        result: Json = {
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": self._seal(parked_id),
        }
        pending.exchange = None
        if pending.peer is not None and pending.client_id is not None:
            pending.peer.inflight.pop(pending.client_id, None)
        exchange.finish(
            result_response(pending.client_id if pending.client_id is not None else 0, result)
        )
        loop = asyncio.get_running_loop()
        if pending.expiry is not None:
            pending.expiry.cancel()
        pending.expiry = loop.call_later(self._park_ttl, self._expire, parked_id)

    def _expire(self, parked_id: str) -> None:
        pending = self._parked.pop(parked_id, None)
        if pending is None:
            return
        log.info("input_required_expired", method=pending.method)
        self._cancel_backend(pending.backend_id, "the client did not answer in time")

    def _seal(self, parked_id: str) -> str:
        mac = hmac.new(self._state_key, parked_id.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{STATE_PREFIX}{parked_id}.{mac}"

    def _unseal(self, token: str) -> str | None:
        body = token.removeprefix(STATE_PREFIX)
        parked_id, _, mac = body.rpartition(".")
        expected = hmac.new(self._state_key, parked_id.encode(), hashlib.sha256).hexdigest()[:32]
        return parked_id if parked_id and hmac.compare_digest(mac, expected) else None

    def _resume(self, peer: Peer, message: Json, exchange: Exchange, token: str) -> None:
        client_id: RequestId = message["id"]
        params: Json = message.get("params") or {}
        parked_id = self._unseal(token)
        pending = self._parked.get(parked_id) if parked_id is not None else None
        if pending is None:
            why = "was altered" if parked_id is None else "is unknown or has expired"
            exchange.finish(error_response(client_id, INVALID_PARAMS, f"The requestState {why}"))
            return
        key = eras.NAME_BEARING.get(pending.method)
        if (
            message.get("method") != pending.method
            or (key is not None and params.get(key) != pending.target)
            or peer.principal != pending.principal
        ):
            exchange.finish(
                error_response(
                    client_id, INVALID_PARAMS, "The requestState belongs to a different request"
                )
            )
            return
        self._parked.pop(pending.parked_id or "", None)
        if pending.expiry is not None:
            pending.expiry.cancel()
            pending.expiry = None
        pending.peer = peer
        pending.client_id = client_id
        pending.exchange = exchange
        pending.capabilities = peer.capabilities
        pending.log_level = peer.log_level
        meta = params.get("_meta")
        pending.progress_token = (
            meta["progressToken"]
            if isinstance(meta, dict) and "progressToken" in meta
            else _NO_TOKEN
        )
        if pending.final is not None:
            self._answer(pending, pending.final)
            return
        peer.inflight[client_id] = pending.backend_id
        responses = params.get("inputResponses")
        answered = responses if isinstance(responses, dict) else {}
        for input_key, item in list(pending.inputs.items()):
            if input_key in answered and isinstance(answered[input_key], dict):
                del pending.inputs[input_key]
                self._send_later(result_response(item.backend_id, answered[input_key]))
        if pending.inputs:
            # Some answers are missing: ask again for exactly those.
            self._flush_inputs(pending)

    def _clear_timers(self, pending: _Pending) -> None:
        if pending.flush is not None:
            pending.flush.cancel()
            pending.flush = None
        if pending.expiry is not None:
            pending.expiry.cancel()
            pending.expiry = None
