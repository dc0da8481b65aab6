"""The aggregator: one MCP server, in process, made of a group's backends.

The proxy's front end (sessions, both eras, legacy SSE, authentication, the pipeline with the
tool filter, Cedar and audit) is the stdio bridge's: the aggregator is the "process" the bridge
talks to, over an in-memory `StdioChannel` (`open_channel`). So the bridge multiplexes every
client over one aggregator session, maps client ids and progress tokens, routes the backends'
elicitation, sampling and roots requests to a client, and fans list changes out; the
middleware sees the aggregated names.

Behind it, each backend has the aggregator's own `BackendSession` (health checks, looking
names up, the calls of modern-era clients, which have no session) and one per legacy client
session that used it: the bridge tells whose each request is (`bind`: its `caller_of`, a side
channel, so the lines stay what the client sent and the pipeline checked); the session opens
on the client's first listing or call that needs that backend and closes (DELETE) when the
client session ends (`on_detach`: DELETE, expiry, eviction). Every upstream request is made
for the caller it serves (`OUTGOING_CALLER`), so a `tokenExchange` backend gets each caller's
exchanged token, and a modern-era request to it gets a session of its own. Lists are fetched
from every healthy backend and merged by `protocol.aggregation` (tools and prompts under the
configured strategy; resources and templates by URI, first in priority order); a call goes to
the backend that owns the exposed name, under the name that backend knows. Progress
notifications pass unchanged (the bridge's tokens are already unique), cancellations are
mapped to the backend's request id, the backends' own requests get an aggregator id
(`agg-<n>`), are related to the call in flight on the client's session that sent them
(`related`), and their answers go back under the backend's id.

A backend that fails a health check or a request is unhealthy: left out of lists, its names
answered with an error naming it, until a check succeeds again; each change of health sends
`list_changed` for tools, prompts and resources. A caller it refuses (401/403, or a token that
cannot be exchanged) is answered -32003 and leaves its health alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from moorage_api.runconfig import RunConfigAggregate, RunConfigAggregateBackend
from moorage_proxyrunner.backends.aggregate.report import BackendHealth, Report, build_report
from moorage_proxyrunner.backends.aggregate.session import BackendSession, BackendUnavailable
from moorage_proxyrunner.backends.remote.client import OUTGOING_CALLER, OutgoingRefused
from moorage_proxyrunner.backends.reverse.upstream import Client, UpstreamError
from moorage_proxyrunner.backends.stdio.bridge import StdioBridge
from moorage_proxyrunner.backends.stdio.channels import ChannelClosed, StdioChannel
from moorage_proxyrunner.backends.stdio.peers import Peer
from moorage_proxyrunner.config.limits import Limits
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.config.toolpolicy import ToolPolicy, build_tool_policy
from moorage_proxyrunner.protocol import eras
from moorage_proxyrunner.protocol.aggregation import Merge, Owner, Rules, merge_names
from moorage_proxyrunner.protocol.jsonrpc import (
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    Json,
    RequestId,
    error_response,
    result_response,
)
from moorage_proxyrunner.protocol.pipeline import Identity
from moorage_proxyrunner.sessionstore.forwarding import Forwarder
from moorage_proxyrunner.sessionstore.opening import memory_store
from moorage_proxyrunner.sessionstore.store import SessionStore

log = structlog.get_logger(__name__)

LISTS: Final[Mapping[str, tuple[str, str, str]]] = {
    "tools": ("tools/list", "tools", "name"),
    "prompts": ("prompts/list", "prompts", "name"),
    "resources": ("resources/list", "resources", "uri"),
    "resourceTemplates": ("resources/templates/list", "resourceTemplates", "uriTemplate"),
}
"""Each merged list: the method that fetches it, the result's member, the key it merges on."""
CAPABILITY_OF: Final = {
    "tools": "tools",
    "prompts": "prompts",
    "resources": "resources",
    "resourceTemplates": "resources",
}
LIST_CHANGED: Final = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)
CAPABILITIES: Final[Json] = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"listChanged": True, "subscribe": True},
    "logging": {},
    "completions": {},
}
CLIENT_CAPABILITIES: Final[Json] = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {"form": {}, "url": {}},
}
"""What the aggregator declares to backends: the bridge routes all of these to some client."""
MAX_PAGES: Final = 100
Reporter = Callable[[Report], Awaitable[None]]
FAILURES: Final = (BackendUnavailable, UpstreamError, OutgoingRefused, OSError)


def refused_caller(exc: Exception) -> bool:
    """Whether a failure is the caller's (its token could not be exchanged, or the backend
    refused its credentials) rather than the backend's: it says nothing of the backend's
    health."""
    if isinstance(exc, OutgoingRefused):
        return True
    return isinstance(exc, BackendUnavailable) and exc.status in (401, 403)


@dataclass(frozen=True, slots=True)
class Caller:
    """Whose request of the bridge it is: the client session's key, its era, its identity."""

    key: str
    modern: bool
    identity: Identity | None


@dataclass(slots=True)
class Member:
    """One backend: its configuration, session, health and last lists."""

    config: RunConfigAggregateBackend
    session: BackendSession
    """The aggregator's own session: health checks, listings, modern-era clients' calls."""
    policy: ToolPolicy
    clients: dict[str, BackendSession] = field(default_factory=dict)
    """Each legacy client session's own session with this backend, by the session's key."""
    healthy: bool | None = None
    message: str = "not checked yet"
    checked_at: datetime | None = None
    lists: dict[str, list[Json]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def exchanges(self) -> bool:
        """Whether the backend gets each caller's exchanged token (so every session acts for
        one caller, and the aggregator's own has no credential)."""
        auth = self.config.outgoing_auth
        return auth is not None and auth.token_exchange is not None


class _Channel:
    """The bridge's end of the in-memory channel: lines in, lines out."""

    def __init__(self, aggregator: Aggregator) -> None:
        self._aggregator = aggregator
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def send(self, line: bytes) -> None:
        if self.closed:
            raise ChannelClosed("the aggregator channel is closed")
        self._aggregator.receive(line)

    async def receive(self) -> bytes:
        line = await self.outbox.get()
        if line is None:
            raise ChannelClosed("the aggregator channel is closed")
        return line

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)


class Aggregator:
    """The merged MCP server: answers the bridge, routes to backends, watches their health."""

    def __init__(
        self,
        config: RunConfigAggregate,
        clients: Mapping[str, Client],
        *,
        server_name: str,
        report: Reporter | None = None,
        store: SessionStore | None = None,
        address: str | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        resolution = config.conflict_resolution
        self.rules = Rules(
            resolution.strategy,
            separator=resolution.separator,
            priority=tuple(resolution.priority),
            manual=dict(resolution.manual),
        )
        self.uri_rules = Rules("priority", priority=self.rules.priority)
        self.server_name = server_name
        self.interval = float(config.health_check_interval_seconds)
        self.report = report
        # Client sessions are kept through `store` (shared by the replicas with Redis);
        # `address` is this replica's (default: loopback, one replica).
        self.store: SessionStore = store or memory_store(Limits())
        self.address = address or ProxyRunnerSettings().advertise_address
        self.forwarder = forwarder or Forwarder()
        self.members: dict[str, Member] = {}
        self._clients = clients
        self._timeout = float(config.backend_timeout_seconds)
        for backend in config.backends:
            self.members[backend.name] = Member(
                backend,
                self._new_session(backend),
                build_tool_policy(backend.tools_filter, backend.tools_override),
            )
        self._channel: _Channel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: dict[RequestId, tuple[BackendSession, int]] = {}
        """The bridge's request id → (backend session, the aggregator's id there), for
        cancellations."""
        self._server_requests: dict[str, tuple[BackendSession, RequestId]] = {}
        """`agg-<n>` → (backend session, its request id) of each backend request sent to the
        bridge."""
        self._caller_of: Callable[[RequestId], Peer | None] = lambda _: None
        self._callers: dict[RequestId, Caller] = {}
        """The bridge's request id → whose it is, while it is answered."""
        self._identities: dict[str, Identity | None] = {}
        """Each client session's latest identity, to close its backend sessions as it."""
        self._ids = itertools.count(1)
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._last_report: Report | None = None

    def _new_session(self, backend: RunConfigAggregateBackend) -> BackendSession:
        async def deliver(message: Json) -> None:
            await self._deliver(session, message)

        session = BackendSession(
            backend.name,
            backend.url,
            self._clients[backend.name],
            transport=backend.transport,
            deliver=deliver,
            initialize_params={
                "protocolVersion": eras.LATEST_HANDSHAKE,
                "capabilities": CLIENT_CAPABILITIES,
                "clientInfo": {
                    "name": f"moorage-aggregator/{self.server_name}",
                    "version": "0.1.0",
                },
            },
            timeout=self._timeout,
        )
        return session

    # --- the bridge's side ---

    def bind(self, bridge: StdioBridge) -> None:
        """Follow `bridge`'s client sessions: which one each request comes from, and when
        one ends (its backend sessions are closed then)."""
        self._caller_of = bridge.caller_of
        bridge.on_detach.append(self.client_left)
        bridge.related = self.related

    def related(self, key: RequestId) -> RequestId | None:
        """The bridge's request one of the backends' own requests (`agg-<n>`) belongs to: one in
        flight on the client session's backend session that sent it (the aggregator's own
        session is shared, so a request sent there is the bridge's to attribute)."""
        where = self._server_requests.get(key) if isinstance(key, str) else None
        if where is None:
            return None
        session = where[0]
        if any(session is m.session for m in self.members.values()):
            return None
        return next(
            (request_id for request_id, (s, _) in self._in_flight.items() if s is session),
            None,
        )

    def client_left(self, peer: Peer) -> None:
        """Close the backend sessions of a client session that ended."""
        identity = self._identities.pop(peer.key, None)
        for member in self.members.values():
            session = member.clients.pop(peer.key, None)
            if session is not None:
                self._spawn(_as_caller(identity, session.close()))

    def session_for(self, member: Member, request_id: RequestId) -> BackendSession:
        """The backend session a request of the bridge uses: its client session's own (opened
        on first use), else the aggregator's. A modern-era request is a client of its own that
        ends with it, so it shares the aggregator's unless the backend needs its caller."""
        caller = self._callers.get(request_id)
        if caller is None or (caller.modern and not member.exchanges):
            return member.session
        session = member.clients.get(caller.key)
        if session is None:
            session = member.clients[caller.key] = self._new_session(member.config)
        return session

    async def open_channel(self) -> StdioChannel:
        """A `ChannelFactory`: the bridge's connection to the aggregator (one at a time)."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = _Channel(self)
        return self._channel

    def receive(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        if "method" in message and "id" in message:
            peer = self._caller_of(message["id"])
            if peer is not None:
                identity = peer.caller if isinstance(peer.caller, Identity) else None
                self._callers[message["id"]] = Caller(peer.key, peer.modern, identity)
                self._identities[peer.key] = identity
            self._spawn(self._answer(message))
        elif "method" in message:
            self._spawn(self._on_notification(message))
        elif "id" in message:
            self._spawn(self._on_response(message))

    def emit(self, message: Json) -> None:
        channel = self._channel
        if channel is not None and not channel.closed:
            channel.outbox.put_nowait(json.dumps(message, separators=(",", ":")).encode())

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: Json) -> None:
        request_id = message["id"]
        caller = self._callers.get(request_id)
        OUTGOING_CALLER.set(caller.identity if caller is not None else None)
        try:
            answer = await self.handle(message["method"], message.get("params"), request_id)
        except Exception as exc:  # an answer is owed whatever went wrong
            log.exception("aggregate_request_failed", method=message.get("method"))
            answer = error_response(request_id, INTERNAL_ERROR, f"aggregator error: {exc}")
        finally:
            self._callers.pop(request_id, None)
        self.emit(answer)

    async def handle(self, method: str, params: Any, request_id: RequestId) -> Json:
        """The answer to one request of the bridge."""
        params = params if isinstance(params, dict) else {}
        if method == "initialize":
            version = params.get("protocolVersion")
            return result_response(
                request_id,
                {
                    "protocolVersion": version
                    if isinstance(version, str)
                    else eras.LATEST_HANDSHAKE,
                    "capabilities": CAPABILITIES,
                    "serverInfo": {"name": self.server_name, "version": "0.1.0"},
                },
            )
        if method == "ping":
            return result_response(request_id, {})
        for kind, (list_method, member, _) in LISTS.items():
            if method == list_method:
                items = await self.merged_list(kind, request_id)
                return result_response(request_id, {member: items})
        if method == "logging/setLevel":
            await asyncio.gather(
                *(
                    self._send_quietly(m, self.session_for(m, request_id), method, params)
                    for m in self.members.values()
                )
            )
            return result_response(request_id, {})
        target = await self._route(method, params, request_id)
        if isinstance(target, str):
            return error_response(request_id, INVALID_PARAMS, target)
        owner, forwarded = target
        return await self._forward(owner.backend, method, forwarded, request_id)

    async def _on_notification(self, message: Json) -> None:
        method = message.get("method")
        params = message.get("params")
        if method == "notifications/cancelled" and isinstance(params, dict):
            where = self._in_flight.get(params.get("requestId"))  # type: ignore[arg-type]
            if where is not None:
                session, backend_id = where
                await session.send(
                    {
                        "jsonrpc": "2.0",
                        "method": method,
                        "params": {**params, "requestId": backend_id},
                    }
                )
        elif method == "notifications/roots/list_changed":
            for member in self.members.values():
                for session in (member.session, *member.clients.values()):
                    await session.send({"jsonrpc": "2.0", "method": method})

    async def _on_response(self, message: Json) -> None:
        key = message.get("id")
        where = self._server_requests.pop(key, None) if isinstance(key, str) else None
        if where is None:
            return
        session, backend_id = where
        await session.send({**message, "id": backend_id})

    # --- the backends' side ---

    async def _deliver(self, session: BackendSession, message: Json) -> None:
        """Pass on what `session`'s backend sent that answers none of the aggregator's
        requests."""
        method = message.get("method")
        if "id" in message:
            key = f"agg-{next(self._ids)}"
            self._server_requests[key] = (session, message["id"])
            self.emit({**message, "id": key})
            return
        if method in LIST_CHANGED:
            self.emit({"jsonrpc": "2.0", "method": method})
            return
        if method == "notifications/cancelled":
            params = message.get("params")
            if isinstance(params, dict):
                for key, (owner, original) in list(self._server_requests.items()):
                    if owner is session and original == params.get("requestId"):
                        self.emit({**message, "params": {**params, "requestId": key}})
            return
        self.emit(message)

    async def _forward(
        self, backend: str, method: str, params: Json, request_id: RequestId
    ) -> Json:
        member = self.members[backend]
        if member.healthy is False:
            return error_response(
                request_id,
                INTERNAL_ERROR,
                f"backend {backend!r} is unavailable: {member.message}",
                {"backend": backend},
            )
        session = self.session_for(member, request_id)
        backend_id = session.next_id()
        self._in_flight[request_id] = (session, backend_id)
        try:
            answer = await session.request(method, params, backend_id)
        except FAILURES as exc:
            if refused_caller(exc):
                log.info("aggregate_caller_refused", backend=backend, error=str(exc))
                return error_response(
                    request_id,
                    FORBIDDEN,
                    f"backend {backend!r} refused the caller: {exc}",
                    {"backend": backend},
                )
            await self._mark(member, healthy=False, message=str(exc) or type(exc).__name__)
            return error_response(
                request_id,
                INTERNAL_ERROR,
                f"backend {backend!r} is unavailable: {member.message}",
                {"backend": backend},
            )
        finally:
            self._in_flight.pop(request_id, None)
        return {**answer, "id": request_id}

    async def _send_quietly(
        self, member: Member, session: BackendSession, method: str, params: Json
    ) -> None:
        if member.healthy is False or not session.is_open:
            return
        with contextlib.suppress(*FAILURES):
            await session.request(method, params, session.next_id())

    # --- lists and routing ---

    def merge(self, kind: str, *, with_down: bool = False) -> Merge:
        """The merge of `kind` over the healthy backends' last lists (`with_down`: and the
        last lists of those down, to tell a caller whose backend its name is)."""
        lists = {
            m.name: m.lists.get(kind, [])
            for m in self.members.values()
            if with_down or m.healthy is not False
        }
        return self._merge_of(kind, lists)

    def _merge_of(self, kind: str, lists: Mapping[str, list[Json]]) -> Merge:
        key = LISTS[kind][2]
        names = {
            backend: [item[key] for item in items if isinstance(item.get(key), str)]
            for backend, items in lists.items()
        }
        rules = self.rules if kind in ("tools", "prompts") else self.uri_rules
        return merge_names(names, rules)

    async def merged_list(self, kind: str, request_id: RequestId | None = None) -> list[Json]:
        """`kind` from every healthy backend, fetched now (in the sessions of the client whose
        request `request_id` is), merged, under the exposed names. The answer is made of what
        this fetch got, not of the lists another client's fetch may have left meanwhile."""
        fetched = await asyncio.gather(
            *(self.refresh(m, kind, request_id) for m in self.members.values())
        )
        lists = {
            m.name: items
            for m, items in zip(self.members.values(), fetched, strict=True)
            if items is not None and m.healthy is not False
        }
        key = LISTS[kind][2]
        items: list[Json] = []
        for exposed, owner in self._merge_of(kind, lists).exposed.items():
            item = next((i for i in lists[owner.backend] if i.get(key) == owner.name), None)
            if item is not None:
                items.append({**item, key: exposed} if exposed != owner.name else item)
        return items

    async def refresh(
        self, member: Member, kind: str, request_id: RequestId | None = None
    ) -> list[Json] | None:
        """Fetch `kind` from `member` (every page) when it is healthy and serves it, in the
        session `request_id`'s client uses; what it got (None: nothing, the backend is down or
        refused the caller)."""
        if member.healthy is False:
            return None
        session = member.session if request_id is None else self.session_for(member, request_id)
        list_method, result_member, _ = LISTS[kind]
        items: list[Json] = []
        try:
            server = await session.open()
            capabilities = server.get("capabilities")
            if not isinstance(capabilities, dict) or CAPABILITY_OF[kind] not in capabilities:
                member.lists[kind] = []
                return []
            cursor: Any = None
            for _ in range(MAX_PAGES):
                params = {"cursor": cursor} if cursor is not None else {}
                answer = await session.request(list_method, params, session.next_id())
                result = answer.get("result")
                if not isinstance(result, dict):
                    break
                page = result.get(result_member)
                if isinstance(page, list):
                    items.extend(item for item in page if isinstance(item, dict))
                cursor = result.get("nextCursor")
                if not cursor:
                    break
        except FAILURES as exc:
            if not refused_caller(exc):
                await self._mark(member, healthy=False, message=str(exc) or type(exc).__name__)
            return None
        if kind == "tools":
            items = member.policy.present(items)
        member.lists[kind] = items
        return items

    async def _route(
        self, method: str, params: Json, request_id: RequestId
    ) -> tuple[Owner, Json] | str:
        """The backend owning what `params` names, and the params as it must get them; a
        message saying why not."""
        if method in ("tools/call", "prompts/get"):
            kind = "tools" if method == "tools/call" else "prompts"
            name = params.get("name")
            if not isinstance(name, str):
                return f"{method}: params.name must be a string"
            owner = await self._owner(kind, name, request_id)
            if owner is None:
                return f"Unknown {kind[:-1]}: {name}"
            server_name = owner.name
            if kind == "tools":
                server_name = self.members[owner.backend].policy.server_name(owner.name) or name
            return owner, {**params, "name": server_name}
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            uri = params.get("uri")
            if not isinstance(uri, str):
                return f"{method}: params.uri must be a string"
            owner = await self._uri_owner(uri, request_id)
            return (owner, params) if owner is not None else f"Unknown resource: {uri}"
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
                owner = await self._owner("prompts", str(ref.get("name")), request_id)
                if owner is None:
                    return f"Unknown prompt: {ref.get('name')}"
                return owner, {**params, "ref": {**ref, "name": owner.name}}
            if isinstance(ref, dict) and ref.get("type") == "ref/resource":
                owner = await self._uri_owner(str(ref.get("uri")), request_id)
                if owner is None:
                    return f"Unknown resource: {ref.get('uri')}"
                return owner, params
            return "completion/complete: params.ref must name a prompt or a resource"
        return f"Method not found: {method}"

    async def _owner(self, kind: str, name: str, request_id: RequestId) -> Owner | None:
        owner = self.merge(kind).owner_of(name)
        if owner is None:
            # Not listed yet (a client may call without listing): look again, once.
            # Looked up in the aggregator's own sessions, unless only the caller's can list.
            await asyncio.gather(
                *(
                    self.refresh(m, kind, request_id if m.exchanges else None)
                    for m in self.members.values()
                )
            )
            owner = self.merge(kind).owner_of(name)
        if owner is None:
            # A backend that is down keeps its last lists, so its names get an error naming it.
            owner = self.merge(kind, with_down=True).owner_of(name)
        return owner

    async def _uri_owner(self, uri: str, request_id: RequestId) -> Owner | None:
        owner = await self._owner("resources", uri, request_id)
        if owner is not None:
            return owner
        templates = self.merge("resourceTemplates")
        for template, candidate in templates.exposed.items():
            if uri.startswith(template.split("{", 1)[0]):
                return Owner(candidate.backend, uri)
        return None

    # --- health ---

    async def check(self, member: Member) -> None:
        """Open or ping `member`, then refresh its lists; mark its health. A backend that gets
        each caller's exchanged token and refuses the aggregator's own session is up."""
        session = member.session
        try:
            if session.is_open:
                answer = await session.request("ping", None, session.next_id())
                if "error" in answer:
                    raise BackendUnavailable(f"ping was refused: {answer['error']}")
            else:
                await session.open()
        except FAILURES as exc:
            await session.reset()
            if member.exchanges and refused_caller(exc):
                # It answered, and wants a caller: the aggregator's own session has none to
                # exchange, so the lists are those its clients' sessions fetched.
                await self._mark(member, healthy=True, message="", was=member.healthy)
                return
            await self._mark(member, healthy=False, message=str(exc) or type(exc).__name__)
            return
        was = member.healthy
        member.healthy = True
        for kind in LISTS:
            await self.refresh(member, kind)
        if member.healthy:
            await self._mark(member, healthy=True, message="", was=was)
            self._listen(member)

    async def _mark(
        self, member: Member, *, healthy: bool, message: str, was: bool | None = None
    ) -> None:
        before = member.healthy if was is None else was
        member.healthy = healthy
        member.message = message
        member.checked_at = datetime.now(UTC)
        if not healthy:
            listener = self._listeners.pop(member.name, None)
            if listener is not None:
                listener.cancel()
            await member.session.reset()
            # The clients' sessions are opened again on their next use.
            for session in member.clients.values():
                await session.reset()
        if before != healthy:
            log.info(
                "aggregate_backend_health", backend=member.name, healthy=healthy, message=message
            )
            if before is not None or not healthy:
                for method in LIST_CHANGED:
                    self.emit({"jsonrpc": "2.0", "method": method})

    def _listen(self, member: Member) -> None:
        """Follow the backend's own stream of list changes while it is healthy."""
        if member.name in self._listeners:
            return

        async def listen() -> None:
            with contextlib.suppress(*FAILURES):
                await member.session.listen()

        task = asyncio.ensure_future(listen())
        self._listeners[member.name] = task
        task.add_done_callback(lambda _: self._listeners.pop(member.name, None))

    def build_report(self) -> Report:
        healths = [
            BackendHealth(
                name=m.name,
                healthy=m.healthy,
                tool_count=len(m.lists.get("tools", [])) if m.healthy else 0,
                message=m.message,
                checked_at=m.checked_at,
            )
            for m in self.members.values()
        ]
        return build_report(healths, {kind: self.merge(kind) for kind in LISTS})

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(m) for m in self.members.values()))
        report = self.build_report()
        if self.report is not None and not report.same_as(self._last_report):
            try:
                await self.report(report)
            except Exception as exc:  # retried at the next check
                log.warning("aggregate_report_failed", error=str(exc))
                return
        self._last_report = report

    async def run_forever(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        for task in [*self._tasks, *self._listeners.values()]:
            task.cancel()
        await asyncio.gather(
            *(
                session.close()
                for m in self.members.values()
                for session in (m.session, *m.clients.values())
            )
        )
        if self._channel is not None:
            await self._channel.close()


async def _as_caller(identity: Identity | None, work: Awaitable[None]) -> None:
    """`work` with its upstream requests made for `identity` (its own task, so the setting
    ends with it)."""
    OUTGOING_CALLER.set(identity)
    await work
