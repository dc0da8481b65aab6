"""Live reload of the RunConfig (spec §3.1): new tool filter/override, Cedar policies and audit
settings apply to the next request, without a restart and without dropping a session.

Sources: in a cluster, the proxy watches its ConfigMap `<name>-runconfig` (key `runconfig.json`)
through the apiserver, which is seconds faster than the kubelet's refresh of the mounted file;
locally, `run --local --config PATH` polls the file's modification time.

Each new text is checked whole before anything changes: it must parse as a RunConfig, its
policies must stay within the Cedar bounds (`moorage_api.cedarbounds`: a deeper policy could crash
the parser, so it never reaches it) and parse as Cedar, and its renames must not collide. A bad
text is refused: the old configuration stays in force, `runconfig_reload_rejected` is logged with
the reason and the generation kept, `moorage_proxy_config_reloads_total{result="rejected"}` counts
it and `moorage_proxy_config_rejected` is 1 until a good text arrives. Changes to anything else
(image, args, env, ports, `oidc`, ...) are not applied here: the operator rolls the proxy's
Deployment for those; they are logged as ignored. When what clients may list changes, every open
session is sent `notifications/tools/list_changed` (and the prompt/resource ones when the
policies changed and the server has those); when the policies changed, the resource
subscriptions held through a shared stdio server are checked again and those no longer allowed
end (`Endpoints.rechecker`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from moorage_api.runconfig import LIVE_FIELDS, RunConfig, RunConfigError, load_runconfig
from moorage_proxyrunner.front.app import Announcer, Rechecker
from moorage_proxyrunner.policy.authz import Target
from moorage_proxyrunner.policy.chain import LiveConfig, LiveConfigError, Middleware
from moorage_proxyrunner.protocol.pipeline import Identity

if TYPE_CHECKING:
    from moorage_core.kube import JsonObject, KubeClient

log = structlog.get_logger(__name__)

RUNCONFIG_KEY: Final = "runconfig.json"
APPLIED_FIELDS: Final = frozenset(LIVE_FIELDS - {"generation"})
"""The RunConfig keys this module applies (`generation` only labels a version)."""
LOCAL_DEFAULTS: Final = {"name": "local", "namespace": "local", "image": "local"}
"""Workload keys a local `--config` file may leave out: `--local` runs the command after `--`."""


def runconfig_configmap_name(name: str) -> str:
    return f"{name}-runconfig"


def load_local_runconfig(text: str) -> RunConfig:
    """A RunConfig for `run --local --config`: the workload keys may be left out."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunConfigError(
            f"runconfig is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if isinstance(data, dict):
        for key, value in LOCAL_DEFAULTS.items():
            if key == "image" and data.get("remote") is not None:
                continue  # a remote proxy has no workload, so no image
            data.setdefault(key, value)
    return load_runconfig(json.dumps(data))


def changed_fields(old: RunConfig, new: RunConfig) -> set[str]:
    """Top-level RunConfig keys whose values differ."""
    before = old.model_dump(mode="json")
    after = new.model_dump(mode="json")
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


class ReloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter(
            "moorage_proxy_config_reloads_total",
            "RunConfig changes seen by the running proxy, by result (applied, unchanged, "
            "rejected).",
            ["result"],
            registry=registry,
        )
        self.generation = Gauge(
            "moorage_proxy_config_generation",
            "The MCPServer generation of the RunConfig in force.",
            registry=registry,
        )
        self.rejected = Gauge(
            "moorage_proxy_config_rejected",
            "1 while the newest RunConfig seen was refused (the one in force is older), else 0.",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """`result`: applied, unchanged or rejected; `applied`/`ignored`: the keys concerned."""

    result: str
    applied: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()
    error: str | None = None


class RunConfigReloader:
    """Applies new RunConfig texts to a running proxy's `Middleware`."""

    def __init__(
        self,
        middleware: Middleware,
        *,
        current: RunConfig,
        registry: CollectorRegistry,
        announce: Announcer | None = None,
        recheck: Rechecker | None = None,
        capabilities: Callable[[], dict[str, object]] | None = None,
        local: bool = False,
    ) -> None:
        self.middleware = middleware
        self.recheck = recheck
        self.current = current
        self.metrics = ReloadMetrics(registry)
        self.metrics.generation.set(current.generation)
        self.announce = announce
        self.capabilities = capabilities
        self.local = local
        self._last_text: str | None = None

    def apply_text(self, text: str, *, source: str) -> ReloadOutcome:
        """Check and apply one RunConfig text; never raises for a bad text."""
        if text == self._last_text:
            return ReloadOutcome("unchanged")
        self._last_text = text
        try:
            new = load_local_runconfig(text) if self.local else load_runconfig(text)
            live = LiveConfig.from_runconfig(new)
        except (RunConfigError, LiveConfigError) as exc:
            self._reject(source=source, error=str(exc))
            return ReloadOutcome("rejected", error=str(exc))
        self.metrics.rejected.set(0)
        changed = changed_fields(self.current, new)
        applied = frozenset(changed & APPLIED_FIELDS)
        ignored = frozenset(changed - LIVE_FIELDS)
        if ignored and not self.local:
            log.info(
                "runconfig_reload_ignored",
                source=source,
                fields=sorted(ignored),
                hint="workload and authentication changes roll the proxy's Deployment",
            )
        elif "oidc" in ignored:
            log.warning(
                "runconfig_reload_ignored",
                source=source,
                fields=["oidc"],
                hint="restart the proxy to change authentication",
            )
        self.current = new
        self.metrics.generation.set(new.generation)
        if not applied:
            self.metrics.reloads.labels("unchanged").inc()
            return ReloadOutcome("unchanged", ignored=ignored)
        self.middleware.apply(live)
        self.metrics.reloads.labels("applied").inc()
        log.info(
            "runconfig_reloaded", source=source, generation=new.generation, fields=sorted(applied)
        )
        self._tell_sessions(applied)
        if "authz" in applied:
            self._recheck_subscriptions()
        return ReloadOutcome("applied", applied=applied, ignored=ignored)

    def _recheck_subscriptions(self) -> None:
        """A subscription allowed under the old policies is held only while the new ones allow
        reading its resource."""
        authorizer = self.middleware.authz_step.authorizer
        if self.recheck is None or authorizer is None:
            return  # authorisation off: every subscription is allowed

        def allowed(identity: Identity, uri: str) -> bool:
            return authorizer.is_allowed(identity, Target("read_resource", "Resource", uri))

        ended = self.recheck(allowed)
        if ended:
            log.info("subscriptions_ended_by_policy", count=ended)

    def _reject(self, *, source: str, error: str) -> None:
        self.metrics.reloads.labels("rejected").inc()
        self.metrics.rejected.set(1)
        log.warning(
            "runconfig_reload_rejected",
            source=source,
            error=error,
            kept_generation=self.current.generation,
        )

    def _tell_sessions(self, applied: frozenset[str]) -> None:
        if self.announce is None:
            return
        capabilities = self.capabilities() if self.capabilities is not None else {}
        kinds = []
        if applied & {"tools_filter", "tools_override", "authz"}:
            kinds.append("tools")
        if "authz" in applied:
            kinds.extend(k for k in ("prompts", "resources") if k in capabilities)
        for kind in kinds:
            self.announce(f"notifications/{kind}/list_changed")

    async def watch_configmap(self, kube: KubeClient, *, namespace: str, name: str) -> None:
        """Follow ConfigMap `name` (its `runconfig.json`) until cancelled."""
        # Imported here: local mode (`watch_file`) never loads the Kubernetes code.
        from moorage_core.kube import CONFIGMAPS
        from moorage_core.watching import WatchedSet

        def on_change(event: str, obj: JsonObject) -> None:
            if event == "DELETED":
                log.warning("runconfig_configmap_deleted", name=name, hint="keeping the config")
                return
            text = (obj.get("data") or {}).get(RUNCONFIG_KEY)
            if not isinstance(text, str):
                self._reject(
                    source=f"configmap/{name}", error=f"the ConfigMap has no {RUNCONFIG_KEY}"
                )
                return
            self.apply_text(text, source=f"configmap/{name}")

        watched = WatchedSet(
            kube,
            CONFIGMAPS,
            namespace=namespace,
            field_selector=f"metadata.name={name}",
            on_change=on_change,
        )
        log.info("runconfig_watch_started", namespace=namespace, configmap=name)
        await watched.run()

    async def watch_file(self, path: Path, *, interval: float = 1.0) -> None:
        """Poll `path` every `interval` seconds until cancelled; apply it when it changes (the
        first look applies a change made since the proxy read the file at start-up)."""
        last: tuple[int, int, int] | None = None
        log.info("runconfig_watch_started", path=str(path))
        while True:
            signature = _signature(path)
            if signature == last:
                await asyncio.sleep(interval)
                continue
            last = signature
            try:
                text = await asyncio.to_thread(path.read_text)
            except OSError as exc:
                self._reject(source=str(path), error=str(exc))
                continue
            self.apply_text(text, source=str(path))
            await asyncio.sleep(interval)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino
