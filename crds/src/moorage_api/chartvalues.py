"""The values of the Helm charts (`deploy/charts/*`), as typed models: their single description.

`chartgen` renders each chart's `values.yaml` (every value with its docstring as a comment, so
`helm show values` documents them) and `values.schema.json` from these models, so a wrong value
fails `helm install` with the field's path named. Pure: no I/O.

The defaults are those of the kustomize install (`deploy/overlays/cluster`); a test renders the
chart with values equivalent to each overlay and component and compares the objects with
kustomize's. Python attributes are snake_case; the values (and the schema) use their camelCase
aliases, as Helm charts do.

Rules the schema can express are written into it (enumerations, patterns, bounds, and "namespace
scope needs allowedNamespaces"); rules across fields that JSON schema cannot say readably (TLS
needs cert-manager or a Secret; watched namespaces must be allowed) are checked by the templates
with `fail` and a message naming the values to set.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

IMAGE_REPOSITORY: Final = "ghcr.io/moorage"

_DURATION: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_CIDR: Final = r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"

NamespaceName = Annotated[str, StringConstraints(pattern=_DNS_LABEL, max_length=63)]
Cidr = Annotated[str, StringConstraints(pattern=_CIDR)]
FreeForm = dict[str, Any]
"""A Kubernetes object passed through as it is (resources, affinity, a security context): the
apiserver validates it."""


class Values(BaseModel):
    """Every values model: camelCase keys, unknown keys refused, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class Image(Values):
    """One container image."""

    repository: str = Field(min_length=1)
    """Registry and path of the image, without tag or digest."""
    tag: str = ""
    """Image tag; empty means the chart's appVersion."""
    digest: str = Field(default="", pattern=r"^(sha256:[0-9a-f]{64})?$")
    """`sha256:<64 hex>`; when set it pins the image and the tag is ignored."""
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """imagePullPolicy of the container running this image. proxyRunnerImage and registryApiImage
    run in pods the operator creates, which get Kubernetes' default policy instead."""


def _image(name: str) -> Any:
    return Field(default_factory=lambda: Image(repository=f"{IMAGE_REPOSITORY}/{name}"))


def _restricted_pod() -> FreeForm:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "fsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _restricted_container(*, group: bool) -> FreeForm:
    context: FreeForm = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65534,
    }
    if group:
        context["runAsGroup"] = 65534
    context["capabilities"] = {"drop": ["ALL"]}
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


class Rbac(Values):
    """Where the operator holds its permissions."""

    # Helm checks this before any template runs: namespace scope names its namespaces.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"scope": {"const": "namespace"}}, "required": ["scope"]},
            "then": {"properties": {"allowedNamespaces": {"minItems": 1}}},
        }
    )

    scope: Literal["cluster", "namespace"] = "cluster"
    """`cluster`: the ClusterRole moorage-operator is bound cluster-wide. `namespace`: bound by one
    RoleBinding in each of allowedNamespaces, nothing cluster-wide (the leader-election Role stays
    in the release namespace)."""
    allowed_namespaces: list[NamespaceName] = Field(default_factory=list)
    """With scope `namespace`: the namespaces the operator may work in (at least one; they must
    exist before the install). Their proxy runners may list MCPTenants."""


class Scheduling(Values):
    """Where and how a component's pods run; restricted Pod Security by default."""

    resources: FreeForm = Field(default_factory=dict)
    """Container resources (requests and limits)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Pod nodeSelector."""
    tolerations: list[FreeForm] = Field(default_factory=list)
    """Pod tolerations."""
    affinity: FreeForm = Field(default_factory=dict)
    """Pod affinity. Empty: for several replicas, a preferred anti-affinity across nodes."""
    topology_spread_constraints: list[FreeForm] = Field(default_factory=list)
    """Pod topologySpreadConstraints. Empty: for several replicas, spread (preferred) across
    nodes and zones."""
    priority_class_name: str = ""
    """Pod priorityClassName; empty for none."""
    pod_security_context: FreeForm = Field(default_factory=_restricted_pod)
    """Pod securityContext."""
    security_context: FreeForm = Field(default_factory=lambda: _restricted_container(group=True))
    """Container securityContext."""


class Operator(Scheduling):
    """The operator Deployment and its settings (spec §6)."""

    replica_count: int = Field(default=1, ge=1)
    """Replicas; leader election is always on, the others are warm standbys. Above 1 a
    PodDisruptionBudget (minAvailable 1) is rendered."""
    image: Image = _image("moorage-operator")
    """The operator's image."""
    proxy_runner_image: Image = _image("moorage-proxyrunner")
    """The proxy runner image the operator puts in every MCPServer's Deployment
    (PROXYRUNNER_IMAGE)."""
    registry_api_image: Image = _image("moorage-registry-api")
    """The image of every MCPRegistry's API Deployment (REGISTRY_API_IMAGE)."""
    rbac: Rbac = Field(default_factory=Rbac)
    """RBAC scope."""
    watch_namespaces: list[NamespaceName] = Field(default_factory=list)
    """Namespaces to watch (WATCH_NAMESPACES). Empty: every namespace with scope `cluster`, the
    allowedNamespaces with scope `namespace` (where a listed namespace must be allowed)."""
    log_format: Literal["json", "console", "auto"] = "json"
    """LOG_FORMAT."""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """LOG_LEVEL."""
    reconcile_concurrency: int = Field(default=4, ge=1, le=64)
    """RECONCILE_CONCURRENCY: reconciles in flight per controller."""
    resync_period: str = Field(default="10h", pattern=_DURATION)
    """RESYNC_PERIOD: how often every cached object is reconciled again (Go duration)."""
    resources: FreeForm = Field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "192Mi"},
            "limits": {"memory": "384Mi"},
        }
    )
    """Container resources: sized for about 1,000 MCPServers (values-medium.yaml,
    values-large.yaml for more). No CPU limit: throttling only slows convergence."""


class Webhook(Scheduling):
    """The admission webhook Deployment and its ValidatingWebhookConfiguration."""

    replica_count: int = Field(default=2, ge=1)
    """Replicas. Above 1 a PodDisruptionBudget (minAvailable 1) is rendered."""
    image: Image = _image("moorage-webhook")
    """The webhook's image."""
    log_format: Literal["json", "console", "auto"] = "json"
    """--log-format."""
    failure_policy: Literal["Fail", "Ignore"] = "Fail"
    """What the apiserver does when the webhook cannot be reached. `Fail`: writes of Moorage's
    kinds are refused until a replica is ready. `Ignore` admits them unchecked."""
    resources: FreeForm = Field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
    )
    """Container resources. No CPU limit: throttling would add latency to every admission."""
    security_context: FreeForm = Field(default_factory=lambda: _restricted_container(group=False))
    """Container securityContext."""


class Registry(Values):
    """MCPRegistry sources, for the operator (which fetches them) and the webhook (which admits
    them)."""

    allow_local_sources: bool = False
    """REGISTRY_ALLOW_LOCAL_SOURCES of both: admit and fetch git sources from `file://` and from
    the operator's own host (loopback, link-local). Off outside development."""


class CertManager(Values):
    """cert-manager provisions the webhook's serving certificate."""

    enabled: bool = True
    """Render a self-signed Issuer and a Certificate; cert-manager injects the CA into the
    ValidatingWebhookConfiguration. Needs cert-manager installed first."""


class Tls(Values):
    """A serving certificate provisioned in advance, when cert-manager is not used."""

    secret_name: str = ""
    """A kubernetes.io/tls Secret in the release namespace (tls.crt, tls.key, ca.crt) for the
    names moorage-webhook.<namespace>.svc; used when certManager.enabled is false."""
    ca_bundle: str = ""
    """Base64 PEM of the CA that signed it, for the apiserver (clientConfig.caBundle); required
    with secretName."""


class Metrics(Values):
    """The HTTPS /metrics endpoints of the operator and the webhook."""

    port: int = Field(default=8443, ge=1, le=65535)
    """Port of /metrics (and the operator's probes) in both."""


class Enabled(Values):
    """A part of the chart that is off unless enabled."""

    enabled: bool = False
    """Render it."""


class GrafanaDashboard(Values):
    """Moorage's Grafana dashboard."""

    enabled: bool = False
    """Render a ConfigMap holding the dashboard, labelled for Grafana's dashboard sidecar."""
    label: str = "grafana_dashboard"
    """The label the sidecar looks for (its value is "1")."""


_PENDING: Final = r"^[1-9][0-9]*[smh]$"


def _pending(default: str) -> Any:
    return Field(default=default, alias="for", pattern=_PENDING)


class Pending(Values):
    """An alert with nothing to compare but how long its condition lasts."""

    pending_for: str = _pending("5m")
    """How long the condition must hold before the alert fires (`30s`, `5m`, `1h`)."""


def _pending_only(default: str) -> Any:
    return Field(default_factory=lambda: Pending.model_validate({"for": default}))


class RatioThreshold(Values):
    """An alert on the share of failing requests."""

    percent: float = Field(gt=0, le=100)
    """The alert fires above this share, in percent..."""
    pending_for: str = _pending("15m")
    """... held this long (`30s`, `5m`, `1h`)."""


class SecondsThreshold(Values):
    """An alert on a latency."""

    seconds: float = Field(gt=0)
    """The alert fires above this latency, in seconds..."""
    pending_for: str = _pending("15m")
    """... held this long (`30s`, `5m`, `1h`)."""


class RejectionThreshold(Values):
    """An alert on the share of writes the webhook rejects."""

    percent: float = Field(default=25.0, gt=0, le=100)
    """The alert fires above this share of rejected writes, in percent..."""
    count: int = Field(default=5, ge=0)
    """... with more than this many rejections in 10 minutes..."""
    pending_for: str = _pending("15m")
    """... held this long (`30s`, `5m`, `1h`)."""


class StuckThreshold(Values):
    """An alert on one reconcile that does not end."""

    minutes: int = Field(default=5, ge=1)
    """The alert fires when one reconcile has run longer than this, in minutes..."""
    pending_for: str = _pending("5m")
    """... held this long (`30s`, `5m`, `1h`)."""


class StaleThreshold(Values):
    """An alert on queued work that nobody reconciles."""

    minutes: int = Field(default=15, ge=11)
    """The alert fires when work has been queued with no reconcile finishing for this long, in
    minutes (the rule looks at 10-minute windows, so at least 11)."""


class Thresholds(Values):
    """When each alert fires (docs/operations.md, "Alerts", explains them)."""

    operator_down: Pending = _pending_only("10m")
    """MoorageOperatorDown: no operator replica is scraped."""
    operator_no_leader: Pending = _pending_only("5m")
    """MoorageOperatorNoLeader: no replica holds the Lease."""
    reconcile_errors_high: RatioThreshold = Field(
        default_factory=lambda: RatioThreshold(percent=10)
    )
    """MoorageReconcileErrorsHigh: share of a controller's reconciles that fail."""
    reconcile_stale: StaleThreshold = Field(default_factory=StaleThreshold)
    """MoorageReconcileStale: queued work and no reconcile."""
    reconcile_stuck: StuckThreshold = Field(default_factory=StuckThreshold)
    """MoorageReconcileStuck: how long one reconcile may run."""
    reconcile_latency_high: SecondsThreshold = Field(
        default_factory=lambda: SecondsThreshold(seconds=5)
    )
    """MoorageReconcileLatencyHigh: 95th percentile of a controller's reconcile time."""
    webhook_down: Pending = _pending_only("5m")
    """MoorageWebhookDown: no webhook replica is scraped."""
    webhook_errors: Pending = _pending_only("5m")
    """MoorageWebhookErrors: the webhook answers reviews with errors."""
    webhook_rejections_high: RejectionThreshold = Field(default_factory=RejectionThreshold)
    """MoorageWebhookRejectionsHigh: share of a kind's writes rejected."""
    webhook_latency_high: SecondsThreshold = Field(
        default_factory=lambda: SecondsThreshold.model_validate({"seconds": 1, "for": "10m"})
    )
    """MoorageWebhookLatencyHigh: 99th percentile of the admission latency."""
    proxy_server_errors: RatioThreshold = Field(
        default_factory=lambda: RatioThreshold.model_validate({"percent": 5, "for": "10m"})
    )
    """MoorageProxyServerErrors: share of an MCPServer's MCP requests answered with 5xx."""
    proxy_session_store_down: Pending = _pending_only("5m")
    """MoorageProxySessionStoreDown: a proxy pod's session storage (Redis) operations fail."""


class PrometheusRule(Values):
    """Moorage's alert rules (Prometheus Operator CRDs needed)."""

    enabled: bool = False
    """Render the PrometheusRule."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """Alert thresholds."""


class Egress(Values):
    """Where the operator and the webhook may connect, besides the cluster DNS."""

    cidrs: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)
    """The apiserver's endpoint addresses (`kubectl get endpointslices -n default -l
    kubernetes.io/service-name=kubernetes`), ports 443 and 6443. Narrow it."""
    registry_sources_cidrs: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"])
    """Where MCPRegistry git sources are hosted (ports 443 and 22) for the operator; empty
    renders no such policy."""


class Ingress(Values):
    """Who may connect to Moorage's pods."""

    webhook_cidrs: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)
    """Where the apiserver's calls to the webhook come from (control-plane nodes)."""
    metrics_namespace: str = Field(default="monitoring", pattern=_DNS_LABEL)
    """The namespace Prometheus scrapes from."""


class NetworkPolicy(Values):
    """Default-deny NetworkPolicies for the release namespace and what Moorage needs."""

    enabled: bool = False
    """Render them."""
    egress: Egress = Field(default_factory=Egress)
    """Egress rules."""
    ingress: Ingress = Field(default_factory=Ingress)
    """Ingress rules."""


class OperatorChartValues(Values):
    """The values of the moorage-operator chart."""

    image_pull_secrets: list[FreeForm] = Field(default_factory=list)
    """Pod imagePullSecrets of the operator and the webhook (`[{name: ...}]`)."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain (the operator's CLUSTER_DOMAIN; the webhook certificate's
    names)."""
    operator: Operator = Field(default_factory=Operator)
    """The operator."""
    webhook: Webhook = Field(default_factory=Webhook)
    """The admission webhook."""
    registry: Registry = Field(default_factory=Registry)
    """MCPRegistry settings."""
    cert_manager: CertManager = Field(default_factory=CertManager)
    """TLS from cert-manager."""
    tls: Tls = Field(default_factory=Tls)
    """TLS from a Secret provisioned in advance."""
    metrics: Metrics = Field(default_factory=Metrics)
    """Metrics endpoints."""
    service_monitor: Enabled = Field(default_factory=Enabled)
    """ServiceMonitors for the operator and the webhook (Prometheus Operator CRDs needed)."""
    pod_monitor: Enabled = Field(default_factory=Enabled)
    """PodMonitors for every proxy runner and MCPRegistry API pod, in any namespace."""
    prometheus_rule: PrometheusRule = Field(default_factory=PrometheusRule)
    """Alert rules."""
    grafana_dashboard: GrafanaDashboard = Field(default_factory=GrafanaDashboard)
    """Grafana dashboard."""
    network_policy: NetworkPolicy = Field(default_factory=NetworkPolicy)
    """Network policies."""


class CrdsChartValues(Values):
    """The values of the moorage-crds chart."""

    keep: bool = True
    """Annotate the CRDs `helm.sh/resource-policy: keep`, so `helm uninstall` of this chart leaves
    them (and every MCPServer) in place; delete them by hand to remove Moorage's data."""
