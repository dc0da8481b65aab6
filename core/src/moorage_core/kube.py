"""The Kubernetes API client every Moorage component uses.

Credentials (kubeconfig files, exec plugins, in-cluster service-account tokens with rotation) are
loaded by `moorage_core.kubeconfigs`, without `kubernetes_asyncio`: importing that package costs
~80 MiB of memory. This is the only module that may import `kubernetes_asyncio`, and it does so
lazily, only to load a kubeconfig whose user needs a legacy `auth-provider` plugin. Requests go
over one aiohttp session as raw JSON: we keep objects as plain dicts (cheaper to cache and compare
than generated model classes), stream watches without a line-size limit of the HTTP library, and
open websockets (`pods/attach`) with the same credentials.

Every failure leaves here as a `moorage_core.errors.KubeError` subclass; callers never see
`ApiException` or aiohttp errors for apiserver answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import aiohttp

from moorage_core.errors import KubeError, ServerError, error_for_status
from moorage_core.kubeconfigs import (
    Credentials,
    StaticAuth,
    TLSSettings,
    UnsupportedCredentials,
    credentials_from_context,
    in_cluster_credentials,
    is_in_cluster,
    kubeconfig_paths,
    read_kubeconfig,
    resolve_context,
)

JsonObject = dict[str, Any]
RequestObserver = Callable[[str, int, float], None]
"""Called after each request with (verb, HTTP status or 0, seconds)."""

APPLY_PATCH: Final = "application/apply-patch+yaml"
MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"

# A watch line is one whole object; ConfigMaps can approach etcd's 1.5 MiB request limit and a
# list-changed storm can queue many. Anything beyond this is not a Kubernetes object.
_MAX_WATCH_LINE: Final = 64 * 1024 * 1024
_DEFAULT_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """Where a kind lives in the API: enough to build its REST paths."""

    group: str
    """API group; empty for the core group."""
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The REST path of the collection, an object, or an object's subresource.

        `namespace=None` on a namespaced kind means "across all namespaces" (list/watch only).
        """
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [prefix]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


# Kinds Moorage reads or writes. Our own kinds are listed in moorage_api as well; they are
# repeated here so that core does not depend on the models.
NAMESPACES = ResourceKind("", "v1", "namespaces", "Namespace", namespaced=False)
CONFIGMAPS = ResourceKind("", "v1", "configmaps", "ConfigMap")
SECRETS = ResourceKind("", "v1", "secrets", "Secret")
SERVICES = ResourceKind("", "v1", "services", "Service")
SERVICEACCOUNTS = ResourceKind("", "v1", "serviceaccounts", "ServiceAccount")
PODS = ResourceKind("", "v1", "pods", "Pod")
PODTEMPLATES = ResourceKind("", "v1", "podtemplates", "PodTemplate")
NODES = ResourceKind("", "v1", "nodes", "Node", namespaced=False)
EVENTS = ResourceKind("events.k8s.io", "v1", "events", "Event")
CORE_EVENTS = ResourceKind("", "v1", "events", "Event")
"""Events as the core API serves them: the one that filters by `reason` and `involvedObject`."""
DEPLOYMENTS = ResourceKind("apps", "v1", "deployments", "Deployment")
STATEFULSETS = ResourceKind("apps", "v1", "statefulsets", "StatefulSet")
ROLES = ResourceKind("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = ResourceKind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
CLUSTERROLES = ResourceKind(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
)
CLUSTERROLEBINDINGS = ResourceKind(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
NETWORKPOLICIES = ResourceKind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
LEASES = ResourceKind("coordination.k8s.io", "v1", "leases", "Lease")
PODDISRUPTIONBUDGETS = ResourceKind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
CRDS = ResourceKind(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)
VALIDATING_WEBHOOKS = ResourceKind(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    namespaced=False,
)
MCPSERVERS = ResourceKind("moorage.dev", "v1alpha1", "mcpservers", "MCPServer")
MCPTOOLCONFIGS = ResourceKind("moorage.dev", "v1alpha1", "mcptoolconfigs", "MCPToolConfig")
MCPREGISTRIES = ResourceKind("moorage.dev", "v1alpha1", "mcpregistries", "MCPRegistry")
MCPTENANTS = ResourceKind("moorage.dev", "v1alpha1", "mcptenants", "MCPTenant", namespaced=False)
MCPREMOTEPROXIES = ResourceKind("moorage.dev", "v1alpha1", "mcpremoteproxies", "MCPRemoteProxy")
MCPEXTERNALAUTHCONFIGS = ResourceKind(
    "moorage.dev", "v1alpha1", "mcpexternalauthconfigs", "MCPExternalAuthConfig"
)
MCPGROUPS = ResourceKind("moorage.dev", "v1alpha1", "mcpgroups", "MCPGroup")
VIRTUALMCPSERVERS = ResourceKind("moorage.dev", "v1alpha1", "virtualmcpservers", "VirtualMCPServer")


@dataclass(frozen=True, slots=True)
class ListResult:
    """All items of a (possibly paginated) list and the snapshot's resourceVersion."""

    items: list[JsonObject]
    resource_version: str


class WatchEvent:
    """One event of a watch stream: `type` is ADDED, MODIFIED, DELETED or BOOKMARK."""

    __slots__ = ("object", "type")

    def __init__(self, type_: str, obj: JsonObject) -> None:
        self.type = type_
        self.object = obj

    def __repr__(self) -> str:
        meta = self.object.get("metadata") or {}
        return f"WatchEvent({self.type}, {meta.get('namespace')}/{meta.get('name')})"


async def load_configuration(
    *, kubeconfig: str | None = None, context: str | None = None
) -> Credentials:
    """Credentials from an explicit kubeconfig, `$KUBECONFIG`, the in-cluster service account,
    or `~/.kube/config`, in that order."""
    environ = os.environ
    if not kubeconfig and not environ.get("KUBECONFIG") and is_in_cluster(environ=environ):
        return in_cluster_credentials(environ=environ)
    paths = kubeconfig_paths(kubeconfig, environ=environ)
    if not kubeconfig and not environ.get("KUBECONFIG") and not paths[0].exists():
        raise KubeError(
            "no Kubernetes credentials: set KUBECONFIG, pass --kubeconfig, or run inside a cluster"
        )
    config = read_kubeconfig(paths, explicit=bool(kubeconfig))
    try:
        creds = credentials_from_context(resolve_context(config, context=context))
    except UnsupportedCredentials as exc:
        log_path = os.pathsep.join(str(p) for p in config.sources)
        return await _load_with_kubernetes_asyncio(log_path, context=context, reason=exc)
    await creds.prepare()
    return creds


class _GeneratedClientAuth:
    """The Authorization header as `kubernetes_asyncio`'s Configuration computes it (it runs the
    `auth-provider` refresh itself)."""

    def __init__(self, cfg: Any) -> None:
        self._cfg = cfg

    async def headers(self) -> dict[str, str]:
        settings = await self._cfg.auth_settings()
        bearer = settings.get("BearerToken")
        if bearer and bearer.get("value"):
            return {"Authorization": str(bearer["value"])}
        return {}

    def invalidate(self) -> bool:
        return False


async def _load_with_kubernetes_asyncio(
    path: str, *, context: str | None, reason: UnsupportedCredentials
) -> Credentials:
    """The fallback for what `kubeconfigs` does not implement. Imported here, and only here,
    because importing `kubernetes_asyncio` costs ~80 MiB."""
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import kube_config

    cfg = Configuration()
    try:
        await kube_config.load_kube_config(
            config_file=path, context=context, client_configuration=cfg
        )
    except Exception as exc:
        # Its loader raises ConfigException, ValueError, KeyError... for any problem; name
        # both why we fell back and what it said.
        raise KubeError(
            f"{reason.message}; loading it with kubernetes_asyncio failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    tls = TLSSettings(
        ca_file=Path(cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None,
        insecure=not cfg.verify_ssl,
        cert_file=Path(cfg.cert_file) if cfg.cert_file else None,
        key_file=Path(cfg.key_file) if cfg.key_file else None,
    )
    return Credentials(host=str(cfg.host).rstrip("/"), tls=tls, auth=_GeneratedClientAuth(cfg))


class KubeClient:
    """Raw-JSON access to the Kubernetes API.

    Objects in and out are plain dicts exactly as the apiserver speaks them. One instance holds one
    connection pool; close it with `close()` (or use it as an async context manager).
    """

    def __init__(
        self,
        cfg: Credentials,
        *,
        user_agent: str = "moorage",
        observer: RequestObserver | None = None,
        max_connections: int = 32,
    ) -> None:
        self._cfg = cfg
        self.host = str(cfg.host).rstrip("/")
        self.ssl_context = cfg.ssl_context()
        # `tls-server-name`: verify the certificate against this name instead of the URL's host.
        self._server_hostname = cfg.tls.server_name
        self.user_agent = user_agent
        self.observer = observer
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=self.ssl_context),
            read_bufsize=2**21,
            headers={"User-Agent": user_agent},
        )

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        user_agent: str = "moorage",
        observer: RequestObserver | None = None,
        max_connections: int = 32,
    ) -> KubeClient:
        """A client with credentials found the usual way (see `load_configuration`), holding at
        most `max_connections` connections (each watch holds one for as long as it runs)."""
        cfg = await load_configuration(kubeconfig=kubeconfig, context=context)
        return cls(cfg, user_agent=user_agent, observer=observer, max_connections=max_connections)

    @classmethod
    def for_token(
        cls,
        *,
        host: str,
        token: str,
        ca_file: str | None,
        user_agent: str = "moorage",
        observer: RequestObserver | None = None,
    ) -> KubeClient:
        """A client that authenticates with a bearer token (e.g. a service account's)."""
        cfg = Credentials(
            host=host.rstrip("/"),
            tls=TLSSettings(ca_file=Path(ca_file) if ca_file else None),
            auth=StaticAuth({"Authorization": f"Bearer {token}"}),
        )
        return cls(cfg, user_agent=user_agent, observer=observer)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def auth_headers(self) -> dict[str, str]:
        """The Authorization header for the current credentials (tokens may rotate)."""
        return await self._cfg.auth.headers()

    # -- plumbing ---------------------------------------------------------------------------

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        q = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        return f"{self.host}{path}" + (f"?{urlencode(q)}" if q else "")

    def _observe(self, verb: str, status: int, started: float) -> None:
        if self.observer is not None:
            self.observer(verb, status, time.monotonic() - started)

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> Any:
        """One request; the decoded JSON answer, or a `KubeError`.

        A 401 is retried once when the credentials can be refreshed (an exec plugin's token that
        the server stopped accepting before its stated expiry, a rotated token file).
        """
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        for attempt in (1, 2):
            headers = await self.auth_headers()
            if data is not None:
                headers["Content-Type"] = content_type
            started = time.monotonic()
            status = 0
            try:
                async with self._session.request(
                    method,
                    self.url(path, query),
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    server_hostname=self._server_hostname,
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._observe(verb, 0, started)
                raise ServerError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            self._observe(verb, status, started)
            if status == 401 and attempt == 1 and self._cfg.auth.invalidate():
                continue
            break
        decoded = _decode(raw)
        if status >= 400:
            raise error_for_status(
                status, decoded if isinstance(decoded, dict) else None, fallback=f"{method} {path}"
            )
        return decoded

    # -- verbs ------------------------------------------------------------------------------

    async def get(
        self, kind: ResourceKind, *, name: str, namespace: str | None = None
    ) -> JsonObject:
        result: JsonObject = await self.request(
            "GET", kind.path(namespace=namespace, name=name), verb="get"
        )
        return result

    async def get_subresource(
        self, kind: ResourceKind, *, name: str, subresource: str, namespace: str | None = None
    ) -> Any:
        return await self.request(
            "GET", kind.path(namespace=namespace, name=name, subresource=subresource), verb="get"
        )

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        timeout: float = 60.0,
        transform: Callable[[JsonObject], JsonObject] | None = None,
    ) -> ListResult:
        """Every item, following `continue` tokens; one consistent snapshot.

        `transform` is applied to each item as its page arrives: a caller that keeps only part of
        each object (the operator's trimmed caches) never holds a whole list of whole objects."""
        items: list[JsonObject] = []
        token: str | None = None
        resource_version = ""
        while True:
            page: JsonObject = await self.request(
                "GET",
                kind.path(namespace=namespace),
                verb="list",
                query={
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                    "limit": page_size,
                    "continue": token,
                },
                timeout=timeout,
            )
            meta = page.get("metadata") or {}
            if not resource_version:
                resource_version = str(meta.get("resourceVersion") or "")
            for item in page.get("items") or []:
                # List items omit apiVersion/kind; restore them so cached objects are whole.
                item.setdefault("apiVersion", kind.api_version)
                item.setdefault("kind", kind.kind)
                items.append(item if transform is None else transform(item))
            token = meta.get("continue") or None
            if not token:
                return ListResult(items=items, resource_version=resource_version)

    async def watch(
        self,
        kind: ResourceKind,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events from `resource_version` until the server closes the watch.

        A 410 (as an HTTP status or an ERROR event) raises `Gone`; the caller relists.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": allow_bookmarks,
            "timeoutSeconds": timeout_seconds,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
        }
        headers = await self.auth_headers()
        started = time.monotonic()
        try:
            resp = await self._session.get(
                self.url(kind.path(namespace=namespace), query),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, connect=_DEFAULT_TIMEOUT),
                server_hostname=self._server_hostname,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._observe("watch", 0, started)
            raise ServerError(f"watch {kind.plural}: {type(exc).__name__}: {exc}") from exc
        self._observe("watch", resp.status, started)
        async with resp:
            if resp.status >= 400:
                if resp.status == 401:
                    # The caller re-watches; let that attempt fetch fresh credentials.
                    self._cfg.auth.invalidate()
                decoded = _decode(await resp.read())
                raise error_for_status(
                    resp.status,
                    decoded if isinstance(decoded, dict) else None,
                    fallback=f"watch {kind.plural}",
                )
            try:
                async for line in _lines(resp.content):
                    event = json.loads(line)
                    type_ = str(event.get("type", ""))
                    obj = event.get("object") or {}
                    if type_ == "ERROR":
                        raise error_for_status(
                            int(obj.get("code") or 500), obj, fallback=f"watch {kind.plural}"
                        )
                    yield WatchEvent(type_, obj)
            except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
                raise ServerError(
                    f"watch {kind.plural} broke: {type(exc).__name__}: {exc}"
                ) from exc

    async def create(
        self, kind: ResourceKind, body: JsonObject, *, namespace: str | None = None
    ) -> JsonObject:
        result: JsonObject = await self.request(
            "POST", kind.path(namespace=namespace), verb="create", body=body
        )
        return result

    async def replace(
        self,
        kind: ResourceKind,
        body: JsonObject,
        *,
        name: str,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JsonObject:
        result: JsonObject = await self.request(
            "PUT",
            kind.path(namespace=namespace, name=name, subresource=subresource),
            verb="update",
            body=body,
        )
        return result

    async def apply(
        self,
        kind: ResourceKind,
        body: JsonObject,
        *,
        field_manager: str,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        force: bool = True,
        dry_run: bool = False,
    ) -> JsonObject:
        """Server-side apply `body` (which must carry apiVersion, kind and metadata.name)."""
        obj_name = name or str(body["metadata"]["name"])
        query: dict[str, Any] = {"fieldManager": field_manager, "force": force}
        if dry_run:
            query["dryRun"] = "All"
        result: JsonObject = await self.request(
            "PATCH",
            kind.path(namespace=namespace, name=obj_name, subresource=subresource),
            verb="apply",
            query=query,
            body=body,
            content_type=APPLY_PATCH,
        )
        return result

    async def patch(
        self,
        kind: ResourceKind,
        body: Any,
        *,
        name: str,
        namespace: str | None = None,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
        field_manager: str | None = None,
    ) -> JsonObject:
        result: JsonObject = await self.request(
            "PATCH",
            kind.path(namespace=namespace, name=name, subresource=subresource),
            verb="patch",
            query={"fieldManager": field_manager},
            body=body,
            content_type=content_type,
        )
        return result

    async def delete(
        self,
        kind: ResourceKind,
        *,
        name: str,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        preconditions: JsonObject | None = None,
    ) -> JsonObject:
        body: JsonObject = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = preconditions
        result: JsonObject = await self.request(
            "DELETE", kind.path(namespace=namespace, name=name), verb="delete", body=body
        )
        return result

    async def ws_connect(
        self,
        path: str,
        *,
        query: Mapping[str, Any] | Sequence[tuple[str, str]] | None = None,
        protocols: tuple[str, ...] = ("v5.channel.k8s.io", "v4.channel.k8s.io"),
        heartbeat: float | None = 30.0,
    ) -> aiohttp.ClientWebSocketResponse:
        """A websocket to a streaming subresource (`pods/attach`, `pods/exec`).

        `query` may repeat keys (`command=a&command=b`), so it also takes a list of pairs.
        """
        headers = await self.auth_headers()
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query or [])
        qs = urlencode([(k, _query_value(v)) for k, v in pairs])
        target = f"{self.host}{path}" + (f"?{qs}" if qs else "")
        scheme = urlsplit(target).scheme
        ws_url = target.replace(scheme, "wss" if scheme == "https" else "ws", 1)
        started = time.monotonic()
        try:
            ws = await self._session.ws_connect(
                ws_url,
                headers=headers,
                protocols=protocols,
                heartbeat=heartbeat,
                max_msg_size=0,
                server_hostname=self._server_hostname,
            )
        except aiohttp.WSServerHandshakeError as exc:
            self._observe("connect", exc.status, started)
            if exc.status == 401:
                self._cfg.auth.invalidate()
            raise error_for_status(
                exc.status, None, fallback=f"connect {path}: {exc.message}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._observe("connect", 0, started)
            raise ServerError(f"connect {path}: {type(exc).__name__}: {exc}") from exc
        self._observe("connect", 101, started)
        return ws


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw[:500].decode(errors="replace")}


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-delimited records of any length up to `_MAX_WATCH_LINE`."""
    buf = bytearray()
    async for chunk in stream.iter_any():
        buf.extend(chunk)
        while True:
            idx = buf.find(b"\n")
            if idx < 0:
                break
            line = bytes(buf[:idx])
            del buf[: idx + 1]
            if line.strip():
                yield line
        if len(buf) > _MAX_WATCH_LINE:
            raise ServerError(f"watch record larger than {_MAX_WATCH_LINE} bytes")
    if buf.strip():
        yield bytes(buf)
