"""The MCP endpoints clients use when the backend is a shared stdio process.

The proxy is the MCP server here: it terminates streamable HTTP (`/mcp`, both eras) and legacy
HTTP+SSE (`/sse` + `/messages`), keeps the legacy sessions, and hands each request to the
middleware pipeline and then to the `StdioBridge`.

Legacy era: `initialize` is answered from the backend's cached result and opens a session
(`Mcp-Session-Id`); later requests must name a live session (missing → 400, unknown → 404).
`ping`, `logging/setLevel` and resource (un)subscriptions are answered here as far as the
shared backend allows. Modern era (2026-07-28, chosen by the `MCP-Protocol-Version` header):
every request is checked against its envelope and headers, `server/discover` is answered from
the cached `initialize`, `subscriptions/listen` is served from the backend's notifications,
removed methods are 404 / -32601, and results get the fields the modern wire requires.

Across replicas (`sessionStorage.type: redis`) a legacy session is served by the replica that
holds it (its owner); one landing elsewhere is forwarded there, or adopted when the owner is gone
(`sessionstate.route`), and a modern client's retry of a call parked on another replica is
forwarded to that replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import structlog
from aiohttp import web

from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.fairness import FairGate, GateFull
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.sessions import Session, SessionRegistry
from moorage_proxyrunner.backends.stdio.sessionstate import (
    EPOCH,
    LOG_LEVEL,
    Route,
    restore,
    route,
    subscriptions_state,
)
from moorage_proxyrunner.backends.stdio.sharing import SessionSharing
from moorage_proxyrunner.config.limits import (
    capabilities_refusal,
    is_over_subscriptions,
    overloaded_error,
    session_refusal,
    subscriptions_refusal,
    timeout_error,
)
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import Announcer, Rechecker
from moorage_proxyrunner.front.identity import identity_of
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.replaying import MAX_BYTES as REPLAY_MAX_BYTES
from moorage_proxyrunner.front.replaying import Journal, ReplayLog, parse_event_id
from moorage_proxyrunner.front.responding import (
    BodyTooLarge,
    Refusal,
    Refusing,
    ResponseStream,
    accepts,
    endpoint_url,
    json_body,
    read_body,
    read_message,
    replay_stream,
    rpc_error,
    stream_mailbox,
)
from moorage_proxyrunner.front.sessioncaps import SessionLimit, is_session_owner
from moorage_proxyrunner.front.streams import Exchange, Mailbox, json_size
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Json,
    Kind,
    Message,
    RequestId,
    encode,
    error_response,
    response_envelope,
    result_response,
)
from moorage_proxyrunner.protocol.pipeline import Era, Identity, McpCall, Pipeline, Reply
from moorage_proxyrunner.protocol.requeststate import is_sealed
from moorage_proxyrunner.protocol.revocation import (
    listen_ended_error,
    revoked_uris,
    subscription_ended_notice,
)
from moorage_proxyrunner.protocol.sse import SSE_HEADERS, format_event
from moorage_proxyrunner.sessionstore.forwarding import Forwarder, is_forwarded
from moorage_proxyrunner.sessionstore.opening import memory_store
from moorage_proxyrunner.sessionstore.records import SessionRecord
from moorage_proxyrunner.sessionstore.store import (
    STORE_UNAVAILABLE,
    SessionStore,
    SessionStoreUnavailable,
)

log = structlog.get_logger(__name__)

_SWEEP_INTERVAL = 60.0
CLAIM_ATTEMPTS: Final = 3
"""Claims of a session whose owner changed under us (released, or claimed by a replica that
is gone too) before the client is told to send the request again."""
"""The JSON-RPC code of an answer the session store's outage prevents (HTTP 503)."""


class BridgeEndpoints(Refusing):
    """aiohttp handlers over one `StdioBridge`."""

    def __init__(
        self,
        bridge: StdioBridge,
        *,
        settings: ProxyRunnerSettings,
        pipeline: Pipeline,
        metrics: ProxyMetrics,
        store: SessionStore | None = None,
        address: str | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.bridge = bridge
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        # Sessions are kept through `store` (shared by the replicas with Redis); `address` is
        # this replica's, and `forwarder` passes a request to the replica owning its session.
        self.sharing = SessionSharing(
            store or memory_store(settings.limits),
            address=address or settings.advertise_address,
            forwarder=forwarder or Forwarder(),
            idle_timeout=settings.session_idle_timeout,
            on_error=lambda operation: metrics.session_store_errors.labels(operation).inc(),
        )
        self.sessions = SessionRegistry(
            bridge,
            sharing=self.sharing,
            metrics=metrics,
            capacity=settings.queue_capacity,
            idle_timeout=settings.session_idle_timeout,
            max_bytes=settings.limits.queue_max_bytes,
            max_sessions=settings.limits.max_sessions,
            max_per_subject=settings.limits.max_sessions_per_subject,
        )
        self._queue_bytes = settings.limits.queue_max_bytes
        self.gate = FairGate(
            per_key=settings.limits.max_inflight_per_session,
            total=settings.limits.max_backend_inflight,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._owed: set[asyncio.Task[Any]] = set()
        """Legacy HTTP+SSE requests answered 202 whose answer is not yet on the session's
        stream (`unanswered`)."""
        self._sweeper: asyncio.Task[None] | None = None
        self._listeners: set[Peer] = set()
        self._adoptions: dict[str, tuple[asyncio.Lock, int]] = {}
        self._seal_shared = False
        """Sessions being adopted here: the lock and how many requests hold or wait for it."""
        self._revoked: set[str] = set()
        """Listen streams ended by a policy change (their error is their last event)."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/mcp", self.post)
        app.router.add_get("/mcp", self.get)
        app.router.add_delete("/mcp", self.delete)
        app.router.add_get("/sse", self.sse)
        app.router.add_post("/messages", self.messages)
        app.router.add_post("/messages/", self.messages)

    # ---- lifecycle ----

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        self.bridge.address = self.sharing.address
        await self._share_seal_key()
        await self.bridge.start(supervisor)
        sweep = self._sweep()
        self._sweeper = (
            supervisor.spawn("session-sweeper", sweep)
            if supervisor is not None
            else asyncio.create_task(sweep, name="session-sweeper")
        )

    async def _share_seal_key(self) -> None:
        """Seal `requestState` under the key every replica shares, so that any replica opens
        what another sealed; while the store cannot give it, the process's own key is used (and
        the sweeper asks again)."""
        if not self.sharing.shared or self._seal_shared:
            return
        try:
            self.bridge.use_seal_key(await self.sharing.store.shared_key("request-state"))
        except SessionStoreUnavailable as exc:
            self.sharing.failed("shared_key", exc)
            return
        self._seal_shared = True

    async def close_streams(self) -> None:
        """Drain: end the long-lived streams so their handlers return; sessions stay open so
        their requests in flight can still finish (they close in `stop`)."""
        self.sessions.close_streams()
        for peer in list(self._listeners):
            if peer.mailbox is not None:
                peer.mailbox.close()

    def unanswered(self) -> int:
        return len(self._owed)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.close_streams()
        self.sessions.close_all(reason="the proxy is shutting down")
        await self.sharing.stop()
        await self.bridge.stop()

    def is_ready(self) -> bool:
        return self.bridge.connected

    def announcer(self) -> Announcer:
        return self.bridge.announce

    def rechecker(self) -> Rechecker:
        return self.recheck_subscriptions

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            closed = self.sessions.sweep()
            if closed:
                log.info("idle_sessions_closed", count=closed)
            if self.sharing.shared:
                await self._share_seal_key()
                await self.sharing.touch(self.sessions.ids())

    # ---- streamable HTTP ----

    async def post(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        version = request.headers.get("MCP-Protocol-Version")
        modern = version is not None and version not in eras.HANDSHAKE_VERSIONS
        intake = await read_message(request, limit=self.settings.max_body_bytes, modern=modern)
        if isinstance(intake, Refusal):
            return self.refuse(intake, started)
        parsed, wants_sse = intake.message, intake.wants_sse
        if modern:
            return await self._modern(request, parsed, wants_sse, started)
        return await self._legacy(request, parsed, wants_sse, started, eager=intake.prefers_sse)

    async def get(self, request: web.Request) -> web.StreamResponse:
        if self._is_modern_request(request):
            return web.Response(status=405, headers={"Allow": "POST"})
        _, wants_sse = accepts(request)
        if not wants_sse:
            return rpc_error(406, INVALID_REQUEST, "Accept must include text/event-stream")
        found = await self._session_for(request, None)
        if not isinstance(found, Session):
            return found
        session = found
        headers = {"Mcp-Session-Id": session.id}
        replay = session.replay
        first = b""
        last_event = request.headers.get("Last-Event-ID")
        if last_event is not None and replay is not None:
            resumed = await self._resume(request, session, replay, last_event)
            if isinstance(resumed, web.StreamResponse):
                return resumed
            first = resumed
        if session.stream_open:
            return rpc_error(409, INVALID_REQUEST, "This session already has an open GET stream")
        mailbox = session.new_mailbox()
        session.stream_open = True
        self.bridge.stream_opened(session.peer)
        journal = None
        if replay is not None:
            journal = Journal(replay, replay.open_stream(standalone=True))
        try:
            return await stream_mailbox(
                request,
                mailbox,
                keepalive=self.settings.keepalive_interval,
                headers=headers,
                first=first,
                journal=journal,
            )
        finally:
            session.stream_open = False
            if journal is not None:
                journal.close()
            if session.peer.mailbox is mailbox:
                session.peer.mailbox = None

    async def _resume(
        self, request: web.Request, session: Session, replay: ReplayLog, last_event: str
    ) -> bytes | web.StreamResponse:
        """`GET` with `Last-Event-ID`: a request's stream is answered whole (what it missed,
        then the rest until it is answered); for the GET stream, the missed events to send
        first on the new one. Events minted by a replica that is gone come from the store."""
        headers = {"Mcp-Session-Id": session.id}
        resumed = replay.after(last_event)
        position = parse_event_id(last_event)
        if resumed is None and position is not None and not replay.is_open(position[0]):
            stored = await self._stored_stream(request, session, last_event)
            if stored is not None:
                return stored
        if resumed is None or position is None:
            return rpc_error(
                400,
                INVALID_REQUEST,
                f"Last-Event-ID names no event of this session's last {replay.window}",
            )
        stream, missed = resumed
        if stream != replay.standalone:
            return await replay_stream(
                request,
                replay,
                stream=stream,
                after=position[1],
                keepalive=self.settings.keepalive_interval,
                headers=headers,
            )
        return b"".join(format_event(e.data, event_id=e.shown_id) for e in missed)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        if self._is_modern_request(request):
            return web.Response(status=405, headers={"Allow": "POST"})
        found = await self._session_for(request, None)
        if not isinstance(found, Session):
            return found
        self.sessions.close(found, reason="the client ended the session")
        return web.Response(status=200)

    @staticmethod
    def _is_modern_request(request: web.Request) -> bool:
        version = request.headers.get("MCP-Protocol-Version")
        return version is not None and version not in eras.HANDSHAKE_VERSIONS

    async def _session_for(
        self, request: web.Request, body: bytes | None
    ) -> Session | web.StreamResponse:
        """The streamable-HTTP session the request names, held here (adopted if need be), or
        the answer to send instead: 400 without an id, 404 for an unknown session, or the
        answer of the replica the request was forwarded to."""
        session_id = request.headers.get("Mcp-Session-Id")
        if not session_id:
            return rpc_error(400, INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header")
        found = await self._find(request, session_id, "streamable-http", body)
        if found is None:
            return rpc_error(404, INVALID_REQUEST, "Session not found")
        return found

    async def _find(
        self, request: web.Request, session_id: str, transport: str, body: bytes | None
    ) -> Session | web.StreamResponse | None:
        """The session held here, or what `sessionstate.route` decides for one held elsewhere
        (None: answered like an unknown session). `body`: what to forward, if anything."""
        identity = identity_of(request)
        if self.sessions.get(session_id) is not None or not self.sharing.shared:
            return self._owned_session(session_id, transport, identity)
        forwarded = is_forwarded(request)
        own = self.sharing.address
        store = self.sharing.store
        try:
            record = await store.load(session_id)
            if (
                record is None
                or record.kind != transport
                or not is_session_owner(
                    record.subject, identity, session_id=session_id, transport=transport
                )
            ):
                return None
            alive = record.owner not in ("", own) and await store.is_alive(record.owner)
        except SessionStoreUnavailable as exc:
            self.sharing.failed("load", exc)
            return _store_unavailable(exc)
        decision = route(
            kind=transport, owner=record.owner, own=own, owner_alive=alive, forwarded=forwarded
        )
        if decision is Route.FORWARD:
            answer = await self._to_owner(request, record.owner, body)
            if answer is not None:
                return answer
            if transport != "streamable-http":
                return None
            decision = Route.ADOPT
        if decision is Route.GONE:
            return None
        if decision is Route.MOVED:
            return _moved()
        return await self._adopt(request, record, body)

    async def _to_owner(
        self, request: web.Request, owner: str, body: bytes | None
    ) -> web.StreamResponse | None:
        """The owner's answer to the forwarded request; None when it cannot be reached."""
        if self.sharing.forwarder is None:
            return None
        return await self.sharing.forwarder.forward_to_owner(
            request, owner=owner, body=body, address=self.sharing.address
        )

    @contextlib.asynccontextmanager
    async def _adopting(self, session_id: str) -> AsyncIterator[None]:
        """One adoption of a session at a time here: its other requests wait, then find it
        held."""
        lock, users = self._adoptions.get(session_id, (asyncio.Lock(), 0))
        self._adoptions[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._adoptions[session_id]
            if users == 1:
                del self._adoptions[session_id]
            else:
                self._adoptions[session_id] = (lock, users - 1)

    async def _adopt(
        self, request: web.Request, record: SessionRecord, body: bytes | None
    ) -> Session | web.StreamResponse:
        async with self._adopting(record.id):
            held = self.sessions.get(record.id)
            if held is not None:
                return held
            return await self._claim_and_rebuild(request, record, body)

    async def _claim_and_rebuild(
        self, request: web.Request, record: SessionRecord, body: bytes | None
    ) -> Session | web.StreamResponse:
        """Hold a session whose owner is gone: claim it, rebuild the client on this replica's
        backend (capabilities, log level, subscriptions), serve it. A replica that claimed it
        first is its owner now: the request goes there."""
        store = self.sharing.store
        own = self.sharing.address
        try:
            # The owner seen a moment ago may have changed since: it released the session at
            # the end of its handover, or another replica claimed it (and may be gone too).
            # Each failed claim is retried against what the record says now.
            for _ in range(CLAIM_ATTEMPTS):
                if await store.claim(record.id, expected_owner=record.owner, owner=own):
                    break
                current = await store.load(record.id)
                if current is None:
                    return _moved()
                record = current
                if record.owner not in ("", own) and await store.is_alive(record.owner):
                    answer = await self._to_owner(request, record.owner, body)
                    if answer is not None:
                        return answer
            else:
                return _moved()
            restored = restore(record.state)
            # A fresh epoch before any event id is minted here: ids stay unique across replicas.
            await store.set_state(record.id, {EPOCH: restored.epoch + 1})
        except SessionStoreUnavailable as exc:
            self.sharing.failed("claim", exc)
            return _store_unavailable(exc)
        try:
            session = self.sessions.adopt(record, capabilities=restored.capabilities)
        except SessionLimit as exc:
            status, refusal = session_refusal(None, per_subject=exc.per_subject, limit=exc.limit)
            return json_body(refusal, status=status)
        window = self.settings.limits.resume_window
        if window > 0:
            session.replay = self.sharing.log_for(
                session.id,
                window=window,
                max_bytes=min(self._queue_bytes, REPLAY_MAX_BYTES),
                epoch=restored.epoch + 1,
            )
        peer = session.peer
        if restored.log_level is not None:
            self.bridge.set_log_level(peer, restored.log_level)
        if restored.subscriptions:
            peer.owner = identity_of(request)
        for uri in restored.subscriptions:
            await self.bridge.subscribe_quietly(peer, uri)
        self.metrics.sessions_adopted.labels("streamable-http").inc()
        log.info(
            "session_adopted",
            session=session.id[:8],
            previous_owner=record.owner,
            subscriptions=len(restored.subscriptions),
        )
        return session

    async def _stored_stream(
        self, request: web.Request, session: Session, last_event: str
    ) -> bytes | web.StreamResponse | None:
        """Resume, from the store, a stream minted by a replica that is gone: a request's
        stream is answered here and now (its events, then its response or an error saying the
        replica stopped); the GET stream's missed events are returned to go first on the new
        GET stream. None when the store cannot replay them exactly."""
        if not self.sharing.shared:
            return None
        try:
            record = await self.sharing.store.load(session.id)
            stored = (
                await self.sharing.stored_stream(record, last_event) if record is not None else None
            )
        except SessionStoreUnavailable as exc:
            self.sharing.failed("events_after", exc)
            return _store_unavailable(exc)
        if stored is None:
            return None
        frames = b"".join(format_event(data, event_id=shown) for shown, data in stored.events)
        if not stored.request_stream:
            return frames
        response = web.StreamResponse(
            status=200, headers={**SSE_HEADERS, "Mcp-Session-Id": session.id}
        )
        await response.prepare(request)
        await response.write(frames)
        await response.write_eof()
        return response

    def _owned_session(self, session_id: str, transport: str, identity: Identity) -> Session | None:
        """The live session of that id and transport opened by this caller's subject, else None.

        A session presented by another subject is answered exactly like an unknown one: its id
        alone must not let a different caller in.
        """
        session = self.sessions.get(session_id)
        if session is None or session.transport != transport:
            return None
        if not is_session_owner(
            session.subject, identity, session_id=session.id, transport=transport
        ):
            return None
        return session

    def _unavailable(
        self, started: float, method: str, request_id: RequestId | None
    ) -> web.Response:
        why = self.bridge.last_error or "starting"
        return self.reject(
            503,
            INTERNAL_ERROR,
            f"The MCP server is not available: {why}",
            started,
            method=method,
            request_id=request_id,
        )

    # ---- legacy era ----

    async def _legacy(
        self,
        request: web.Request,
        message: Message,
        wants_sse: bool,
        started: float,
        *,
        eager: bool = False,
    ) -> web.StreamResponse:
        if message.kind is Kind.REQUEST and message.method == "initialize":
            return await self._initialize(request, message, started)
        found = await self._session_for(request, encode(message.body))
        if not isinstance(found, Session):
            self.metrics.observe(
                message.method or "response", str(found.status), time.perf_counter() - started
            )
            return found
        session = found
        if message.kind is Kind.NOTIFICATION:
            return await self._notify(session.peer, message, identity_of(request), session.id)
        if message.kind is Kind.RESPONSE:
            await self.bridge.respond(session.peer, response_envelope(message))
            return web.Response(status=202)
        exchange = Exchange(
            streams=wants_sse, capacity=self.settings.queue_capacity, max_bytes=self._queue_bytes
        )
        stream = ResponseStream(
            request,
            exchange,
            keepalive=self.settings.keepalive_interval,
            headers={"Mcp-Session-Id": session.id},
            # Legacy-era servers answer a client that ranks SSE first with a stream; so does the
            # proxy. (On the 2026-07-28 wire they answer JSON unless something precedes it.)
            eager=eager,
            replay=session.replay,
            request_id=message.id,
        )
        reply = await self._run_legacy(session, message, identity_of(request), exchange, stream)
        self._observe(message.method, reply.message, started)
        return await stream.finish(reply.message or {}, status=reply.status)

    async def _initialize(
        self, request: web.Request, message: Message, started: float
    ) -> web.StreamResponse:
        if not await self.bridge.wait_connected(self.settings.drain_timeout):
            return self._unavailable(started, "initialize", message.id)
        identity = identity_of(request)
        request_id = message.id
        assert request_id is not None
        opened: list[Session] = []

        async def terminal(call: McpCall) -> Reply:
            params = call.params
            result = eras.initialize_result_for(
                self.bridge.initialize_result or {}, params.get("protocolVersion")
            )
            capabilities = self._capabilities(params, request_id)
            if isinstance(capabilities, Reply):
                return capabilities
            try:
                session = await self.sessions.create(
                    transport="streamable-http",
                    protocol_version=result["protocolVersion"],
                    capabilities=capabilities,
                    subject=identity.subject,
                )
            except SessionStoreUnavailable as exc:
                return Reply(error_response(request_id, STORE_UNAVAILABLE, str(exc)), status=503)
            except SessionLimit as exc:
                status, refusal = session_refusal(
                    request_id, per_subject=exc.per_subject, limit=exc.limit
                )
                log.info("session_refused", subject=identity.subject, limit=exc.limit)
                return Reply(refusal, status=status)
            window = self.settings.limits.resume_window
            if window > 0:
                bound = min(self._queue_bytes, REPLAY_MAX_BYTES)
                session.replay = self.sharing.log_for(
                    session.id, window=window, max_bytes=bound, epoch=0
                )
            opened.append(session)
            return Reply(result_response(request_id, result))

        reply = await self.pipeline.bind(terminal)(McpCall(message.body, identity, "legacy"))
        final = reply.message or {}
        self._observe("initialize", final, started)
        if not opened:
            return json_body(final, status=reply.status)
        session = opened[0]
        log.info(
            "session_opened", session=session.id[:8], protocol_version=session.protocol_version
        )
        return json_body(final, status=reply.status, headers={"Mcp-Session-Id": session.id})

    async def _run_legacy(
        self,
        session: Session,
        message: Message,
        identity: Identity,
        exchange: Exchange,
        stream: ResponseStream | None,
    ) -> Reply:
        """One legacy request, through the pipeline, to its final reply."""
        peer = session.peer
        request_id = message.id
        assert request_id is not None

        async def terminal(call: McpCall) -> Reply:
            # Answered after the pipeline, so that these too are audited and authorised (a
            # subscription is held only once authorisation let it through).
            local = self._answer_locally(peer, call, request_id)
            if local is not None:
                return Reply(local)
            on_done = None
            method = call.method
            peer.caller = call.identity
            if method in ("resources/subscribe", "resources/unsubscribe"):
                uri = call.params.get("uri")
                if not isinstance(uri, str):
                    return Reply(
                        error_response(request_id, INVALID_PARAMS, "params.uri must be a string")
                    )
                if method == "resources/subscribe":
                    peer.owner = call.identity
                    limit = self.settings.limits.max_subscriptions_per_session
                    if is_over_subscriptions(peer.subscriptions, [uri], limit):
                        return Reply(subscriptions_refusal(request_id, limit), status=429)
                    if not self.bridge.hold(peer, uri) or self.bridge.modern_backend:
                        # Not the first holder, or a modern-era backend (asked through the
                        # proxy's listen stream by `hold`): nothing to forward.
                        return Reply(result_response(request_id, {}))

                    def on_done(reply: Json, uri: str = uri) -> None:
                        if "error" in reply:
                            self.bridge.drop_hold(peer, uri)

                elif not self.bridge.release(peer, uri) or self.bridge.modern_backend:
                    return Reply(result_response(request_id, {}))
            return await self._forward(
                session.id, peer, call.message, exchange, stream, on_done=on_done
            )

        call = McpCall(message.body, identity, "legacy", session.id)
        try:
            return await self.pipeline.bind(terminal)(call)
        finally:
            if message.method in ("resources/subscribe", "resources/unsubscribe"):
                self.sharing.update(session.id, subscriptions_state(peer.subscriptions))
            if not exchange.finished:
                # The client left mid-call. On the legacy wire that is not cancellation: the
                # server finishes. A stream with an id can be resumed (Last-Event-ID), so what
                # is still to come is recorded for it; otherwise it has nowhere to go.
                journal = stream.journal if stream is not None else None
                if journal is not None:
                    self._spawn(self._keep_recording(exchange, journal, peer, request_id))
                else:
                    exchange.abandon()

    async def _keep_recording(
        self, exchange: Exchange, journal: Journal, peer: Peer, request_id: RequestId
    ) -> None:
        """Record the rest of a request whose client lost its stream, up to the response (or
        the request timeout), for the client to resume."""
        limit = self.settings.limits.request_timeout
        try:
            async with asyncio.timeout(limit):
                while exchange.final is None:
                    await exchange.wait(None)
                    for item in exchange.take():
                        journal.record(encode(item))
        except TimeoutError:
            exchange.finish(timeout_error(request_id, limit))
            self.bridge.cancel(peer, request_id, "the request timed out")
        finally:
            for item in exchange.take():
                journal.record(encode(item))
            if exchange.final is not None:
                journal.record(encode(exchange.final), final=True)
            journal.close()

    def _spawn(self, coro: Any, *, owed: bool = False) -> None:
        """Run `coro` until it ends or the endpoints stop; `owed`: it writes an answer the
        client is owed on its stream, which the drain waits for."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if owed:
            self._owed.add(task)
            task.add_done_callback(self._owed.discard)

    async def _notify(
        self, peer: Peer | None, message: Message, identity: Identity, session_id: str | None
    ) -> web.Response:
        """A client notification the protocol defines, through the pipeline (audited like a
        request) to the backend; `peer` None: a modern one, with nothing to forward it to."""

        async def terminal(call: McpCall) -> Reply:
            if peer is not None:
                await self.bridge.notify(peer, call.message)
            return Reply(None, status=202)

        era: Era = "modern" if peer is None else "legacy"
        reply = await self.pipeline.bind(terminal)(McpCall(message.body, identity, era, session_id))
        if reply.message is not None:
            return json_body(reply.message, status=reply.status)
        return web.Response(status=202)

    async def _forward(
        self,
        key: str,
        peer: Peer,
        message: Json,
        exchange: Exchange,
        stream: ResponseStream | None,
        *,
        on_done: Callable[[Json], None] | None = None,
    ) -> Reply:
        """Send a request to the backend in `key`'s turn (`fairness`) and wait for its answer.

        A key holding its share already is refused at once (429). Past the request timeout the
        client gets -32001 and the server a `notifications/cancelled`. A legacy client that
        leaves first does not cancel (the server finishes), but the same deadline still does.
        """
        limits = self.settings.limits
        request_id: RequestId = message["id"]
        deadline = asyncio.get_running_loop().time() + limits.request_timeout
        try:
            async with self.gate.slot(key):
                try:
                    await self.bridge.request(peer, message, exchange, on_done=on_done)
                    async with asyncio.timeout_at(deadline):
                        if stream is not None:
                            return Reply(await stream.pump())
                        while exchange.final is None:
                            await exchange.wait(None)
                        return Reply(exchange.final)
                except TimeoutError:
                    answer = timeout_error(request_id, limits.request_timeout)
                    exchange.finish(answer)
                    self.bridge.cancel(peer, request_id, "the request timed out")
                    log.info("request_timed_out", method=message.get("method"), key=key[:16])
                    if on_done is not None:
                        on_done(answer)
                    return Reply(answer)
                except asyncio.CancelledError:
                    if not peer.modern:
                        self._cancel_at(deadline, peer, request_id)
                    raise
        except GateFull:
            answer = overloaded_error(request_id, limits.max_inflight_per_session)
            if on_done is not None:
                on_done(answer)
            return Reply(answer, status=429)

    def _cancel_at(self, deadline: float, peer: Peer, request_id: RequestId) -> None:
        """Cancel the backend request at `deadline` unless it was answered by then."""
        backend_id = peer.inflight.get(request_id)
        if backend_id is None:
            return

        def expire() -> None:
            if peer.inflight.get(request_id) == backend_id:
                self.bridge.cancel(peer, request_id, "the request timed out")

        asyncio.get_running_loop().call_at(deadline, expire)

    def _capabilities(self, params: Json, request_id: RequestId) -> Json | Reply:
        """The client capabilities an `initialize` declares, which its session keeps; a 400
        refusal when they are larger than the limit allows."""
        capabilities = params.get("capabilities")
        if not isinstance(capabilities, dict):
            return {}
        limit = self.settings.limits.max_capabilities_bytes
        if json_size(capabilities) > limit:
            return Reply(capabilities_refusal(request_id, limit), status=400)
        return dict(capabilities)

    def _answer_locally(self, peer: Peer, call: McpCall, request_id: RequestId) -> Json | None:
        """Requests the proxy answers itself for a legacy session, or None to forward."""
        method = call.method
        if method == "ping":
            return result_response(request_id, {})
        if method == "logging/setLevel" and "logging" in self.bridge.capabilities:
            level = call.params.get("level")
            if eras.log_rank(level) is None:
                return error_response(request_id, INVALID_PARAMS, f"Unknown log level: {level!r}")
            assert isinstance(level, str)
            self.bridge.set_log_level(peer, level)
            self.sharing.update(peer.key, {LOG_LEVEL: level})
            return result_response(request_id, {})
        return None

    def _observe(self, method: str, reply: Json | None, started: float) -> None:
        status = "error" if reply is not None and "error" in reply else "ok"
        self.metrics.observe(method, status, time.perf_counter() - started)

    # ---- modern era ----

    async def _modern(
        self, request: web.Request, message: Message, wants_sse: bool, started: float
    ) -> web.StreamResponse:
        if message.kind is Kind.NOTIFICATION:
            version = request.headers.get("MCP-Protocol-Version", "")
            if version not in eras.MODERN_VERSIONS:
                rejection = eras.unsupported_version(version)
                return rpc_error(400, rejection.code, rejection.message, data=rejection.data)
            # The modern wire's one client notification, `notifications/cancelled`, has nothing
            # to act on here (cancelling is closing the stream): audited, then dropped.
            return await self._notify(None, message, identity_of(request), None)
        if message.kind is Kind.RESPONSE:
            return self.reject(
                400,
                INVALID_REQUEST,
                "Clients do not send responses on the 2026-07-28 wire",
                started,
            )
        method = message.method
        request_id = message.id
        duplicated = eras.duplicated_routing_header(request.headers.keys())
        if duplicated is not None:
            return self.reject(
                400,
                -32020,
                f"{duplicated} appears more than once",
                started,
                method=method,
                request_id=request_id,
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        envelope = eras.check_modern_request(message.body, headers)
        if isinstance(envelope, eras.LadderRejection):
            return self.reject(
                eras.modern_status(envelope.code),
                envelope.code,
                envelope.message,
                started,
                method=method,
                request_id=request_id,
                data=envelope.data,
            )
        if method in eras.REMOVED_IN_MODERN:
            return self.reject(
                404,
                METHOD_NOT_FOUND,
                f"Method not found: {method}",
                started,
                method=method,
                request_id=request_id,
            )
        if not await self.bridge.wait_connected(self.settings.drain_timeout):
            return self._unavailable(started, method, request_id)
        assert request_id is not None
        if method == "server/discover":

            async def discover(call: McpCall) -> Reply:
                result = self.bridge.discover_result
                return Reply(result_response(request_id, result))

            answer = await self.pipeline.bind(discover)(
                McpCall(message.body, identity_of(request), "modern")
            )
            final = answer.message or {}
            self._observe(method, final, started)
            return json_body(final, status=answer.status)
        if method == "subscriptions/listen":
            if not wants_sse:
                return self.reject(
                    406, INVALID_REQUEST, "subscriptions/listen needs text/event-stream", started
                )
            return await self._listen(request, message, envelope, started)
        params = message.params
        parked_at = self._parked_elsewhere(request, params)
        if parked_at is not None:
            holder = await self._to_owner(request, parked_at, encode(message.body))
            if holder is not None:
                return holder
        eras.strip_envelope(params)
        peer = Peer(
            key=f"modern-{secrets.token_urlsafe(9)}",
            modern=True,
            capabilities=envelope.client_capabilities,
            log_level=envelope.log_level,
            client_info=envelope.client_info if isinstance(envelope.client_info, dict) else None,
            principal=identity_of(request).subject,
        )
        self.bridge.attach(peer)
        exchange = Exchange(
            streams=wants_sse, capacity=self.settings.queue_capacity, max_bytes=self._queue_bytes
        )
        stream = ResponseStream(request, exchange, keepalive=self.settings.keepalive_interval)

        async def terminal(call: McpCall) -> Reply:
            # Stateless requests are told apart by subject; anonymous ones cannot be, so each
            # is its own key (bounded by the total only).
            subject = call.identity.subject
            key = f"subject:{subject}" if subject is not None else peer.key
            peer.caller = call.identity
            return await self._forward(key, peer, call.message, exchange, stream)

        call = McpCall(message.body, identity_of(request), "modern", None)
        try:
            reply = await self.pipeline.bind(terminal)(call)
        finally:
            if not exchange.finished:
                # On the modern wire, closing the response stream cancels the request.
                self.bridge.cancel(peer, request_id, "the client closed the response stream")
                exchange.abandon()
            self.bridge.detach(peer)
        final = reply.message or {}
        status = reply.status
        outcome = final.get("result")
        if isinstance(outcome, dict):
            eras.modern_result(method, outcome, self.bridge.server_info)
        elif status == 200 and isinstance(final.get("error"), dict):
            status = eras.modern_status(final["error"].get("code", 0))
        self._observe(method, final, started)
        if stream.committed:
            status = 200
        return await stream.finish(final, status=status)

    def _parked_elsewhere(self, request: web.Request, params: Json) -> str | None:
        """The replica holding the parked call a modern retry resumes, when it is another one
        (the retry needs the call, which lives in that replica's memory)."""
        state = params.get("requestState")
        if (
            not self.sharing.shared
            or is_forwarded(request)
            or self.bridge.modern_backend
            or not is_sealed(state)
        ):
            return None
        holder = self.bridge.parked_at(state, principal=identity_of(request).subject)
        return holder if holder not in (None, "", self.sharing.address) else None

    async def _listen(
        self, request: web.Request, message: Message, envelope: eras.Envelope, started: float
    ) -> web.StreamResponse:
        """`subscriptions/listen`, served from the legacy backend's notifications.

        The request passes the pipeline first (audited; every resource subscription in it is
        authorised as `read_resource` on its URI); only then is the stream opened.
        """
        request_id = message.id
        assert request_id is not None

        async def admitted(call: McpCall) -> Reply:
            # `None`: the answer is the stream that follows.
            return Reply(None)

        verdict = await self.pipeline.bind(admitted)(
            McpCall(message.body, identity_of(request), "modern")
        )
        requested = message.params.get("notifications")
        wanted: Json = requested if isinstance(requested, dict) else {}
        if verdict.message is None:
            listed = wanted.get("resourceSubscriptions")
            limit = self.settings.limits.max_subscriptions_per_session
            strings = [u for u in listed if isinstance(u, str)] if isinstance(listed, list) else []
            if is_over_subscriptions((), strings, limit):
                verdict = Reply(subscriptions_refusal(request_id, limit), status=429)
        if verdict.message is not None:
            self._observe("subscriptions/listen", verdict.message, started)
            status = verdict.status
            error = verdict.message.get("error")
            if status == 200 and isinstance(error, dict):
                status = eras.modern_status(error.get("code", 0))
            return json_body(verdict.message, status=status)
        caps = self.bridge.capabilities
        honoured: Json = {}
        for flag, capability in (
            ("toolsListChanged", "tools"),
            ("promptsListChanged", "prompts"),
            ("resourcesListChanged", "resources"),
        ):
            if wanted.get(flag) is True and (caps.get(capability) or {}).get("listChanged"):
                honoured[flag] = True
        uris = wanted.get("resourceSubscriptions")
        if isinstance(uris, list) and (caps.get("resources") or {}).get("subscribe"):
            honoured["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]
        mailbox = Mailbox(capacity=self.settings.queue_capacity, max_bytes=self._queue_bytes)
        peer = Peer(
            key=f"listen-{secrets.token_urlsafe(9)}",
            modern=True,
            capabilities=envelope.client_capabilities,
            mailbox=mailbox,
            listen=honoured,
            listen_id=request_id,
            owner=identity_of(request),
        )
        self.bridge.attach(peer)
        self._listeners.add(peer)
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {eras.SUBSCRIPTION_ID_KEY: request_id}},
        }
        try:
            for uri in honoured.get("resourceSubscriptions", []):
                await self.bridge.subscribe_quietly(peer, uri)
            self.bridge.stream_opened(peer)
            response = await stream_mailbox(
                request,
                mailbox,
                keepalive=self.settings.keepalive_interval,
                first=format_event(encode(ack)),
            )
            if peer.key in self._revoked:
                # Ended because the policy no longer allows it: the error is already sent.
                return response
            # The stream ended on our side (shutdown): close the subscription gracefully.
            done = {"resultType": "complete", "_meta": {eras.SUBSCRIPTION_ID_KEY: request_id}}
            await response.write(format_event(encode(result_response(request_id, done))))
            return response
        finally:
            self._revoked.discard(peer.key)
            self._listeners.discard(peer)
            self.bridge.detach(peer)

    # ---- policy changes ----

    def recheck_subscriptions(self, allowed: Callable[[Identity, str], bool]) -> int:
        """End the resource subscriptions the access policy no longer allows (`allowed`: may
        this caller read this URI) and tell their clients; how many ended.

        A legacy session loses each such subscription and is told with a `warning` log
        message (within its log level). A `subscriptions/listen` stream was authorised as a
        whole, so it ends with a -32003 error naming the URIs; the client may listen again
        for what it may still read.
        """
        ended = 0
        for peer in self.bridge.peers():
            owner = peer.owner
            if not isinstance(owner, Identity):
                continue
            lost = revoked_uris(peer.subscriptions, owner, allowed)
            if not lost:
                continue
            ended += len(lost)
            log.info("subscriptions_revoked", session=peer.key[:8], uris=lost)
            if peer.listen is not None:
                self._end_listen(peer, lost)
                continue
            for uri in lost:
                self.bridge.unsubscribe(peer, uri)
                if peer.mailbox is not None and eras.is_logged("warning", peer.log_level):
                    peer.mailbox.push(subscription_ended_notice(uri))
            self.sharing.update(peer.key, subscriptions_state(peer.subscriptions))
        return ended

    def _end_listen(self, peer: Peer, lost: list[str]) -> None:
        self._revoked.add(peer.key)
        if peer.mailbox is not None:
            peer.mailbox.push(listen_ended_error(peer.listen_id, lost))
            peer.mailbox.close()

    # ---- legacy HTTP+SSE ----

    async def sse(self, request: web.Request) -> web.StreamResponse:
        subject = identity_of(request).subject
        try:
            session = await self.sessions.create(
                transport="sse",
                protocol_version=eras.DEFAULT_NEGOTIATED,
                capabilities={},
                subject=subject,
            )
        except SessionStoreUnavailable as exc:
            return _store_unavailable(exc)
        except SessionLimit as exc:
            status, refusal = session_refusal(None, per_subject=exc.per_subject, limit=exc.limit)
            log.info("session_refused", subject=subject, limit=exc.limit)
            return json_body(refusal, status=status)
        mailbox = session.new_mailbox()
        session.stream_open = True
        endpoint = endpoint_url(request, self.settings, session.id)
        log.info("sse_session_opened", session=session.id[:8])
        try:
            return await stream_mailbox(
                request,
                mailbox,
                keepalive=self.settings.keepalive_interval,
                first=format_event(endpoint.encode(), event="endpoint"),
            )
        finally:
            session.stream_open = False
            self.sessions.close(session, reason="the SSE stream closed")

    async def messages(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        session_id = request.query.get("session_id") or request.query.get("sessionId")
        if not session_id:
            return rpc_error(400, INVALID_REQUEST, "Bad Request: missing session_id")
        identity = identity_of(request)
        session = self._owned_session(session_id, "sse", identity)
        if session is None and self.sharing.shared and self.sessions.get(session_id) is None:
            # The stream is on the replica that holds the session: the POST goes there.
            try:
                body = await read_body(request, self.settings.max_body_bytes)
            except BodyTooLarge:
                return rpc_error(413, INVALID_REQUEST, "Request body too large")
            found = await self._find(request, session_id, "sse", body)
            if isinstance(found, web.StreamResponse):
                return found
        if session is None:
            return rpc_error(404, INVALID_REQUEST, "Session not found")
        intake = await read_message(
            request, limit=self.settings.max_body_bytes, modern=False, check_accept=False
        )
        if isinstance(intake, Refusal):
            return self.refuse(intake, started)
        parsed = intake.message
        peer = session.peer
        if parsed.kind is Kind.NOTIFICATION:
            return await self._notify(peer, parsed, identity, session.id)
        if parsed.kind is Kind.RESPONSE:
            await self.bridge.respond(peer, response_envelope(parsed))
        elif parsed.method == "initialize":
            if not await self.bridge.wait_connected(self.settings.drain_timeout):
                return self.reject(503, INTERNAL_ERROR, "The MCP server is not available", started)
            request_id = parsed.id
            assert request_id is not None

            async def initialize(call: McpCall) -> Reply:
                params = call.params
                result = eras.initialize_result_for(
                    self.bridge.initialize_result or {}, params.get("protocolVersion")
                )
                capabilities = self._capabilities(params, request_id)
                if isinstance(capabilities, Reply):
                    return capabilities
                peer.capabilities = capabilities
                session.protocol_version = result["protocolVersion"]
                return Reply(result_response(request_id, result))

            reply = await self.pipeline.bind(initialize)(
                McpCall(parsed.body, identity, "legacy", session.id)
            )
            self._observe("initialize", reply.message, started)
            if reply.message is not None:
                self._deliver(session, reply.message)
                # The stream opened before `initialize`; only now is it known what it can take.
                self.bridge.stream_opened(peer)
        else:
            self._spawn(self._sse_request(session, parsed, identity, started), owed=True)
        return web.Response(status=202, text="Accepted")

    async def _sse_request(
        self, session: Session, message: Message, identity: Identity, started: float
    ) -> None:
        exchange = Exchange(
            streams=False, capacity=self.settings.queue_capacity, max_bytes=self._queue_bytes
        )
        reply = await self._run_legacy(session, message, identity, exchange, None)
        self._observe(message.method, reply.message, started)
        if reply.message is not None:
            self._deliver(session, reply.message)

    def _deliver(self, session: Session, message: Json) -> None:
        mailbox = session.peer.mailbox
        if mailbox is None or not mailbox.push(message):
            self.metrics.dropped.inc()


def _store_unavailable(exc: SessionStoreUnavailable) -> web.Response:
    """Rule 6: what needs the session store while it cannot be reached is answered 503."""
    return rpc_error(503, STORE_UNAVAILABLE, str(exc) or "The session storage is unavailable")


def _moved() -> web.Response:
    return rpc_error(
        503,
        STORE_UNAVAILABLE,
        "The session is being taken over by another replica; send the request again",
    )
