"""HTTP backends: a streaming reverse proxy to MCP servers that speak HTTP themselves.

`streamable-http` servers are reached at their `/mcp` URL: each client POST/GET/DELETE is
forwarded with the MCP headers (session, protocol version, `Mcp-Method`/`Mcp-Name`/
`Mcp-Param-*` on a modern POST, `Last-Event-ID`) and the answer streams back chunk by chunk,
never buffered. A session is pinned to the target that created it (learned from the
`Mcp-Session-Id` it returned). Legacy `sse` servers are reached at their `/sse` URL: the proxy
opens the upstream stream, replaces the `endpoint` event with its own `/messages?session_id=` URL
and pins the session to that target. The client's `Authorization` never goes upstream.

A session also belongs to the authenticated subject that opened it (the one whose `initialize`
answer carried the `Mcp-Session-Id`, or who opened `GET /sse`): another subject presenting its
id is answered exactly like an unknown session (404), as the stdio bridge does. With
authentication on, a session id the proxy never saw opened has no known owner and is unknown too.

Every request body is parsed (strictly: `jsonrpc.parse_client_message`) and passed through the
middleware pipeline first, notifications too; what goes upstream is the parsed message, re-encoded
(`encode`), never the client's bytes, so the server reads exactly what was authorised and audited.
For the same reason `Mcp-Method` and `Mcp-Name` are written from that message on the modern wire
and dropped on the legacy one and on GET and DELETE; an `Mcp-Param-<X>` header goes on only with
a modern `tools/call` whose argument X it equals (`eras.check_modern_headers` refuses one that
differs; one naming no argument is dropped). A client's response is refused on the modern wire
(there is no server request to answer) and forwarded rebuilt from its envelope on the legacy one.
A step that needs a result (the tool filter on `tools/list`) makes the proxy rewrite that one
answer: from an SSE answer to a listing, the events before it are relayed as they come and only
the answer's own event is read whole; a JSON answer is read whole. After a policy change the
resource subscriptions a legacy session holds through the proxy are checked again
(`recheck_subscriptions`, `subscriptions.SessionSubscriptions`): the client is told on its
HTTP+SSE stream or on its session's GET stream, which the proxy relays whole event by event
through a mailbox it can add its own notices to (held until the stream opens when none is);
a 2026-07-28 `subscriptions/listen` stream, relayed the same way, ends with -32003 naming the
URIs. Targets is a list so a StatefulSet's pods can be given; locally it has one entry.

Sessions are kept in the session store too, for the other replicas (`placement` decides where
a request of a session this replica does not hold goes): a streamable-HTTP session's plain
requests are served by any replica, straight to its target; what needs the proxy's own state
for the session (its GET stream, the requests whose answers the subscription tracking notes)
goes to the session's owner, or is adopted once the owner is gone; an HTTP+SSE session's POSTs go
to the replica holding its stream. With the store unreachable, what needs it is answered 503
(-32000); sessions held here go on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import structlog
from aiohttp import web

from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.reverse.placement import (
    SSE,
    STREAMABLE,
    Route,
    route,
    sse_state,
    streamable_state,
    subscriptions_of,
    subscriptions_state,
    target_index,
)
from moorage_proxyrunner.backends.reverse.subscriptions import SessionSubscriptions
from moorage_proxyrunner.backends.reverse.upstream import Client, Response, UpstreamError
from moorage_proxyrunner.config.limits import (
    is_over_subscriptions,
    session_refusal,
    subscriptions_refusal,
    timeout_error,
)
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.front.app import Rechecker
from moorage_proxyrunner.front.identity import identity_of
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.front.responding import (
    BodyTooLarge,
    Refusal,
    Refusing,
    connection_dropper,
    endpoint_url,
    json_body,
    read_body,
    read_message,
    rpc_error,
)
from moorage_proxyrunner.front.sessioncaps import (
    SessionLimit,
    check_session_caps,
    is_session_owner,
)
from moorage_proxyrunner.front.streams import Mailbox
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    Json,
    Kind,
    Message,
    encode,
    error_response,
    parse_message,
    response_envelope,
)
from moorage_proxyrunner.protocol.pipeline import Era, Identity, McpCall, Pipeline, Reply
from moorage_proxyrunner.protocol.revocation import (
    listen_ended_error,
    revoked_uris,
    subscription_ended_notice,
)
from moorage_proxyrunner.protocol.sse import (
    KEEPALIVE,
    SSE_HEADERS,
    Event,
    EventParser,
    format_event,
)
from moorage_proxyrunner.sessionstore.forwarding import Forwarder, is_forwarded
from moorage_proxyrunner.sessionstore.opening import memory_store
from moorage_proxyrunner.sessionstore.records import RecordError, SessionRecord
from moorage_proxyrunner.sessionstore.store import (
    STORE_UNAVAILABLE,
    SessionStore,
    SessionStoreUnavailable,
)

log = structlog.get_logger(__name__)

FORWARDED_REQUEST_HEADERS: Final = frozenset(
    {"accept", "content-type", "mcp-session-id", "mcp-protocol-version", "last-event-id"}
)
FORWARDED_RESPONSE_HEADERS: Final[Mapping[str, str]] = {
    "content-type": "Content-Type",
    "mcp-session-id": "Mcp-Session-Id",
    "cache-control": "Cache-Control",
    "allow": "Allow",
}
"""Upstream response headers passed back to the client (by lower-case name → as written)."""
STREAMING_KEY: Final = web.RequestKey("moorage_streaming", web.StreamResponse)
"""The client's response once an upstream stream is being relayed into it."""
STREAMED_LISTS: Final = frozenset(
    {"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
)
"""Listings a step rewrites whose SSE answers are relayed as they come, all but the answer."""
TRACKED: Final = frozenset({"resources/subscribe", "resources/unsubscribe", "logging/setLevel"})
"""Legacy-session requests whose accepted answers the proxy notes (`SessionSubscriptions`): it
reads their answers before the client does."""
READ_UNTIL_ANSWER: Final = STREAMED_LISTS | TRACKED
"""Requests whose SSE answers are relayed event by event up to the answer, which is read whole."""
PROBE_INTERVAL: Final = 5.0
"""Seconds between reachability probes of the targets (for `/health`)."""
TOUCH_INTERVAL: Final = 30.0
"""At most this often (seconds) a session used here restarts its idle timeout in the store,
so that one a client keeps using on one replica does not expire for the others."""


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client headers an MCP server needs; never credentials, cookies or hop-by-hop ones.
    Routing headers that mirror the body (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) are added
    by `routing_headers` from the message itself; a GET or DELETE has no body and gets none."""
    return {
        name: value for name, value in headers.items() if name.lower() in FORWARDED_REQUEST_HEADERS
    }


def routing_headers(
    headers: Mapping[str, str],
    message: Json,
    *,
    modern: bool,
    params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`headers` with `Mcp-Method`/`Mcp-Name` as the forwarded `message` states them (modern
    wire) or without them (legacy wire, which has none): never the client's copies, which a
    server routing on headers would otherwise read instead of the body. `params`: the client's
    `Mcp-Param-*` headers that mirror an argument (`eras.param_headers`), modern wire only."""
    out = {
        name: value
        for name, value in headers.items()
        if name.lower() not in (eras.METHOD_HEADER, eras.NAME_HEADER)
        and not name.lower().startswith(eras.PARAM_HEADER_PREFIX)
    }
    method = message.get("method")
    if not modern or not isinstance(method, str):
        return out
    out.update(params or {})
    out["Mcp-Method"] = method
    key = eras.NAME_BEARING.get(method)
    params = message.get("params")
    value = params.get(key) if key is not None and isinstance(params, dict) else None
    if isinstance(value, str):
        out["Mcp-Name"] = encode_header_value(value)
    return out


def encode_header_value(value: str) -> str:
    """An `Mcp-Name` value as the modern spec writes it (base64 sentinel when not plain ASCII)."""
    if (
        value.isascii()
        and value.isprintable()
        and value == value.strip()
        and not value.startswith("=?")
    ):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


@dataclass(frozen=True, slots=True)
class _Pin:
    """A streamable-HTTP session this replica serves: the target that created it and the subject
    whose request it answered (None without authentication), its only user. `owned`: this
    replica is the session's owner in the store (it opened or adopted it), so the subscriptions
    it tracks and the GET stream it relays are the session's; a session opened by another
    replica is pinned here to serve its plain requests."""

    target: int
    subject: str | None
    owned: bool = True


@dataclass(eq=False, slots=True)
class _SseSession:
    """A legacy HTTP+SSE session relayed to one target.

    `subject`: who opened the stream (None without authentication), the only one who may post
    to it; `outbox` carries what the client's stream must write (upstream events, and answers
    the pipeline rewrote); `awaited` are request ids whose answer a pipeline step wants to see
    before the client does.
    """

    id: str
    target: int
    messages_url: str
    outbox: Mailbox
    subject: str | None
    awaited: dict[Any, asyncio.Future[Json]] = field(default_factory=dict)
    passing: set[Any] = field(default_factory=set)
    """Awaited ids whose answer still goes to the client as the server wrote it: they are
    awaited only so that the request times out if the answer never comes."""


class HttpEndpoints(Refusing):
    def __init__(
        self,
        targets: list[str],
        *,
        transport: str,
        settings: ProxyRunnerSettings,
        pipeline: Pipeline,
        metrics: ProxyMetrics,
        connect_timeout: float = 10.0,
        client: Client | None = None,
        store: SessionStore | None = None,
        address: str | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        """`client`: what makes the upstream requests (default: a plain `Client`); a remote
        proxy's adds its headers and outgoing authentication. `store`: where the sessions are
        kept for the other replicas (default: this process's memory); `address`: this
        replica's, which names it as a session's owner; `forwarder`: sends a request to the
        replica owning its session."""
        if not targets:
            raise ValueError("an HTTP backend needs at least one target URL")
        if transport not in ("sse", "streamable-http"):
            raise ValueError(f"unknown HTTP transport {transport!r}")
        self.targets = list(targets)
        self.transport = transport
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self._connect_timeout = connect_timeout
        self.client = client or Client(connect_timeout=connect_timeout)
        # Sessions are kept through `store` (shared by the replicas with Redis); `address` is
        # this replica's, and `forwarder` passes a request to the replica owning its session.
        self.store: SessionStore = store or memory_store(settings.limits)
        self.address = address or settings.advertise_address
        self._own_forwarder = forwarder is None
        self.forwarder = forwarder or Forwarder(on_outcome=metrics.count_forward)
        self._targets = [self.client.target(url) for url in self.targets]
        self._next = itertools.cycle(range(len(self.targets)))
        self._pins: dict[str, _Pin] = {}
        self._pin_used: dict[str, float] = {}
        """When each pinned session was last used here (monotonic); pins idle past the session
        idle timeout are forgotten, so sessions the upstream dropped do not count forever. The
        store keeps its own idle timeout for the session, restarted by `_touch`."""
        self._touched: dict[str, float] = {}
        self._sse: dict[str, _SseSession] = {}
        self._subscriptions = SessionSubscriptions()
        self._session_streams: dict[str, Mailbox] = {}
        """Each streamable-HTTP session's GET stream being relayed: the server's events and the
        proxy's own notices, merged event by event."""
        self._held_notices: dict[str, list[Json]] = {}
        """Notices for a streamable-HTTP session whose GET stream is not open: they go out when
        it opens (bounded: one per subscription the session held)."""
        self._listens: set[_Listen] = set()
        self._reachable = [False] * len(self.targets)
        self._prober: asyncio.Task[None] | None = None
        self._inflight = 0
        self._relays: set[Response] = set()
        self._draining: set[Response] = set()
        self._drains: set[asyncio.Task[None]] = set()
        metrics.backend_inflight.set_function(lambda: self._inflight)

    # ---- lifecycle ----

    def add_routes(self, app: web.Application) -> None:
        if self.transport == "streamable-http":
            app.router.add_post("/mcp", self.post)
            app.router.add_get("/mcp", self.get_or_delete)
            app.router.add_delete("/mcp", self.get_or_delete)
        else:
            app.router.add_get("/sse", self.sse)
            app.router.add_post("/messages", self.messages)
            app.router.add_post("/messages/", self.messages)

    async def start(self, supervisor: TaskSupervisor | None = None) -> None:
        await self._probe_all()
        probe = self._probe_forever()
        self._prober = (
            supervisor.spawn("http-backend-probe", probe)
            if supervisor is not None
            else asyncio.create_task(probe, name="http-backend-probe")
        )

    async def close_streams(self) -> None:
        """Drain: end legacy SSE sessions and the long-lived streams being relayed."""
        for session in list(self._sse.values()):
            session.outbox.close()
        for upstream in list(self._relays):
            upstream.close()

    def unanswered(self) -> int:
        """Requests of legacy HTTP+SSE sessions whose answer has not passed through the relay
        (`_relayed`) nor timed out (`_answer_in_time`)."""
        return sum(len(session.awaited) for session in self._sse.values())

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        await self.close_streams()
        for task in list(self._drains):
            task.cancel()
        await self.client.close()
        if self._own_forwarder:
            await self.forwarder.close()

    def is_ready(self) -> bool:
        return any(self._reachable)

    def announcer(self) -> None:
        """None: the server announces its own list changes on its sessions' streams; the
        proxy only adds the notices of a policy change (`recheck_subscriptions`)."""
        return

    def rechecker(self) -> Rechecker:
        return self.recheck_subscriptions

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            await self._probe_all()
            self._forget_idle_pins()

    def _forget_idle_pins(self) -> None:
        cutoff = time.monotonic() - self.settings.session_idle_timeout
        for session_id, used in list(self._pin_used.items()):
            if used < cutoff:
                self._pins.pop(session_id, None)
                del self._pin_used[session_id]
                self._forget(session_id)

    def _forget(self, session_id: str) -> None:
        self._subscriptions.forget(session_id)
        self._held_notices.pop(session_id, None)
        self._touched.pop(session_id, None)

    async def _probe_all(self) -> None:
        await asyncio.gather(*(self._probe(i) for i in range(len(self.targets))))

    async def _probe(self, index: int) -> None:
        """A server that accepts a connection is up.

        No request is made: what an MCP endpoint answers to one says little (a GET on /mcp is
        often 405), and an SSE endpoint treats a HEAD like a GET and holds it open, so waiting
        for an answer would mark a healthy legacy server down and open a session on it per probe.
        """
        target = self._targets[index]
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, TimeoutError):
            up = False
        else:
            up = True
            writer.close()
        if up != self._reachable[index]:
            log.info("backend_reachability", target=self.targets[index], reachable=up)
        self._reachable[index] = up
        self.metrics.backend_up.set(1 if any(self._reachable) else 0)

    def _pick(self) -> int:
        if len(self.targets) == 1:
            return 0
        for _ in range(len(self.targets)):
            index = next(self._next)
            if self._reachable[index]:
                return index
        return next(self._next)

    # ---- streamable HTTP ----

    async def post(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        era = _era(request)
        modern = era == "modern"
        intake = await read_message(request, limit=self.settings.max_body_bytes, modern=modern)
        if isinstance(intake, Refusal):
            return self.refuse(intake, started)
        parsed = intake.message
        identity = identity_of(request)
        session_id = request.headers.get("Mcp-Session-Id")
        # What the proxy tracks for a legacy session's subscriptions is kept by its owner.
        needs_owner = not modern and parsed.kind is Kind.REQUEST and parsed.method in TRACKED
        placed = await self._place(
            request,
            session_id,
            needs_owner=needs_owner,
            body=encode(parsed.body),
            started=started,
            request_id=parsed.id,
        )
        if isinstance(placed, web.StreamResponse):
            return placed
        target = placed
        if parsed.kind is Kind.REQUEST and modern:
            mismatch = self._modern_mismatch(request, parsed.body)
            if mismatch is not None:
                return self.reject(
                    400, mismatch.code, mismatch.message, started, request_id=parsed.id
                )
        headers = forwarded_headers(request.headers)
        params = eras.param_headers(parsed.body, request.headers) if modern else {}
        if parsed.kind is Kind.RESPONSE:
            if modern:
                # The modern wire has no server-to-client requests to answer: a "response" here
                # could only carry what the pipeline never saw.
                return self.reject(
                    400,
                    INVALID_REQUEST,
                    "Clients do not send responses on the 2026-07-28 wire",
                    started,
                    request_id=parsed.id,
                )
            body = response_envelope(parsed)
            out = routing_headers(headers, body, modern=False)
            return await self._relay(
                request, "POST", target, out, encode(body), started, label="response"
            )
        if parsed.kind is Kind.NOTIFICATION:
            relayed: list[web.StreamResponse] = []

            async def notify(call: McpCall) -> Reply:
                out = routing_headers(headers, call.message, modern=modern)
                data = encode(call.message)
                relayed.append(
                    await self._relay(
                        request, "POST", target, out, data, started, label=call.method
                    )
                )
                return Reply(None, status=202)

            notified = await self.pipeline.bind(notify)(
                McpCall(parsed.body, identity, era, session_id)
            )
            if notified.message is not None or not relayed:
                return json_body(notified.message or {}, status=notified.status)
            return relayed[0]
        sent: list[Reply] = []

        # Only a legacy session subscribes with `resources/subscribe`; the modern wire listens.
        tracked = session_id if not modern and parsed.method in TRACKED else None
        listening = modern and parsed.method == "subscriptions/listen"

        async def terminal(call: McpCall) -> Reply:
            if tracked is not None:
                refusal = self._over_subscriptions(tracked, call)
                if refusal is not None:
                    return Reply(refusal)
            out = routing_headers(headers, call.message, modern=modern, params=params)
            upstream = await self._open(target, "POST", out, encode(call.message))
            if upstream is None:
                return Reply(_unreachable(call.id, self.targets[target]), status=502)
            if listening and upstream.content_type == "text/event-stream":
                outbox = self._new_outbox(request)
                uris = _listened_uris(call.params)
                listen = _Listen(call.id, call.identity, uris, upstream, outbox)
                return Reply(None, status=upstream.status, passthrough=listen)
            if call.want_result or tracked is not None:
                if (
                    call.method in READ_UNTIL_ANSWER
                    and upstream.content_type == "text/event-stream"
                ):
                    reply = await self._relay_until_answer(request, upstream, call.id, target)
                    if tracked is not None and reply.message is not None:
                        self._track(tracked, call, reply.message)
                        await self._save_subscriptions(tracked)
                    return reply
                message = await _read_answer(upstream, call.id)
                if message is None:
                    return Reply(_unreachable(call.id, self.targets[target]), status=502)
                if tracked is not None:
                    self._track(tracked, call, message)
                    await self._save_subscriptions(tracked)
                reply = Reply(message, status=upstream.status)
                reply.passthrough = _Headers(upstream)
                return reply
            reply = Reply(None, status=upstream.status, passthrough=upstream)
            sent.append(reply)
            return reply

        call = McpCall(parsed.body, identity, era, session_id)
        refused = self._refuse_session(request, parsed)
        if refused is not None:
            return refused
        self._inflight += 1
        try:
            async with asyncio.timeout(self.settings.limits.request_timeout):
                reply = await self.pipeline.bind(terminal)(call)
                if not isinstance(reply.passthrough, _Listen):
                    return await self._answer(
                        request, reply, started, parsed.method, target, parsed.id
                    )
            # A listen stream lasts as long as the client listens: no request timeout.
            return await self._relay_listen(request, reply.passthrough, started)
        except TimeoutError:
            # The upstream request is closed below, which is how an HTTP server learns that
            # nobody waits for its answer any more.
            return await self._timed_out(request, parsed, started)
        finally:
            self._inflight -= 1
            for item in sent:
                upstream = item.passthrough
                if isinstance(upstream, Response) and upstream not in self._draining:
                    # Read to the end (connection pooled again) unless the answer never went
                    # out; then the connection cannot be reused and is closed.
                    upstream.close()

    async def _timed_out(
        self, request: web.Request, parsed: Message, started: float
    ) -> web.StreamResponse:
        """Answer a request the upstream did not answer in time: a JSON-RPC error, as the
        JSON body or, when the answer was already streaming, as the stream's last event."""
        answer = timeout_error(parsed.id, self.settings.limits.request_timeout)
        log.info("request_timed_out", method=parsed.method)
        self.metrics.observe(parsed.method, "error", time.perf_counter() - started)
        streaming: web.StreamResponse | None = request.get(STREAMING_KEY)
        if streaming is None:
            return json_body(answer)
        with contextlib.suppress(ConnectionError):
            await streaming.write(format_event(encode(answer)))
            await streaming.write_eof()
        return streaming

    def _refuse_session(self, request: web.Request, parsed: Message | None) -> web.Response | None:
        """A refusal when a new session (an `initialize`, or `parsed` None: `GET /sse`) would
        pass a cap, else None."""
        if parsed is not None and (
            parsed.method != "initialize" or parsed.kind is not Kind.REQUEST
        ):
            return None
        subject = identity_of(request).subject
        held = [pin.subject for pin in self._pins.values() if pin.owned]
        held += [session.subject for session in self._sse.values()]
        try:
            limits = self.settings.limits
            check_session_caps(
                Counter(held),
                subject,
                total=limits.max_sessions,
                per_subject=limits.max_sessions_per_subject,
            )
        except SessionLimit as exc:
            log.info("session_refused", subject=subject, limit=exc.limit)
            status, refusal = session_refusal(
                parsed.id if parsed is not None else None,
                per_subject=exc.per_subject,
                limit=exc.limit,
            )
            return json_body(refusal, status=status)
        return None

    async def get_or_delete(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        session_id = request.headers.get("Mcp-Session-Id")
        # The GET stream carries the proxy's own notices, which come from the owner.
        placed = await self._place(
            request, session_id, needs_owner=request.method == "GET", body=None, started=started
        )
        if isinstance(placed, web.StreamResponse):
            return placed
        target = placed
        if request.method == "GET" and session_id:
            return await self._session_stream(request, session_id, target, started)
        response = await self._relay(
            request,
            request.method,
            target,
            forwarded_headers(request.headers),
            None,
            started,
            label=request.method,
        )
        if request.method == "DELETE" and session_id and 200 <= response.status < 300:
            self._pins.pop(session_id, None)
            self._pin_used.pop(session_id, None)
            self._forget(session_id)
            await self._delete_record(session_id)
        return response

    async def _session_stream(
        self, request: web.Request, session_id: str, target: int, started: float
    ) -> web.StreamResponse:
        """A session's GET stream: relayed event by event (whole events, as the server wrote
        them, ids included) through a mailbox the proxy can add its own notices to between
        them. Anything but an SSE answer is passed back as it came."""
        upstream = await self._open(target, "GET", forwarded_headers(request.headers), None)
        if upstream is None:
            return self._unreachable_target(target, started)
        if upstream.content_type != "text/event-stream":
            try:
                return await self._stream_back(request, upstream, target)
            finally:
                upstream.close()
        outbox = self._new_outbox(request)
        for notice in self._held_notices.pop(session_id, []):
            outbox.push({"raw": format_event(encode(notice))})
        self._session_streams[session_id] = outbox
        log.info("session_stream_opened", session=session_id[:8])
        try:
            return await self._relay_merged(request, upstream, outbox)
        finally:
            if self._session_streams.get(session_id) is outbox:
                del self._session_streams[session_id]

    async def _relay_listen(
        self, request: web.Request, listen: _Listen, started: float
    ) -> web.StreamResponse:
        """A 2026-07-28 `subscriptions/listen` stream, relayed like a session's GET stream so
        that a policy change can end it (`recheck_subscriptions`)."""
        self._listens.add(listen)
        try:
            response = await self._relay_merged(request, listen.upstream, listen.outbox)
        finally:
            self._listens.discard(listen)
        self.metrics.observe("subscriptions/listen", "ok", time.perf_counter() - started)
        return response

    def _new_outbox(self, request: web.Request) -> Mailbox:
        outbox = Mailbox(
            capacity=self.settings.queue_capacity,
            max_bytes=self.settings.limits.queue_max_bytes,
            size=_raw_size,
        )
        outbox.on_overflow = connection_dropper(request)
        return outbox

    async def _relay_merged(
        self, request: web.Request, upstream: Response, outbox: Mailbox
    ) -> web.StreamResponse:
        """Relay an upstream SSE stream through `outbox` (which the proxy may add to, or close
        to end the stream) until either ends."""
        response = web.StreamResponse(
            status=upstream.status, headers={**_response_headers(upstream), **SSE_HEADERS}
        )
        self._relays.add(upstream)
        pump = asyncio.create_task(self._pump_events(upstream, EventParser(), outbox))
        try:
            await response.prepare(request)
            request[STREAMING_KEY] = response
            await self._write_outbox(response, outbox)
            await response.write_eof()
        except ConnectionError:
            pass  # the client left
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._relays.discard(upstream)
            upstream.close()
        return response

    async def _pump_events(
        self,
        upstream: Response,
        parser: EventParser,
        outbox: Mailbox,
        early: list[Event] | None = None,
        relay: Callable[[Event], bool] | None = None,
    ) -> None:
        """Upstream events → `outbox` (those `relay` lets through, when given) until the
        upstream stream ends."""
        try:
            for event in early or []:
                self._push_event(event, outbox, relay)
            async for chunk in upstream.chunks():
                for event in parser.feed(chunk):
                    self._push_event(event, outbox, relay)
        except UpstreamError as exc:
            log.info("sse_upstream_ended", error=str(exc))
        finally:
            outbox.close()

    def _push_event(
        self, event: Event, outbox: Mailbox, relay: Callable[[Event], bool] | None
    ) -> None:
        if relay is not None and not relay(event):
            return
        if not outbox.push({"raw": event.raw}):
            self.metrics.dropped.inc()

    async def _write_outbox(self, response: web.StreamResponse, outbox: Mailbox) -> None:
        """Write what `outbox` carries to the client's stream until it is closed."""
        while True:
            ready = await outbox.wait(self.settings.keepalive_interval)
            if not ready:
                await response.write(KEEPALIVE)
                continue
            for item in outbox.take():
                await response.write(item["raw"])
            if outbox.closed and not outbox.pending:
                break  # what was queued during the writes goes out first (`stream_mailbox`)

    # ---- subscriptions after a policy change ----

    def _over_subscriptions(self, session_id: str, call: McpCall) -> Json | None:
        """The refusal of a `resources/subscribe` that would pass the per-session cap."""
        uri = call.params.get("uri")
        limit = self.settings.limits.max_subscriptions_per_session
        if call.method != "resources/subscribe" or not isinstance(uri, str):
            return None
        if is_over_subscriptions(self._subscriptions.uris(session_id), [uri], limit):
            return subscriptions_refusal(call.id, limit)
        return None

    def _track(self, session_id: str, call: McpCall, answer: Json) -> None:
        """Note what a legacy session holds once the server accepted it."""
        if "result" not in answer:
            return
        params = call.params
        uri = params.get("uri")
        level = params.get("level")
        if call.method == "resources/subscribe" and isinstance(uri, str):
            self._subscriptions.subscribed(session_id, call.identity, uri)
        elif call.method == "resources/unsubscribe" and isinstance(uri, str):
            self._subscriptions.unsubscribed(session_id, uri)
        elif call.method == "logging/setLevel" and isinstance(level, str):
            self._subscriptions.set_level(session_id, call.identity, level)

    def recheck_subscriptions(self, allowed: Callable[[Identity, str], bool]) -> int:
        """End the resource subscriptions the access policy no longer allows (`allowed`: may
        this caller read this URI); how many ended. For a legacy session the server is asked to
        unsubscribe it, and the client is told with a `warning` log message (within its log
        level). A `subscriptions/listen` stream ends with a -32003 error naming the URIs."""
        ended = 0
        for session_id, lost in self._subscriptions.revoke(allowed).items():
            ended += len(lost)
            log.info("subscriptions_revoked", session=session_id[:8], uris=lost)
            self._spawn(self._end_subscriptions(session_id, lost))
        for listen in list(self._listens):
            lost = revoked_uris(listen.uris, listen.owner, allowed)
            if not lost:
                continue
            ended += len(lost)
            log.info("subscriptions_revoked", listen=str(listen.id)[:8], uris=lost)
            # Authorised as a whole, so it ends whole; closing the upstream ends it there.
            self._listens.discard(listen)
            listen.outbox.push({"raw": format_event(encode(listen_ended_error(listen.id, lost)))})
            listen.outbox.close()
        return ended

    async def _end_subscriptions(self, session_id: str, uris: list[str]) -> None:
        level = self._subscriptions.level(session_id)
        for uri in uris:
            await self._unsubscribe_upstream(session_id, uri)
            if eras.is_logged("warning", level):
                self._tell(session_id, subscription_ended_notice(uri))
        await self._save_subscriptions(session_id)

    def _tell(self, session_id: str, notice: Json) -> None:
        """Put the proxy's own notice on a session's stream: a legacy HTTP+SSE session's only
        stream, or a streamable-HTTP session's GET stream (held until it opens)."""
        raw = {"raw": format_event(encode(notice))}
        sse = self._sse.get(session_id)
        stream = sse.outbox if sse is not None else self._session_streams.get(session_id)
        if stream is not None:
            if not stream.push(raw):
                self.metrics.dropped.inc()
        elif session_id in self._pins:
            held = self._held_notices.setdefault(session_id, [])
            held.append(notice)
            del held[: -self.settings.limits.max_subscriptions_per_session]

    async def _unsubscribe_upstream(self, session_id: str, uri: str) -> None:
        request_id = f"moorage-unsubscribe-{secrets.token_hex(8)}"
        body = encode(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "resources/unsubscribe",
                "params": {"uri": uri},
            }
        )
        headers = {"Content-Type": "application/json"}
        sse = self._sse.get(session_id)
        timeout = self.settings.limits.request_timeout
        if sse is not None:
            # The answer comes on the client's stream: awaited, so it is held back from it.
            future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
            sse.awaited[request_id] = future
            upstream = await self._open_url(sse, headers, body)
            if upstream is not None:
                with contextlib.suppress(UpstreamError):
                    await upstream.read()
                upstream.close()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(future, timeout)
            sse.awaited.pop(request_id, None)
            return
        pin = self._pins.get(session_id)
        if pin is None:
            return
        headers |= {"Accept": "application/json, text/event-stream", "Mcp-Session-Id": session_id}
        upstream = await self._open(pin.target, "POST", headers, body)
        if upstream is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await _read_answer(upstream, request_id)

    async def _place(
        self,
        request: web.Request,
        session_id: str | None,
        *,
        needs_owner: bool,
        body: bytes | None,
        started: float,
        request_id: Any = None,
    ) -> int | web.StreamResponse:
        """The target a streamable-HTTP request goes to, or its answer when it is not served
        here: 404 for an unknown session (another subject's alike), 503 when the session store
        is needed and cannot be reached, or the owner's answer (`placement.route`).
        `needs_owner`: the request needs what the session's owner keeps; `body`: what to
        forward it with."""
        if not session_id:
            return self._pick()
        identity = identity_of(request)
        pin = self._pins.get(session_id)
        if pin is not None:
            if not is_session_owner(
                pin.subject, identity, session_id=session_id, transport=STREAMABLE
            ):
                return self._unknown_session(started, request_id)
            self._pin_used[session_id] = time.monotonic()
            self._touch(session_id)
            if pin.owned or not needs_owner:
                return pin.target
        try:
            record = await self.store.load(session_id)
            placed = (
                None
                if record is None
                else await self._place_stored(
                    request, record, identity, needs_owner=needs_owner, body=body
                )
            )
        except SessionStoreUnavailable as exc:
            if pin is not None:
                return pin.target  # held here: it goes on from what this replica knows
            return self._store_unavailable(exc, "load", started, request_id)
        if placed is not None:
            return placed
        if record is not None:
            return self._unknown_session(started, request_id)  # another's, or gone with its target
        if pin is not None:
            return pin.target  # the store lost it; the upstream says whether it still exists
        if identity.subject is None and len(self.targets) == 1:
            # Nobody is known to own it and nobody authenticated: the one target decides
            # whether the session exists. (Several: we cannot know which.)
            return 0
        return self._unknown_session(started, request_id)

    async def _place_stored(
        self,
        request: web.Request,
        record: SessionRecord,
        identity: Identity,
        *,
        needs_owner: bool,
        body: bytes | None,
    ) -> int | web.StreamResponse | None:
        """`_place` from the session's record; None: refused, as an unknown session."""
        if not self._may_use(record, identity, STREAMABLE):
            return None
        target = target_index(record, self.targets)
        forwarded = is_forwarded(request)
        alive = False
        if needs_owner and not forwarded and record.owner not in ("", self.address):
            alive = await self.store.is_alive(record.owner)
        decision = route(
            record,
            identity,
            kind=STREAMABLE,
            own=self.address,
            needs_owner=needs_owner,
            owner_alive=alive,
            forwarded=forwarded,
        )
        if decision is Route.REFUSE or target is None:
            return None
        if decision is Route.FORWARD:
            answer = await self._forward(request, record.owner, body)
            if answer is not None:
                return answer
            decision = Route.ADOPT
        if decision is Route.ADOPT:
            return await self._adopt(request, record, target, body)
        self._pin(record, target, owned=record.owner == self.address)
        return target

    async def _adopt(
        self, request: web.Request, record: SessionRecord, target: int, body: bytes | None
    ) -> int | web.StreamResponse:
        """Take over a session whose owner is gone; a replica that wins the race to it owns it
        from then on, and this request goes there."""
        if await self.store.claim(record.id, expected_owner=record.owner, owner=self.address):
            log.info("session_adopted", session=record.id[:8], previous=record.owner)
            self.metrics.sessions_adopted.labels(STREAMABLE).inc()
            self._pin(record, target, owned=True)
            return target
        winner = await self.store.load(record.id)
        if winner is not None and winner.owner not in ("", self.address):
            answer = await self._forward(request, winner.owner, body)
            if answer is not None:
                return answer
        # Nobody reachable holds it (or this replica does after all): served here.
        owned = winner is not None and winner.owner == self.address
        self._pin(winner or record, target, owned=owned)
        return target

    @staticmethod
    def _may_use(record: SessionRecord, identity: Identity, kind: str) -> bool:
        """Whether the caller opened the stored session (a mismatch is logged as for a session
        held here)."""
        return record.kind == kind and is_session_owner(
            record.subject, identity, session_id=record.id, transport=kind
        )

    def _pin(self, record: SessionRecord, target: int, *, owned: bool) -> None:
        """Serve a stored session here; one this replica owns takes over the subscriptions
        its record keeps."""
        self._pins[record.id] = _Pin(target, record.subject, owned)
        self._pin_used[record.id] = time.monotonic()
        self._touched[record.id] = time.monotonic()
        kept = subscriptions_of(record.state) if owned else None
        if kept is not None:
            self._subscriptions.restore(record.id, kept.holder, set(kept.uris), kept.level)

    async def _forward(
        self, request: web.Request, owner: str, body: bytes | None
    ) -> web.StreamResponse | None:
        """The owner's answer to `request`; None when the owner cannot be reached."""
        return await self.forwarder.forward_to_owner(
            request, owner=owner, body=body, address=self.address
        )

    def _touch(self, session_id: str) -> None:
        """Restart the session's idle timeout in the store, now and then, in the background."""
        now = time.monotonic()
        interval = min(TOUCH_INTERVAL, self.settings.session_idle_timeout / 4)
        if now - self._touched.get(session_id, float("-inf")) < interval:
            return
        self._touched[session_id] = now
        self._spawn(self._load_quietly(session_id))

    async def _load_quietly(self, session_id: str) -> None:
        try:
            await self.store.load(session_id)
        except SessionStoreUnavailable as exc:
            self._store_failed("load", exc)

    async def _save_subscriptions(self, session_id: str) -> None:
        """Keep what a session this replica owns subscribed to in its record, for a replica
        that adopts it; the session goes on without when the store cannot be reached."""
        pin = self._pins.get(session_id)
        if pin is None or not pin.owned:
            return
        held = self._subscriptions.held(session_id)
        state = (
            subscriptions_state(None, [], None)
            if held is None
            else subscriptions_state(held.owner, sorted(held.uris), held.level)
        )
        try:
            await self.store.set_state(session_id, state)
        except SessionStoreUnavailable as exc:
            self._store_failed("set_state", exc)
        except RecordError as exc:
            log.warning("session_state_not_kept", session=session_id[:8], error=str(exc))

    async def _delete_record(self, session_id: str) -> None:
        try:
            await self.store.delete(session_id)
        except SessionStoreUnavailable as exc:
            self._store_failed("delete", exc)

    def _store_failed(self, operation: str, exc: SessionStoreUnavailable) -> None:
        log.warning("session_store_unavailable", operation=operation, error=str(exc))
        self.metrics.session_store_errors.labels(operation).inc()

    def _store_unavailable(
        self, exc: SessionStoreUnavailable, operation: str, started: float, request_id: Any = None
    ) -> web.Response:
        self._store_failed(operation, exc)
        return self.reject(503, STORE_UNAVAILABLE, str(exc), started, request_id=request_id)

    def _unknown_session(self, started: float, request_id: Any = None) -> web.Response:
        return self.reject(
            404, INVALID_REQUEST, "Session not found", started, request_id=request_id
        )

    async def _open(
        self,
        target: int,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        path: str | None = None,
    ) -> Response | None:
        try:
            return await self.client.request(
                method, self._targets[target], headers=headers, body=body, path=path
            )
        except UpstreamError as exc:
            log.warning("backend_request_failed", target=self.targets[target], error=str(exc))
            self._reachable[target] = False
            return None

    async def _relay(
        self,
        request: web.Request,
        method: str,
        target: int,
        headers: dict[str, str],
        body: bytes | None,
        started: float,
        *,
        label: str,
    ) -> web.StreamResponse:
        upstream = await self._open(target, method, headers, body)
        if upstream is None:
            return self._unreachable_target(target, started)
        try:
            response = await self._stream_back(request, upstream, target)
        finally:
            upstream.close()
        self.metrics.observe(
            label,
            "ok" if response.status < 400 else str(response.status),
            time.perf_counter() - started,
        )
        return response

    async def _answer(
        self,
        request: web.Request,
        reply: Reply,
        started: float,
        method: str,
        target: int,
        request_id: Any = None,
    ) -> web.StreamResponse:
        upstream = reply.passthrough
        if reply.message is not None and isinstance(upstream, _Streamed):
            self.metrics.observe(
                method, "error" if "error" in reply.message else "ok", time.perf_counter() - started
            )
            return await upstream.finish(request, reply.message)
        if reply.message is not None:
            headers = {}
            if isinstance(upstream, _Headers):
                headers = upstream.headers
                refused = await self._learn_session(
                    headers,
                    target,
                    identity_of(request),
                    era=_negotiated(reply.message),
                    request_id=request_id,
                )
                if refused is not None:
                    return json_body(refused, status=503)
            status = "error" if "error" in reply.message else "ok"
            self.metrics.observe(method, status, time.perf_counter() - started)
            return json_body(reply.message, status=reply.status, headers=headers)
        assert isinstance(upstream, Response)
        response = await self._stream_back(request, upstream, target, request_id=request_id)
        status = "ok" if upstream.status < 400 else str(upstream.status)
        self.metrics.observe(method, status, time.perf_counter() - started)
        return response

    async def _relay_until_answer(
        self, request: web.Request, upstream: Response, request_id: Any, target: int
    ) -> Reply:
        """Relay an upstream SSE answer event by event until the event that carries the
        answer, which is held back for the steps to rewrite (`_Streamed.finish` writes it):
        only that one message is ever read whole."""
        headers = _response_headers(upstream)
        refused = await self._learn_session(
            upstream.headers, target, identity_of(request), request_id=request_id
        )
        if refused is not None:
            upstream.close()
            return Reply(refused, status=503)
        streamed = _Streamed({**headers, **SSE_HEADERS}, upstream.status)
        parser = EventParser()
        try:
            async for chunk in upstream.chunks():
                for event in parser.feed(chunk):
                    answer = _answer_in(event, request_id)
                    if answer is not None:
                        streamed.event_id = event.id
                        return Reply(answer, status=upstream.status, passthrough=streamed)
                    response = await streamed.open(request)
                    await response.write(event.raw)
        except UpstreamError:
            pass
        finally:
            upstream.close()
        answer = _unreachable(request_id, self.targets[target])
        if streamed.response is None:
            return Reply(answer, status=502)
        return Reply(answer, passthrough=streamed)

    async def _learn_session(
        self,
        headers: Mapping[str, str],
        target: int,
        identity: Identity,
        *,
        era: str = "",
        request_id: Any = None,
    ) -> Json | None:
        """Keep a session the upstream announced, pinned to its target and to the caller it
        answered, in the store for the other replicas; the error to answer (on HTTP 503) when
        the store cannot keep it (the upstream's session is then ended: nobody could use it)."""
        session_id = headers.get("mcp-session-id") or headers.get("Mcp-Session-Id")
        if not session_id or session_id in self._pins:
            return None
        record = SessionRecord(
            session_id,
            STREAMABLE,
            self.address,
            identity.subject,
            era,
            time.time(),
            streamable_state(self.targets[target]),
        )
        try:
            await self.store.create(record, idle_timeout=self.settings.session_idle_timeout)
        except SessionStoreUnavailable as exc:
            self._spawn(self._end_upstream_session(target, session_id))
            self._store_failed("create", exc)
            return error_response(request_id, STORE_UNAVAILABLE, str(exc))
        except RecordError as exc:
            # An id no record can hold: served by this replica alone.
            log.warning("session_not_shared", session=session_id[:8], error=str(exc))
        self._pin(record, target, owned=True)
        return None

    async def _end_upstream_session(self, target: int, session_id: str) -> None:
        upstream = await self._open(target, "DELETE", {"Mcp-Session-Id": session_id}, None)
        if upstream is not None:
            upstream.close()

    async def _stream_back(
        self,
        request: web.Request,
        upstream: Response,
        target: int,
        *,
        request_id: Any = None,
    ) -> web.StreamResponse:
        headers = _response_headers(upstream)
        refused = await self._learn_session(
            upstream.headers, target, identity_of(request), request_id=request_id
        )
        if refused is not None:
            return json_body(refused, status=503)
        if upstream.content_type != "text/event-stream":
            try:
                data = await upstream.read()
            except UpstreamError as exc:
                return rpc_error(502, INTERNAL_ERROR, f"The MCP server's answer broke off: {exc}")
            return web.Response(status=upstream.status, body=data, headers=headers)
        sse_headers = {**headers, **SSE_HEADERS}
        try:
            first = await upstream.first()
        except UpstreamError as exc:
            return rpc_error(502, INTERNAL_ERROR, f"The MCP server's answer broke off: {exc}")
        if upstream.at_end or (request_id is not None and _carries_answer(first, request_id)):
            # The request's answer is in: the server only has the stream's end left to send.
            # Answer in one write now and read that end in the background, which keeps the
            # upstream connection reusable.
            self._drain_later(upstream)
            return web.Response(status=upstream.status, body=first, headers=sse_headers)
        response = web.StreamResponse(status=upstream.status, headers=sse_headers)
        await response.prepare(request)
        request[STREAMING_KEY] = response
        self._relays.add(upstream)
        try:
            async for chunk in upstream.chunks():
                await response.write(chunk)
        except UpstreamError:
            # The upstream stream broke, or the drain closed it: end the client's stream.
            return response
        finally:
            self._relays.discard(upstream)
        await response.write_eof()
        return response

    def _unreachable_target(self, target: int, started: float) -> web.Response:
        message = f"The MCP server at {self.targets[target]} is unreachable"
        return self.reject(502, INTERNAL_ERROR, message, started)

    def _drain_later(self, upstream: Response) -> None:
        # The first piece was answered already: what is left is read and dropped, which puts
        # the connection back in the pool.
        self._draining.add(upstream)

        async def drain() -> None:
            try:
                async for _ in upstream.chunks():
                    pass
            except UpstreamError:
                upstream.close()
            finally:
                self._draining.discard(upstream)

        self._spawn(drain())

    @staticmethod
    def _modern_mismatch(request: web.Request, body: Json) -> eras.LadderRejection | None:
        duplicated = eras.duplicated_routing_header(request.headers.keys())
        if duplicated is not None:
            return eras.LadderRejection(HEADER_MISMATCH, f"{duplicated} appears more than once")
        return eras.check_modern_headers(body, {k.lower(): v for k, v in request.headers.items()})

    # ---- legacy HTTP+SSE ----

    async def sse(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        refused = self._refuse_session(request, None)
        if refused is not None:
            return refused
        target = self._pick()
        upstream = await self._open(target, "GET", {"Accept": "text/event-stream"}, None)
        if upstream is None:
            return self._unreachable_target(target, started)
        parser = EventParser()
        try:
            endpoint, early = await _first_endpoint(upstream, parser)
            if endpoint is None:
                return self.reject(
                    502, INTERNAL_ERROR, "The MCP server did not send its endpoint event", started
                )
            session = _SseSession(
                secrets.token_urlsafe(24),
                target,
                urljoin(self.targets[target], endpoint),
                self._new_outbox(request),
                identity_of(request).subject,
            )
            record = SessionRecord(
                session.id,
                SSE,
                self.address,
                session.subject,
                "",
                time.time(),
                sse_state(self.targets[target], session.messages_url),
            )
            try:
                await self.store.create(record, idle_timeout=self.settings.session_idle_timeout)
            except SessionStoreUnavailable as exc:
                return self._store_unavailable(exc, "create", started)
            self._sse[session.id] = session
            self.metrics.sessions.set(len(self._sse))
            pump = asyncio.create_task(
                self._pump_events(
                    upstream,
                    parser,
                    session.outbox,
                    early,
                    lambda event: self._relayed(event.event, event.data, session),
                )
            )
            response = web.StreamResponse(status=200, headers=SSE_HEADERS)
            await response.prepare(request)
            await response.write(
                format_event(
                    endpoint_url(request, self.settings, session.id).encode(), event="endpoint"
                )
            )
            try:
                await self._write_outbox(response, session.outbox)
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                for future in session.awaited.values():
                    future.cancel()  # their answers have nowhere to go now
                self._sse.pop(session.id, None)
                self._subscriptions.forget(session.id)
                self.metrics.sessions.set(len(self._sse))
                # The session was its stream: over for every replica.
                await self._delete_record(session.id)
            return response
        finally:
            upstream.close()

    def _relayed(self, event: str, data: str, session: _SseSession) -> bool:
        """Whether an upstream event goes to the client: not an answer a step awaits."""
        if session.awaited and event == "message":
            parsed = parse_message(data)
            if isinstance(parsed, Message) and parsed.kind is Kind.RESPONSE:
                future = session.awaited.pop(parsed.id, None)
                if future is not None and not future.done():
                    future.set_result(parsed.body)
                    if parsed.id not in session.passing:
                        return False
                    session.passing.discard(parsed.id)
        return True

    async def messages(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        session_id = request.query.get("session_id") or request.query.get("sessionId")
        if not session_id:
            return rpc_error(400, INVALID_REQUEST, "Bad Request: missing session_id")
        identity = identity_of(request)
        session = self._sse.get(session_id)
        if session is None:
            return await self._message_elsewhere(request, session_id, identity, started)
        if not is_session_owner(session.subject, identity, session_id=session.id, transport=SSE):
            return rpc_error(404, INVALID_REQUEST, "Session not found")
        intake = await read_message(
            request, limit=self.settings.max_body_bytes, modern=False, check_accept=False
        )
        if isinstance(intake, Refusal):
            return self.refuse(intake, started)
        parsed = intake.message
        headers = {"Content-Type": "application/json"}
        if parsed.kind is Kind.RESPONSE:
            return await self._post_message(
                session, headers, encode(response_envelope(parsed)), started, "response"
            )
        if parsed.kind is Kind.NOTIFICATION:
            posted: list[web.Response] = []

            async def notify(call: McpCall) -> Reply:
                posted.append(
                    await self._post_message(
                        session, headers, encode(call.message), started, call.method
                    )
                )
                return Reply(None, status=202)

            notified = await self.pipeline.bind(notify)(
                McpCall(parsed.body, identity, "legacy", session_id)
            )
            if notified.message is not None or not posted:
                return json_body(notified.message or {}, status=notified.status)
            return posted[0]

        async def terminal(call: McpCall) -> Reply:
            refusal = self._over_subscriptions(session.id, call)
            if refusal is not None:
                return Reply(refusal)
            data = encode(call.message)
            # Every answer is awaited, so that one the server never sends times out; only
            # those a step wants to see are held back from the client.
            future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
            session.awaited[call.id] = future
            upstream = await self._open_url(session, headers, data)
            if upstream is None or upstream.status >= 400:
                session.awaited.pop(call.id, None)
                status = 502 if upstream is None else upstream.status
                if upstream is not None:
                    upstream.close()
                return Reply(_unreachable(call.id, session.messages_url), status=status)
            with contextlib.suppress(UpstreamError):
                await upstream.read()
            if not call.want_result:
                # Not awaited here: the server may ask the client something first (a
                # subscription that samples), and the client posts its answer only once this
                # POST is answered.
                session.passing.add(call.id)
                self._spawn(self._enforce_deadline(session, call, future))
                return Reply(None, status=202)
            return Reply(await self._answer_in_time(session, call.id, future))

        call = McpCall(parsed.body, identity, "legacy", session_id)
        self._inflight += 1
        try:
            reply = await self.pipeline.bind(terminal)(call)
        finally:
            self._inflight -= 1
        if reply.message is not None and reply.status < 300:
            session.outbox.push({"raw": format_event(encode(reply.message))})
            self.metrics.observe(
                parsed.method,
                "error" if "error" in reply.message else "ok",
                time.perf_counter() - started,
            )
            return web.Response(status=202, text="Accepted")
        if reply.message is not None:
            return json_body(reply.message, status=reply.status)
        self.metrics.observe(parsed.method, "ok", time.perf_counter() - started)
        return web.Response(status=202, text="Accepted")

    async def _message_elsewhere(
        self, request: web.Request, session_id: str, identity: Identity, started: float
    ) -> web.StreamResponse:
        """A POST for an HTTP+SSE session this replica does not hold: sent to the replica
        whose stream it is; once that one is gone, the session is (404)."""
        if is_forwarded(request):
            return rpc_error(404, INVALID_REQUEST, "Session not found")
        try:
            record = await self.store.load(session_id)
            if record is None or not self._may_use(record, identity, SSE):
                return rpc_error(404, INVALID_REQUEST, "Session not found")
            # Only about a session the caller may use is the store asked whether its owner lives.
            alive = record.owner not in ("", self.address) and await self.store.is_alive(
                record.owner
            )
        except SessionStoreUnavailable as exc:
            return self._store_unavailable(exc, "load", started)
        decision = route(
            record,
            identity,
            kind=SSE,
            own=self.address,
            needs_owner=True,
            owner_alive=alive,
            forwarded=False,
        )
        if decision is not Route.FORWARD:
            return rpc_error(404, INVALID_REQUEST, "Session not found")
        try:
            body = await read_body(request, self.settings.max_body_bytes)
        except BodyTooLarge:
            limit = self.settings.max_body_bytes
            return self.reject(413, INVALID_REQUEST, f"Request body exceeds {limit} bytes", started)
        answer = await self._forward(request, record.owner, body)
        return answer or rpc_error(404, INVALID_REQUEST, "Session not found")

    async def _answer_in_time(
        self, session: _SseSession, request_id: Any, future: asyncio.Future[Json]
    ) -> Json:
        """The upstream's answer, or past the request timeout a JSON-RPC error after telling
        the server (`notifications/cancelled`) that nobody waits for it."""
        timeout = self.settings.limits.request_timeout
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            session.awaited.pop(request_id, None)
            log.info("request_timed_out", session=session.id[:8])
            cancel = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "the request timed out"},
            }
            upstream = await self._open_url(
                session, {"Content-Type": "application/json"}, encode(cancel)
            )
            if upstream is not None:
                upstream.close()
            return timeout_error(request_id, timeout)

    async def _enforce_deadline(
        self, session: _SseSession, call: McpCall, future: asyncio.Future[Json]
    ) -> None:
        """Answer a passing request with the timeout error if its answer does not come; note
        what an accepted one holds (`TRACKED`)."""
        request_id = call.id
        answer = await self._answer_in_time(session, request_id, future)
        if call.method in TRACKED:
            self._track(session.id, call, answer)
        if request_id not in session.passing:
            return  # the server's own answer went out
        session.passing.discard(request_id)
        if not session.outbox.push({"raw": format_event(encode(answer))}):
            self.metrics.dropped.inc()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _post_message(
        self,
        session: _SseSession,
        headers: dict[str, str],
        body: bytes,
        started: float,
        method: str,
    ) -> web.Response:
        upstream = await self._open_url(session, headers, body)
        if upstream is None:
            return self._unreachable_target(session.target, started)
        try:
            data = await upstream.read()
        except UpstreamError:
            return self._unreachable_target(session.target, started)
        content_type = upstream.headers.get("content-type", "text/plain")
        return web.Response(
            status=upstream.status, body=data, headers={"Content-Type": content_type}
        )

    async def _open_url(
        self, session: _SseSession, headers: dict[str, str], body: bytes
    ) -> Response | None:
        """A POST to the session's message URL, on the target that owns the session."""
        parts = urlsplit(session.messages_url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return await self._open(session.target, "POST", headers, body, path=path)


@dataclass(eq=False, slots=True)
class _Listen:
    """A 2026-07-28 `subscriptions/listen` stream relayed from the server: whose it is, the
    URIs it subscribed (authorised when it opened) and the mailbox its client's stream reads."""

    id: Any
    owner: Identity
    uris: list[str]
    upstream: Response
    outbox: Mailbox


def _listened_uris(params: Json) -> list[str]:
    """The resource URIs a `subscriptions/listen` asks for."""
    wanted = params.get("notifications")
    uris = wanted.get("resourceSubscriptions") if isinstance(wanted, dict) else None
    return [uri for uri in uris if isinstance(uri, str)] if isinstance(uris, list) else []


class _Streamed:
    """An upstream SSE answer being relayed: the client's stream once an event has gone out
    (None while nothing has), and the answer's event id, for the rewritten answer to keep."""

    __slots__ = ("event_id", "headers", "response", "status")

    def __init__(self, headers: dict[str, str], status: int) -> None:
        self.headers = headers
        self.status = status
        self.response: web.StreamResponse | None = None
        self.event_id: str | None = None

    async def open(self, request: web.Request) -> web.StreamResponse:
        if self.response is None:
            response = web.StreamResponse(status=self.status, headers=self.headers)
            await response.prepare(request)
            request[STREAMING_KEY] = response
            self.response = response
        return self.response

    async def finish(self, request: web.Request, message: Json) -> web.StreamResponse:
        """The (rewritten) answer as the stream's last event."""
        event = format_event(encode(message), event_id=self.event_id)
        if self.response is None:
            return web.Response(status=self.status, body=event, headers=self.headers)
        await self.response.write(event)
        await self.response.write_eof()
        return self.response


class _Headers:
    """The upstream response headers kept for a reply that was read whole."""

    __slots__ = ("headers",)

    def __init__(self, upstream: Response) -> None:
        session = upstream.headers.get("mcp-session-id")
        self.headers = {"Mcp-Session-Id": session} if session else {}


def _negotiated(answer: Json) -> str:
    """The protocol version an `initialize` answer settled on ("" for any other answer)."""
    result = answer.get("result") if isinstance(answer, dict) else None
    version = result.get("protocolVersion") if isinstance(result, dict) else None
    return version if isinstance(version, str) else ""


def _raw_size(item: Json) -> int:
    raw: bytes = item["raw"]
    return len(raw)


def _era(request: web.Request) -> Era:
    version = request.headers.get("MCP-Protocol-Version")
    return "modern" if version is not None and version not in eras.HANDSHAKE_VERSIONS else "legacy"


def _carries_answer(chunk: bytes, request_id: Any) -> bool:
    """Whether complete SSE events in `chunk` include the JSON-RPC answer to `request_id`."""
    for event in EventParser().feed(chunk):
        if event.event != "message":
            continue
        parsed = parse_message(event.data)
        if isinstance(parsed, Message) and parsed.kind is Kind.RESPONSE and parsed.id == request_id:
            return True
    return False


def _unreachable(request_id: Any, target: str) -> Json:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": INTERNAL_ERROR, "message": f"The MCP server at {target} did not answer"},
    }


async def _first_endpoint(
    upstream: Response, parser: EventParser
) -> tuple[str | None, list[Event]]:
    """Read the upstream stream up to its first event, which must be `endpoint` (spec);
    also return the events that arrived in the same chunks after it."""
    async with asyncio.timeout(30.0):
        async for chunk in upstream.chunks():
            events = parser.feed(chunk)
            if events:
                first = events[0]
                endpoint = first.data.strip() if first.event == "endpoint" else None
                return endpoint, events[1:]
    return None, []


def _response_headers(upstream: Response) -> dict[str, str]:
    """The upstream response headers passed back to the client, as they are written."""
    return {
        FORWARDED_RESPONSE_HEADERS[name]: value
        for name, value in upstream.headers.items()
        if name in FORWARDED_RESPONSE_HEADERS
    }


def _answer_in(event: Event, request_id: Any) -> Json | None:
    """The response to `request_id` when `event` carries it."""
    parsed = parse_message(event.data)
    if isinstance(parsed, Message) and parsed.kind is Kind.RESPONSE and parsed.id == request_id:
        return parsed.body
    return None


async def _read_answer(upstream: Response, request_id: Any) -> Json | None:
    """The JSON-RPC answer in a whole upstream response (JSON body or SSE stream)."""
    try:
        if upstream.content_type == "text/event-stream":
            parser = EventParser()
            async for chunk in upstream.chunks():
                for event in parser.feed(chunk):
                    found = _answer_in(event, request_id)
                    if found is not None:
                        return found
            return None
        answer = parse_message(await upstream.read())
        return answer.body if isinstance(answer, Message) else None
    except UpstreamError:
        return None
    finally:
        upstream.close()
