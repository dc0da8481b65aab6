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
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.fairness import FairGate, GateFull
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.backends.stdio.sessions import Session, SessionRegistry
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
    Refusal,
    Refusing,
    ResponseStream,
    accepts,
    endpoint_url,
    json_body,
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
from moorage_proxyrunner.protocol.revocation import (
    listen_ended_error,
    revoked_uris,
    subscription_ended_notice,
)
from moorage_proxyrunner.protocol.sse import format_event
from moorage_proxyrunner.sessionstore.forwarding import Forwarder
from moorage_proxyrunner.sessionstore.opening import memory_store
from moorage_proxyrunner.sessionstore.store import SessionStore

log = structlog.get_logger(__name__)

_SWEEP_INTERVAL = 60.0


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
        self.store: SessionStore = store or memory_store(settings.limits)
        self.address = address or settings.advertise_address
        self.forwarder = forwarder or Forwarder()
        self.sessions = SessionRegistry(
            bridge,
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
        self._sweeper: asyncio.Task[None] | None = None
        self._listeners: set[Peer] = set()
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
        await self.bridge.start(supervisor)
        sweep = self._sweep()
        self._sweeper = (
            supervisor.spawn("session-sweeper", sweep)
            if supervisor is not None
            else asyncio.create_task(sweep, name="session-sweeper")
        )

    async def close_streams(self) -> None:
        """Drain: end the long-lived streams so their handlers return; sessions stay open so
        their requests in flight can still finish (they close in `stop`)."""
        self.sessions.close_streams()
        for peer in list(self._listeners):
            if peer.mailbox is not None:
                peer.mailbox.close()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.close_streams()
        self.sessions.close_all(reason="the proxy is shutting down")
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
        session, failure = self._session_from(request)
        if session is None:
            assert failure is not None
            return failure
        headers = {"Mcp-Session-Id": session.id}
        replay = session.replay
        first = b""
        last_event = request.headers.get("Last-Event-ID")
        if last_event is not None and replay is not None:
            resumed = replay.after(last_event)
            position = parse_event_id(last_event)
            if resumed is None or position is None:
                return rpc_error(
                    400,
                    INVALID_REQUEST,
                    f"Last-Event-ID names no event of this session's last {replay.window}",
                )
            stream, missed = resumed
            if stream != replay.standalone:
                # A request's stream: what it missed, then the rest until it is answered.
                return await replay_stream(
                    request,
                    replay,
                    stream=stream,
                    after=position[1],
                    keepalive=self.settings.keepalive_interval,
                    headers=headers,
                )
            first = b"".join(format_event(e.data, event_id=e.shown_id) for e in missed)
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

    async def delete(self, request: web.Request) -> web.StreamResponse:
        if self._is_modern_request(request):
            return web.Response(status=405, headers={"Allow": "POST"})
        session, failure = self._session_from(request)
        if session is None:
            assert failure is not None
            return failure
        self.sessions.close(session, reason="the client ended the session")
        return web.Response(status=200)

    @staticmethod
    def _is_modern_request(request: web.Request) -> bool:
        version = request.headers.get("MCP-Protocol-Version")
        return version is not None and version not in eras.HANDSHAKE_VERSIONS

    def _session_from(self, request: web.Request) -> tuple[Session | None, web.Response | None]:
        session_id = request.headers.get("Mcp-Session-Id")
        if not session_id:
            return None, rpc_error(
                400, INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header"
            )
        session = self._owned_session(session_id, "streamable-http", identity_of(request))
        if session is None:
            return None, rpc_error(404, INVALID_REQUEST, "Session not found")
        return session, None

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
        session, failure = self._session_from(request)
        if session is None:
            assert failure is not None
            self.metrics.observe(
                message.method or "response", str(failure.status), time.perf_counter() - started
            )
            return failure
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
                session = self.sessions.create(
                    transport="streamable-http",
                    protocol_version=result["protocolVersion"],
                    capabilities=capabilities,
                    subject=identity.subject,
                )
            except SessionLimit as exc:
                status, refusal = session_refusal(
                    request_id, per_subject=exc.per_subject, limit=exc.limit
                )
                log.info("session_refused", subject=identity.subject, limit=exc.limit)
                return Reply(refusal, status=status)
            window = self.settings.limits.resume_window
            if window > 0:
                bound = min(self._queue_bytes, REPLAY_MAX_BYTES)
                session.replay = ReplayLog(window=window, max_bytes=bound)
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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            session = self.sessions.create(
                transport="sse",
                protocol_version=eras.DEFAULT_NEGOTIATED,
                capabilities={},
                subject=subject,
            )
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
            self._spawn(self._sse_request(session, parsed, identity, started))
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
