"""The proxy's middleware chain, assembled once per process, in the order of spec §4.4.

Every request to an MCP path passes, in this order (after the transport guard,
`front.app.guard`: `Host`, `Origin`, draining):

| step | decides | runs as |
|---|---|---|
| body limit | a declared body over the limit: 413 | aiohttp middleware `bodylimit.body_limit` |
| authentication | the caller's `Identity`, or 401 | aiohttp middleware `authn.AuthnLayer` |
| MCP parsing | the message (415, 406, 413, 400), era and session (400, 404) | the endpoints |
| audit | the record of the request as it entered | pipeline step `audit.AuditStep` |
| rate limit | over a subject's or a tool's limit: 429 (`ratelimit`) | pipeline step `ratelimit.RateLimitStep` |
| tool filter/override | what tools are seen, and as what | pipeline step `toolfilter.ToolFilterStep` |
| authorisation | allow or deny (403), list results filtered | pipeline step `authz.AuthzStep` |
| audit gate | the forward record, written before the backend | pipeline step `AuditStep.gate` |
| backend | the answer | the endpoints' terminal call |

`Middleware.install` puts the two HTTP steps on the app and `Middleware.pipeline` holds the
others; the endpoints parse between them, because parsing needs the body, which only the
endpoint reads. The steps hand what they decide to the audit step in the call
(`McpCall.decisions`). The pipeline steps are built here, always present and switched on or
off by their settings, so that a RunConfig change can swap what they hold
(`Middleware.apply`) without rebuilding the pipeline, the endpoints or the sessions.
Authentication is fixed for the life of the process: a change of `oidc` rolls the proxy.

`LiveConfig` is the part of a RunConfig that applies live; building one checks it whole (Cedar
parses, renames do not collide) so that a bad change can be refused before anything is swapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import RunConfig, RunConfigAuthz, RunConfigRateLimits
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.config.toolpolicy import ToolPolicy, build_tool_policy
from moorage_proxyrunner.policy.audit import AuditStep, AuditWriter
from moorage_proxyrunner.policy.authn import Authenticator, AuthnLayer, AuthnMetrics, OidcSettings
from moorage_proxyrunner.policy.authz import (
    Authorizer,
    AuthzConfigError,
    AuthzMetrics,
    AuthzStep,
    CompiledAuthz,
    compile_authz,
)
from moorage_proxyrunner.policy.bodylimit import body_limit
from moorage_proxyrunner.policy.jwks import (
    HttpJwks,
    JwksCache,
    JwksFetcher,
    KeysUnavailable,
    KubeJwks,
)
from moorage_proxyrunner.policy.ratelimit import (
    BucketStore,
    MemoryBuckets,
    RateLimitMetrics,
    RateLimitStep,
    add_retry_after,
)
from moorage_proxyrunner.policy.redisbuckets import open_redis_buckets
from moorage_proxyrunner.policy.toolfilter import ToolFilterStep
from moorage_proxyrunner.protocol.pipeline import Pipeline

if TYPE_CHECKING:
    from moorage_core.kube import KubeClient

log = structlog.get_logger(__name__)


class LiveConfigError(ValueError):
    """A live part of a RunConfig that cannot be applied; the message says why."""


def tool_policy_from_runconfig(runconfig: RunConfig) -> ToolPolicy:
    """The tool filter/override of a RunConfig."""
    return build_tool_policy(runconfig.tools_filter, runconfig.tools_override)


def check_renames(policy: ToolPolicy) -> None:
    """`LiveConfigError` when two tools are renamed to the same name."""
    seen: dict[str, str] = {}
    for server_name, override in sorted(policy.overrides.items()):
        if not override.name:
            continue
        if override.name in seen:
            raise LiveConfigError(
                f"tools_override: {seen[override.name]!r} and {server_name!r} are both renamed "
                f"to {override.name!r}"
            )
        seen[override.name] = server_name


def compile_runconfig_authz(authz: RunConfigAuthz | None) -> CompiledAuthz | None:
    if authz is None:
        return None
    try:
        return compile_authz(authz.policies, authz.entities_json)
    except AuthzConfigError as exc:
        raise LiveConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """What the running proxy applies without a restart, checked and compiled."""

    tool_policy: ToolPolicy
    authz: CompiledAuthz | None
    audit: bool
    rate_limits: RunConfigRateLimits | None = None

    @classmethod
    def from_runconfig(cls, runconfig: RunConfig) -> LiveConfig:
        """`LiveConfigError` when a part cannot be applied."""
        policy = tool_policy_from_runconfig(runconfig)
        check_renames(policy)
        return cls(
            tool_policy=policy,
            authz=compile_runconfig_authz(runconfig.authz),
            audit=runconfig.audit.enabled,
            rate_limits=runconfig.rate_limits,
        )


def bucket_store(settings: ProxyRunnerSettings, *, redis_ca: str | None = None) -> BucketStore:
    """Where the rate-limit buckets live: Redis for `session_storage.type: redis` (shared by
    the replicas), this process otherwise. `redisconn.RedisSettingError` when the Redis
    password variable is not set."""
    redis = settings.session_storage.redis
    if redis is None:
        return MemoryBuckets(settings.limits.max_rate_limit_buckets)
    return open_redis_buckets(redis, ca_data=redis_ca)


def jwks_fetcher(oidc: OidcSettings, *, kube: KubeClient | None) -> JwksFetcher:
    """Where an issuer's keys come from: HTTP for `oidc`, the apiserver for `kubernetes`."""
    if oidc.kind == "kubernetes":
        if kube is None:
            raise ValueError("kubernetes authentication needs a Kubernetes client")
        return KubeJwks(kube)
    assert oidc.issuer is not None, "RunConfigOIDC requires an issuer for type oidc"
    return HttpJwks(issuer=oidc.issuer, jwks_url=oidc.jwks_url)


class Middleware:
    """The steps and the authentication layer of one proxy process."""

    def __init__(
        self,
        settings: ProxyRunnerSettings,
        *,
        registry: CollectorRegistry,
        kube: KubeClient | None = None,
        audit_writer: AuditWriter | None = None,
        keys: JwksCache | None = None,
        buckets: BucketStore | None = None,
        redis_ca: str | None = None,
    ) -> None:
        self.settings = settings
        self.audit_step = AuditStep(enabled=settings.audit, writer=audit_writer)
        self.rate_limit_step = RateLimitStep(
            settings.rate_limits,
            store=buckets or bucket_store(settings, redis_ca=redis_ca),
            metrics=RateLimitMetrics(registry),
        )
        self.filter_step = ToolFilterStep(settings.tool_policy)
        compiled = compile_runconfig_authz(settings.authz)
        self.authz_step = AuthzStep(
            Authorizer(compiled) if compiled is not None else None,
            tool_name=self._client_tool_name,
            metrics=AuthzMetrics(registry),
        )
        self.pipeline = Pipeline(
            [
                self.audit_step,
                self.rate_limit_step,
                self.filter_step,
                self.authz_step,
                self.audit_step.gate,
            ]
        )
        self.authn: AuthnLayer | None = None
        self._fetcher: JwksFetcher | None = None
        if settings.oidc is not None:
            oidc = OidcSettings.from_runconfig(settings.oidc)
            if keys is None:
                self._fetcher = jwks_fetcher(oidc, kube=kube)
                keys = JwksCache(self._fetcher)
            self.authn = AuthnLayer(
                Authenticator(oidc, keys=keys),
                settings=settings,
                audit=self.audit_step,
                metrics=AuthnMetrics(registry),
            )

    def _client_tool_name(self, server_name: str) -> str:
        return self.filter_step.policy.client_name(server_name)

    @property
    def live(self) -> LiveConfig:
        authorizer = self.authz_step.authorizer
        return LiveConfig(
            tool_policy=self.filter_step.policy,
            authz=authorizer.compiled if authorizer is not None else None,
            audit=self.audit_step.enabled,
            rate_limits=self.rate_limit_step.limits,
        )

    def apply(self, live: LiveConfig) -> None:
        """Swap in a checked `LiveConfig`; the next request sees all of it.

        No await between the swaps: a request in the event loop sees the old set or the new one.
        """
        self.filter_step.policy = live.tool_policy
        self.authz_step.authorizer = Authorizer(live.authz) if live.authz is not None else None
        self.audit_step.enabled = live.audit
        self.rate_limit_step.limits = live.rate_limits

    def install(self, app: web.Application, *, primary_path: str = "/mcp") -> None:
        """Put the chain's HTTP steps in front of the app's MCP paths, in their order: the body
        limit, then authentication (when configured)."""
        app.middlewares.append(body_limit)
        app.on_response_prepare.append(add_retry_after)
        if self.authn is not None:
            self.authn.primary_path = primary_path
            self.authn.install(app)
        app.on_cleanup.append(self._close)

    async def _close(self, _: web.Application) -> None:
        await self.rate_limit_step.store.close()
        if isinstance(self._fetcher, HttpJwks):
            await self._fetcher.close()

    async def prefetch(self) -> None:
        """Fetch the issuer's keys ahead of the first client (a failure is retried later)."""
        if self.authn is None:
            return
        authenticator = self.authn.authenticator
        try:
            await authenticator.issuer()
            await authenticator.keys.key(None)
        except KeysUnavailable as exc:
            log.warning("jwks_prefetch_failed", error=str(exc))
