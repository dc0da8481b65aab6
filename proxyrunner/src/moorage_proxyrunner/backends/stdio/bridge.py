"""The stdio bridge: one MCP server process shared by every client (spec §4.3).

The backend speaks newline-delimited JSON-RPC over a `StdioChannel` and is initialised once, in
the legacy era, unless the bridge probes it (`probe_era`) and it answers `server/discover`: a
dual-era server then runs in the 2026-07-28 era, modern clients' `input_required` results pass
through with the server's `requestState` sealed inside the proxy's, and handshake-era clients
are translated (`protocol/translation.py`, `InputRounds`). The bridge multiplexes clients
("peers") over it:

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

`StdioBridge` coordinates collaborators that each do one of these jobs and declare the
invariants of their state: `BackendConnection` (supervising the process, writing to it),
`PendingRequests` (ids and what is in flight), `LogLevels`, `Subscriptions` (reference
counts), `Delivery` (client streams, list-changed fan-out), `ServerRequests` (attributing
server-to-client requests) and `Parking` (modern `input_required`). The bridge holds the peers
and routes each message between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, Final

import structlog

from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed, ChannelFactory
from moorage_proxyrunner.backends.stdio.connection import BackendConnection, BridgeUnavailable
from moorage_proxyrunner.backends.stdio.delivery import Delivery
from moorage_proxyrunner.backends.stdio.inputrounds import InputRounds
from moorage_proxyrunner.backends.stdio.loglevels import LogLevels
from moorage_proxyrunner.backends.stdio.parking import Parking
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.pending import NO_TOKEN, Pending, PendingRequests
from moorage_proxyrunner.backends.stdio.serverrequests import ServerRequests
from moorage_proxyrunner.backends.stdio.subscriptions import Subscriptions
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.streams import Exchange
from moorage_proxyrunner.protocol import eras, requeststate, translation
from moorage_proxyrunner.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    Json,
    Kind,
    Message,
    Rejection,
    RequestId,
    error_response,
    notification_envelope,
    parse_message,
    result_response,
)

log = structlog.get_logger(__name__)

PROXY_CAPABILITIES: Final[Json] = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
}
"""What the proxy declares to the backend: it can route all of these to some client."""


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
        probe_era: bool = False,
    ) -> None:
        self._client_info = client_info or {"name": "moorage-proxyrunner", "version": "0.1.0"}
        self._init_timeout = init_timeout
        self._probe_era = probe_era
        """Probe each process with `server/discover` (`ProxyRunnerSettings.stdio_era` "auto")."""
        self.on_detach: list[Callable[[Peer], None]] = []
        self.related: Callable[[RequestId], RequestId | None] = lambda _: None
        """An in-memory server's word on which request (backend id) one of its own requests
        belongs to; None when it cannot tell (then the bridge attributes it itself)."""
        """Told of each peer the bridge forgets (an in-memory server ending its sessions)."""
        self._peers: dict[str, Peer] = {}
        """The clients attached, by key. Invariant: only attached peers hold subscriptions,
        log levels, requests in flight or server requests; `detach` gives all of them up."""
        self._connection = BackendConnection(
            factory,
            self,
            metrics=metrics,
            connect_wait=connect_wait,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        self._pending = PendingRequests()
        self._levels = LogLevels(can_set=self._can_set_level, send=self._send_level)
        self._subscriptions = Subscriptions()
        self._delivery = Delivery(metrics)
        self._parking = Parking(
            coalesce=coalesce,
            park_ttl=park_ttl,
            send_later=self._connection.send_later,
            is_pending=self._pending.__contains__,
            cancel=self._cancel_backend,
            answer=self._answer,
        )
        self._server_requests = ServerRequests(
            pending=self._pending,
            peers=self._peers,
            delivery=self._delivery,
            send_later=self._connection.send_later,
            park=self._parking.ask,
            related=lambda key: self.related(key),
        )
        self._rounds = InputRounds(delivery=self._delivery, retry=self._retry)
        self._park_ttl = park_ttl
        self._seal = requeststate.StateSeal()
        """Seals the server's `requestState` with the call's bookkeeping (modern era)."""
        self.initialize_result: Json | None = None
        """The current process's answer to `initialize` (in the modern era, made from its
        `server/discover` result for handshake-era clients); None before the first."""
        self.discover: Json | None = None
        """The current process's `server/discover` result when it runs in the modern era;
        None when it runs in the handshake era."""
        self._listen_id: int | None = None
        """The backend id of the proxy's own `subscriptions/listen` (modern era)."""
        if metrics is not None:
            metrics.backend_inflight.set_function(lambda: self.inflight)

    # ---- lifecycle ----

    @property
    def connected(self) -> bool:
        return self._connection.connected

    @property
    def restarts(self) -> int:
        return self._connection.restarts

    @property
    def last_error(self) -> str | None:
        return self._connection.last_error

    @property
    def inflight(self) -> int:
        """Client requests the backend has not answered (parked ones included)."""
        return self._pending.client_count

    @property
    def modern_backend(self) -> bool:
        """Whether the current process runs in the 2026-07-28 era (it answered the probe)."""
        return self.discover is not None

    @property
    def discover_result(self) -> Json:
        """What a modern client's `server/discover` is answered with."""
        if self.discover is not None:
            return dict(self.discover)
        return eras.discover_result(self.initialize_result or {})

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
        await self._connection.start(supervisor)

    async def wait_connected(self, timeout: float | None = None) -> bool:
        return await self._connection.wait_connected(timeout)

    @property
    def address(self) -> str:
        """This replica's address, named in the `requestState` of calls parked here."""
        return self._parking.address

    @address.setter
    def address(self, value: str) -> None:
        self._parking.address = value

    def use_seal_key(self, key: bytes) -> None:
        """Seal and open `requestState` under `key`, which every replica shares."""
        self._seal = requeststate.StateSeal(key)
        self._parking.seal = requeststate.StateSeal(key)

    def parked_at(self, state: str, *, principal: str | None) -> str | None:
        """The replica holding the parked call `state` resumes (handshake-era backend)."""
        return self._parking.holder(state, principal=principal)

    async def stop(self) -> None:
        await self._connection.stop()
        for peer in list(self._peers.values()):
            if peer.mailbox is not None:
                peer.mailbox.close()

    # ---- the connection's stages (`ConnectionHandler`) ----

    async def initialise(self) -> None:
        """Probe with `server/discover` first: a dual-era server then runs in the modern era
        (it locks to the era of its first message); one that refuses the probe (or does not
        answer it) is initialised in the handshake era, as before. Without `probe_era`, every
        process is initialised in the handshake era."""
        self.discover = None
        self._listen_id = None
        reply: Json = {}
        if self._probe_era:
            probe = translation.discover_params(PROXY_CAPABILITIES, self._client_info)
            with contextlib.suppress(TimeoutError):
                reply = await self._internal("server/discover", probe, timeout=self._init_timeout)
        result = reply.get("result")
        if translation.era_of_probe(reply) == "modern" and isinstance(result, dict):
            self.discover = result
            self.initialize_result = translation.initialize_from_discover(
                result, eras.LATEST_HANDSHAKE
            )
            return
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
        await self._connection.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def on_connected(self) -> None:
        log.info(
            "backend_connected",
            server=(self.server_info or {}).get("name"),
            era="2026-07-28" if self.modern_backend else "handshake",
            protocol_version=(self.initialize_result or {}).get("protocolVersion"),
        )
        if self.modern_backend:
            # No sessions: log levels travel with each request; list changes and resource
            # updates come through one listen stream of the proxy's.
            self._relisten()
            return
        # Give a fresh backend the subscriptions and log level the clients hold.
        self._levels.reset()
        self._levels.apply(self._peers.values())
        for uri in self._subscriptions.uris():
            self._connection.spawn(self._internal("resources/subscribe", {"uri": uri}))

    def on_disconnected(self, reason: str) -> None:
        message = f"The MCP server connection ended ({reason}); the request was not completed"
        for item in self._pending.take_all():
            item.clear_timers()
            if item.future is not None:
                if not item.future.done():
                    item.future.set_exception(ChannelClosed(reason))
                continue
            self._answer(item, error_response(None, INTERNAL_ERROR, message))
        self._parking.forget_all()
        self._rounds.clear()
        self._listen_id = None
        self._server_requests.forget_routes()
        # What the old process asked or announced means nothing to the next one.
        self._server_requests.forget_held()
        self._delivery.clear()

    # ---- requests the proxy makes itself ----

    async def _internal(self, method: str, params: Json, *, timeout: float = 30.0) -> Json:
        """A request the proxy itself makes; returns the whole response."""
        backend_id = self._pending.next_id()
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending.add(Pending(backend_id, method, future=future))
        try:
            await self._connection.send(
                {"jsonrpc": "2.0", "id": backend_id, "method": method, "params": params}
            )
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(backend_id)

    async def _quiet_internal(self, method: str, params: Json) -> None:
        with contextlib.suppress(ChannelClosed, TimeoutError):
            reply = await self._internal(method, params)
            if "error" in reply:
                log.warning("backend_refused", method=method, error=reply["error"])

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
        self._server_requests.forget_peer(peer, reason)
        self._rounds.forget_peer(peer)
        for uri in list(peer.subscriptions):
            self._release(peer, uri)
        if peer.log_level is not None:
            peer.log_level = None
            self._levels.apply(self._peers.values())
        if peer.mailbox is not None:
            peer.mailbox.close()
        for listener in self.on_detach:
            listener(peer)

    def caller_of(self, backend_id: RequestId) -> Peer | None:
        """The attached peer whose request the backend knows as `backend_id`; None for the
        proxy's own requests. A side channel for an in-memory server: it tells which client a
        line belongs to without adding anything to the line."""
        pending = self._pending.get(backend_id)
        peer = pending.peer if pending is not None else None
        return peer if peer is not None and self._peers.get(peer.key) is peer else None

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    def announce(self, method: str) -> None:
        """Send every peer a list-changed notification (`notifications/tools/list_changed`, ...)
        of the proxy's own, as if the server had sent it: the proxy changed what it lists."""
        self._delivery.fan_out(self._peers.values(), {"jsonrpc": "2.0", "method": method}, method)

    def stream_opened(self, peer: Peer) -> None:
        """`peer` can now receive messages outside its requests (a GET or HTTP+SSE stream, a
        listen stream): give it what waited for such a client."""
        self._delivery.give_unseen(peer)
        self._server_requests.give_held(peer)

    # ---- client → backend ----

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
            if requeststate.is_sealed(state) and not self.modern_backend:
                self._parking.resume(peer, message, exchange, state)
                return
            if state is not None and self.modern_backend:
                # Every state a client may hold was sealed here: a bare one would reach the
                # shared server as if the proxy had vouched for it.
                refusal = self._unwrap(peer, method, params)
                if refusal is not None:
                    exchange.finish(error_response(client_id, refusal.code, refusal.message))
                    return
        if client_id in peer.inflight:
            exchange.finish(
                error_response(client_id, INVALID_REQUEST, "This request id is already in use")
            )
            return
        try:
            await self._connection.ensure_connected()
        except BridgeUnavailable as exc:
            exchange.finish(
                error_response(client_id, INTERNAL_ERROR, f"The MCP server is unavailable: {exc}")
            )
            return
        backend_id = self._pending.next_id()
        pending = Pending(
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
        if self.modern_backend:
            pending.params = self._with_envelope(peer, params if isinstance(params, dict) else {})
            message["params"] = pending.params
        self._pending.add(pending)
        peer.inflight[client_id] = backend_id
        if peer.modern and peer.log_level is not None and not self.modern_backend:
            self._levels.lower(peer.log_level)
        try:
            await self._connection.send(message)
        except ChannelClosed as exc:
            if self._pending.pop(backend_id) is pending:
                peer.inflight.pop(client_id, None)
                exchange.finish(
                    error_response(
                        client_id, INTERNAL_ERROR, f"The MCP server is unavailable: {exc}"
                    )
                )

    def _with_envelope(self, peer: Peer, params: Json) -> Json:
        """A request's params for the modern-era backend: the client's own capabilities, and
        its log level (a handshake-era session that set none hears every level, as it would
        from a handshake-era server)."""
        level = peer.log_level if peer.modern else (peer.log_level or eras.LOG_LEVELS[0])
        return translation.with_envelope(
            params,
            capabilities=peer.capabilities,
            client_info=peer.client_info or self._client_info,
            log_level=level,
        )

    def _call_of(self, method: str, params: Json) -> str:
        """What a sealed state binds a retry to: the method and its tool, prompt or URI."""
        key = eras.NAME_BEARING.get(method)
        return json.dumps([method, params.get(key) if key is not None else None])

    def _unwrap(self, peer: Peer, method: str, params: Json) -> requeststate.StateRefusal | None:
        """A modern client's retry: the server's own `requestState` back in place of the
        proxy's sealed one; the refusal when the state is not honoured."""
        opened = requeststate.unwrap(params, self._seal, principal=peer.principal, now=time.time())
        if isinstance(opened, requeststate.StateRefusal):
            return opened
        if opened.call != self._call_of(method, params):
            return requeststate.StateRefusal(
                "The requestState belongs to a different request", INVALID_PARAMS
            )
        return None

    def _retry(self, pending: Pending, responses: Json, server_state: str | None) -> None:
        """Send a handshake-era client's call again with its answers (modern era), under a
        fresh backend id; the client waits on the same exchange."""
        peer = pending.peer
        if peer is None or self._pending.pop(pending.backend_id) is not pending:
            return
        backend_id = self._pending.next_id()
        pending.backend_id = backend_id
        params = translation.retry_params(pending.params or {}, responses, server_state)
        meta = params.get("_meta")
        if pending.progress_token is not NO_TOKEN and isinstance(meta, dict):
            meta = params["_meta"] = dict(meta)
            meta["progressToken"] = backend_id
        pending.params = params
        self._pending.add(pending)
        if pending.client_id is not None:
            peer.inflight[pending.client_id] = backend_id
        self._connection.send_later(
            {"jsonrpc": "2.0", "id": backend_id, "method": pending.method, "params": params}
        )

    def cancel(self, peer: Peer, client_id: RequestId, reason: str) -> None:
        """The client cancelled (or, on the modern wire, closed the stream of) a request."""
        backend_id = peer.inflight.pop(client_id, None)
        if backend_id is not None:
            self._cancel_backend(backend_id, reason)

    def _cancel_backend(self, backend_id: int, reason: str) -> None:
        pending = self._pending.pop(backend_id)
        if pending is None:
            return
        pending.clear_timers()
        if pending.exchange is not None and not pending.exchange.finished:
            # Whoever still waits on this request (a handler, a session being closed) gets an
            # answer instead of waiting for one the server will no longer send.
            pending.exchange.finish(
                error_response(
                    pending.client_id, INTERNAL_ERROR, f"The request was cancelled: {reason}"
                )
            )
        for item in pending.inputs.values():
            self._connection.send_later(
                error_response(item.backend_id, INTERNAL_ERROR, "The request was cancelled")
            )
        self._parking.forget(pending.parked_id)
        self._rounds.forget(pending)
        if self._connection.connected:
            self._connection.send_later(
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
        if self._connection.connected:
            # Rebuilt from the members the proxy read: an id on it would make the server answer
            # it, and that answer would be routed as one of our own requests' answers.
            with contextlib.suppress(ChannelClosed):
                await self._connection.send(notification_envelope(message))

    async def respond(self, peer: Peer, message: Json) -> None:
        """A client's answer to a server-to-client request we routed to it."""
        taken = self._rounds.take_answer(peer, message)
        if isinstance(taken, tuple):
            pending, error = taken
            if self._pending.pop(pending.backend_id) is pending:
                self._answer(pending, error)
            return
        if taken:
            return
        if self._server_requests.take_answer(peer, message):
            with contextlib.suppress(ChannelClosed):
                await self._connection.send(message)

    # ---- log levels ----

    def set_log_level(self, peer: Peer, level: str) -> None:
        peer.log_level = level
        self._levels.apply(self._peers.values())

    def _can_set_level(self) -> bool:
        # The modern era has no `logging/setLevel`: each request carries its level.
        return (
            "logging" in self.capabilities
            and self._connection.connected
            and not self.modern_backend
        )

    def _send_level(self, level: str) -> None:
        self._connection.spawn(self._quiet_internal("logging/setLevel", {"level": level}))

    # ---- resource subscriptions ----

    def hold(self, peer: Peer, uri: str) -> bool:
        """Take a reference on `uri` for `peer`; True when it is the first (ask the backend).

        A modern-era backend is asked through the proxy's listen stream, here: the caller has
        nothing to forward then."""
        first = self._subscriptions.hold(peer, uri)
        if first and self.modern_backend:
            self._relisten()
        return first

    def drop_hold(self, peer: Peer, uri: str) -> None:
        """Undo `hold` after the backend refused the subscription."""
        self._subscriptions.drop(peer, uri)

    def release(self, peer: Peer, uri: str) -> bool:
        """Drop `peer`'s reference; True when it was the last (ask the backend to stop; a
        modern-era backend is asked here, through the proxy's listen stream)."""
        last = self._subscriptions.release(peer, uri)
        if last and self.modern_backend:
            self._relisten()
        return last

    def _release(self, peer: Peer, uri: str) -> None:
        if self.release(peer, uri) and self._connection.connected and not self.modern_backend:
            self._connection.spawn(self._quiet_internal("resources/unsubscribe", {"uri": uri}))

    def unsubscribe(self, peer: Peer, uri: str) -> None:
        """End `peer`'s subscription to `uri` (the backend's, when it was the last holder)."""
        self._release(peer, uri)

    async def subscribe_quietly(self, peer: Peer, uri: str) -> None:
        """A listen stream's subscription: the backend is asked only for the first holder."""
        if self.hold(peer, uri) and self._connection.connected and not self.modern_backend:
            await self._quiet_internal("resources/subscribe", {"uri": uri})

    def _relisten(self) -> None:
        """(Re)open the proxy's `subscriptions/listen` on a modern-era backend, for every list
        change the server announces and the resources the clients hold; the previous one is
        cancelled."""
        if not self.modern_backend or not self._connection.connected:
            return
        previous, self._listen_id = self._listen_id, None
        if previous is not None and self._pending.pop(previous) is not None:
            self._connection.send_later(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": previous, "reason": "subscriptions changed"},
                }
            )
        wanted = translation.listen_notifications(self.capabilities, self._subscriptions.uris())
        if not wanted:
            return
        backend_id = self._pending.next_id()
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_log_listen_end)
        self._pending.add(Pending(backend_id, "subscriptions/listen", future=future))
        self._listen_id = backend_id
        params = translation.with_envelope(
            {"notifications": wanted},
            capabilities=PROXY_CAPABILITIES,
            client_info=self._client_info,
            log_level=None,
        )
        self._connection.send_later(
            {"jsonrpc": "2.0", "id": backend_id, "method": "subscriptions/listen", "params": params}
        )

    # ---- backend → clients ----

    def on_line(self, line: bytes) -> None:
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
        pending = self._pending.pop(message.id)
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
        body = message.body
        result = body.get("result")
        if (
            self.modern_backend
            and isinstance(result, dict)
            and pending.peer is not None
            and not self._translate_result(pending, result)
        ):
            return
        self._answer(pending, body)

    def _translate_result(self, pending: Pending, result: Json) -> bool:
        """A modern-era backend's result for `pending`'s client (in place); False when the
        call goes on (its handshake-era client is being asked for input)."""
        peer = pending.peer
        assert peer is not None
        if result.get("resultType") != "input_required":
            if not peer.modern:
                translation.handshake_result(result)
            return True
        if peer.modern:
            requeststate.wrap(
                result,
                self._seal,
                principal=pending.principal,
                call=self._call_of(pending.method, pending.params or {}),
                expires=time.time() + self._park_ttl,
            )
            return True
        # The call is still the client's: it waits on the same exchange for the retry.
        self._pending.add(pending)
        failure = self._rounds.start(pending, result)
        if failure is None:
            return False
        self._pending.pop(pending.backend_id)
        self._answer(pending, failure)
        return False

    def _answer(self, pending: Pending, body: Json) -> None:
        """Deliver the final response of a client request (or keep it for a parked one)."""
        if pending.peer is not None and pending.client_id is not None:
            pending.peer.inflight.pop(pending.client_id, None)
        if pending.on_done is not None:
            pending.on_done(body)
        if pending.exchange is None:
            if self._parking.is_parked(pending.parked_id):
                body["id"] = None
                pending.final = body
            return
        body["id"] = pending.client_id
        pending.exchange.finish(body)

    def _on_server_request(self, message: Message) -> None:
        backend_id = message.id
        assert backend_id is not None
        if message.method == "ping":
            self._connection.send_later(result_response(backend_id, {}))
            return
        self._server_requests.on_request(message)

    def _on_notification(self, message: Message) -> None:
        method = message.method
        params = message.params
        if self.modern_backend:
            if method == "notifications/subscriptions/acknowledged":
                return
            # The backend's listen stream is the proxy's own; clients' streams get theirs.
            translation.drop_subscription_id(params)
        if method == "notifications/progress":
            pending = self._pending.get(params.get("progressToken"))
            if (
                pending is not None
                and pending.progress_token is not NO_TOKEN
                and pending.exchange is not None
            ):
                params["progressToken"] = pending.progress_token
                self._delivery.to_request(pending, message.body)
            return
        if method == "notifications/message":
            self._on_log(message.body, params.get("level"))
            return
        if method in (
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ):
            self._delivery.fan_out(self._peers.values(), message.body, method)
            return
        if method == "notifications/resources/updated":
            uri = params.get("uri")
            holders = self._subscriptions.holders(uri) if isinstance(uri, str) else set()
            for key in holders:
                peer = self._peers.get(key)
                if peer is not None:
                    self._delivery.to_stream(peer, message.body, subscription=True)
            return
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            if not self._server_requests.cancel(request_id):
                self._parking.drop_input(self._pending, request_id)
            return
        target = self._pending.only_peer_in_flight()
        if target is not None and not target[0].modern:
            self._delivery.to_request(target[1], message.body)

    def _on_log(self, body: Json, level: Any) -> None:
        target = self._pending.only_peer_in_flight()
        if target is not None:
            peer, pending = target
            threshold = pending.log_level if peer.modern else peer.log_level
            if peer.modern and threshold is None:
                return
            if eras.is_logged(level, threshold):
                self._delivery.to_request(pending, body)
            return
        for peer in self._peers.values():
            if (
                not peer.modern
                and peer.mailbox is not None
                and eras.is_logged(level, peer.log_level)
            ):
                self._delivery.push(peer.mailbox, dict(body))


def _log_listen_end(future: asyncio.Future[Json]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    reply = future.result()
    if "error" in reply:
        log.warning("backend_listen_refused", error=reply["error"])
