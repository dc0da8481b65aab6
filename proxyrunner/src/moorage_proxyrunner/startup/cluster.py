"""The proxy runner's in-cluster start-up (spec §4.1): `moorage-proxyrunner run --config PATH`.

1. Read and check everything that can be checked without the cluster: the RunConfig, its pod
   template and the `--k8s-pod-patch`. A problem here exits with code 2 before anything is applied.
   Then load the credentials and wait, bounded by `--startup-timeout`, for the apiserver to answer.
2. Judge the pod it would run by the pod security rules (`moorage_api.podsecurity`, the
   webhook's own), with the allowances of the MCPTenants covering the namespace read from the
   apiserver; a refused pod applies nothing and exits 2 naming the fields. Resolve the permission
   profile (reading its ConfigMap if the RunConfig does not carry it), apply the StatefulSet,
   headless Service and egress NetworkPolicy, and start healing them.
3. Wait, bounded by `--readiness-timeout`, for the StatefulSet to be ready; on time-out log what
   the pods are doing and exit 1 so that Kubernetes restarts the proxy.
4. Build the backend — stdio through `pods/attach` (`AttachChannelFactory`), HTTP through each
   pod's DNS name under the headless Service — and serve it with the front end until SIGTERM.
   A stdio server whose proxies share sessions through Redis runs one backend pod per proxy
   replica: this replica attaches only to the pod whose ordinal's Lease it holds
   (`startup.stdioleases`), and follows the live `proxy_replicas` to scale them.

A RunConfig with `remote` (an MCPRemoteProxy) skips steps 2 and 3: there is no workload, and
the backend is the remote server (`startup.remote`). So does one with `aggregate` (a
VirtualMCPServer): the backend is the aggregator over its members (`startup.aggregate`).

A start-up that cannot go on raises `StartupFailure` naming the flag or RunConfig field to
change; it is logged as one `startup_failed` line and becomes the exit code. SIGTERM ends the
process at any stage; a background task (the healer, the RunConfig watch) that dies ends it too.

The CLI (`moorage_proxyrunner.__main__`) calls `run_from_config(args)`; it may register this
module's flags with `add_cluster_arguments(run_parser)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from moorage_api.naming import proxy_service_hosts
from moorage_api.podpatch import PodPatchError, parse_pod_patch
from moorage_api.podsecurity import NO_ALLOWANCES, check_pod_security
from moorage_api.runconfig import RunConfig, RunConfigError, load_runconfig
from moorage_core.errors import Forbidden, KubeError
from moorage_core.kube import JsonObject, KubeClient
from moorage_core.running import Lifecycle, report_startup_failure, run_service
from moorage_core.settings import SettingError, parse_duration, parse_list
from moorage_core.startup import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    StartupFailure,
    connect_kube,
    wait_for_apiserver,
)
from moorage_core.supervising import TaskSupervisor
from moorage_proxyrunner.backends.remote.outgoing import check_outgoing_secrets
from moorage_proxyrunner.backends.stdio.attach import AttachChannelFactory, StreamChannel
from moorage_proxyrunner.backends.stdio.processes import subprocess_factory
from moorage_proxyrunner.config.limits import (
    DEFAULT_DRAIN_TIMEOUT,
    Limits,
    drain_timeout_from,
    limits_from,
)
from moorage_proxyrunner.config.settings import (
    ADVERTISE_ADDRESS_ENV,
    DEFAULT_MAX_BODY_BYTES,
    ProxyRunnerSettings,
    advertise_address_from,
    parse_advertise_address,
)
from moorage_proxyrunner.front.metrics import ProxyMetrics
from moorage_proxyrunner.policy.chain import (
    LiveConfigError,
    Middleware,
    tool_policy_from_runconfig,
)
from moorage_proxyrunner.policy.reload import runconfig_configmap_name
from moorage_proxyrunner.sessionstore.redisconn import (
    RedisSettingError,
    connection_options,
    fetch_redis_ca,
)
from moorage_proxyrunner.startup.aggregate import aggregate_backend
from moorage_proxyrunner.startup.assembly import (
    Backend,
    Reloading,
    build_endpoints,
    serve_proxy,
    share_sessions,
    shared_buckets,
    with_outgoing,
)
from moorage_proxyrunner.startup.remote import remote_backend
from moorage_proxyrunner.startup.stdioleases import LeasedChannelFactory, follow_proxy_replicas
from moorage_proxyrunner.workload.builders import (
    ProfileError,
    WorkloadSpec,
    build_backend_urls,
    desired_workload,
    pod_security_subject,
    wanted_replicas,
    workload_spec_from_runconfig,
)
from moorage_proxyrunner.workload.manager import (
    WorkloadManager,
    WorkloadNotReady,
    fetch_allowances,
    fetch_egress,
)
from moorage_proxyrunner.workload.ordinallease import OrdinalLease

log = structlog.get_logger(__name__)

DEFAULT_READINESS_TIMEOUT: Final = 300.0
DEFAULT_STARTUP_TIMEOUT: Final = 60.0
CONFIG_SETTING: Final = "--config"
KUBECONFIG_SETTING: Final = "KUBECONFIG / --kubeconfig"
STARTUP_TIMEOUT_SETTING: Final = "STARTUP_TIMEOUT / --startup-timeout"

ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - a pod serves its Service on every interface

T = TypeVar("T")

ChannelOpener = Callable[[str], Awaitable[StreamChannel]]
"""Opens the stdio channel to a pod by name (default: `pods/attach` on container `mcp`)."""


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """How to run in a cluster; everything about the MCP server itself is in the RunConfig."""

    config: Path
    """The RunConfig file (`runconfig.json`)."""
    pod_patch: str | None = None
    """`--k8s-pod-patch`: a PodTemplateSpec (JSON) merged after the RunConfig's template."""
    readiness_timeout: float = DEFAULT_READINESS_TIMEOUT
    """Seconds to wait for the StatefulSet to be ready before exiting 1 (default 300)."""
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    """Seconds to wait for the apiserver to answer at start before exiting 1 (default 60)."""
    host: str = ALL_INTERFACES
    """Listen address (default all interfaces: the proxy's Service reaches the pod IP)."""
    port: int | None = None
    """Listen port; None uses the RunConfig's `port`."""
    kubeconfig: str | None = None
    """Kubeconfig path; None: `$KUBECONFIG`, the in-cluster service account, `~/.kube/config`."""
    cluster_domain: str = "cluster.local"
    """DNS domain of the cluster, for the HTTP backend pods' names."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest MCP request body accepted (default 8 MiB)."""
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    """Seconds SIGTERM lets requests in flight finish before the sessions are handed over
    (`--drain-timeout` / MOORAGE_DRAIN_TIMEOUT, default 10)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header values accepted besides the RunConfig's `allowed_hosts`."""
    allowed_origins: tuple[str, ...] = ()
    """Extra Origin values accepted."""
    limits: Limits = field(default_factory=Limits)
    """Time, session, queue and in-flight bounds (flags or their environment variables)."""
    lease_holder: str | None = None
    """This replica's name as the holder of its backend ordinal's Lease (a stdio server whose
    proxies share sessions through Redis); None: `POD_NAME`, else the host name."""
    local_command: tuple[str, ...] = ()
    """For a stdio server: run this command next to the proxy instead of attaching to the pod
    (the words after `--`). A development aid — the demo uses it on a control plane whose fake
    nodes run no containers; the workload is still applied and awaited as usual."""
    advertise_address: str | None = None
    """`--advertise-address`; None: `MOORAGE_ADVERTISE_ADDRESS`, else `$POD_IP:<port>`."""


# -- flags ---------------------------------------------------------------------------------


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags only the in-cluster start-up reads on the `run` sub-command."""
    parser.add_argument(
        "--k8s-pod-patch",
        metavar="JSON",
        default=None,
        help="a PodTemplateSpec merged into the MCP server's pod template after the RunConfig's "
        "podTemplateSpec (Moorage's settings for container mcp still win)",
    )
    parser.add_argument(
        "--readiness-timeout",
        metavar="DURATION",
        default=None,
        help="how long to wait for the MCP server's StatefulSet to be ready before exiting 1 "
        f"(e.g. 90s, 5m; default {DEFAULT_READINESS_TIMEOUT:g}s)",
    )
    parser.add_argument(
        "--cluster-domain",
        default=None,
        help="the cluster's DNS domain, for HTTP backend pods (default cluster.local)",
    )
    parser.add_argument(
        "--startup-timeout",
        metavar="DURATION",
        default=None,
        help="how long to wait for the apiserver to answer at start before exiting 1 "
        f"(e.g. 30s; default {DEFAULT_STARTUP_TIMEOUT:g}s) [env STARTUP_TIMEOUT]",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster)")


def options_from_args(args: argparse.Namespace) -> ClusterOptions:
    """`ClusterOptions` from the `run` sub-command's arguments; `SettingError` when unusable.

    Arguments the CLI did not register keep their defaults, and `--port` is ignored: in a cluster
    the RunConfig's `port` (the one the proxy Service targets) decides.
    """
    timeout_text = getattr(args, "readiness_timeout", None)
    timeout = DEFAULT_READINESS_TIMEOUT
    if timeout_text is not None:
        timeout = parse_duration(str(timeout_text))
        if timeout <= 0:
            raise SettingError("--readiness-timeout must be positive")
    startup_text = getattr(args, "startup_timeout", None) or os.environ.get("STARTUP_TIMEOUT")
    startup_timeout = DEFAULT_STARTUP_TIMEOUT
    if startup_text:
        try:
            startup_timeout = parse_duration(str(startup_text))
        except SettingError as exc:
            raise SettingError(f"{STARTUP_TIMEOUT_SETTING}: {exc}") from None
        if startup_timeout <= 0:
            raise SettingError(f"{STARTUP_TIMEOUT_SETTING} must be positive")
    return ClusterOptions(
        config=Path(getattr(args, "config", None) or "/etc/moorage/runconfig.json"),
        pod_patch=getattr(args, "k8s_pod_patch", None),
        readiness_timeout=timeout,
        startup_timeout=startup_timeout,
        host=getattr(args, "host", None) or ALL_INTERFACES,
        kubeconfig=getattr(args, "kubeconfig", None),
        cluster_domain=getattr(args, "cluster_domain", None) or "cluster.local",
        max_body_bytes=int(getattr(args, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        drain_timeout=drain_timeout_from(args),
        allowed_hosts=parse_list(getattr(args, "allowed_hosts", "") or ""),
        allowed_origins=parse_list(getattr(args, "allowed_origins", "") or ""),
        local_command=tuple(getattr(args, "server_command", None) or ()),
        limits=limits_from(args),
        advertise_address=_advertise_flag(args),
    )


def _advertise_flag(args: argparse.Namespace) -> str | None:
    """`--advertise-address` or its variable, checked now so that a bad one exits at once."""
    text = getattr(args, "advertise_address", None) or os.environ.get(ADVERTISE_ADDRESS_ENV)
    return parse_advertise_address(text) if text else None


# -- pure preparation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything checked before the cluster is touched."""

    runconfig: RunConfig
    spec: WorkloadSpec
    pod_patch: JsonObject | None


def prepare(options: ClusterOptions, *, runconfig_text: str) -> Prepared:
    """Parse and check the RunConfig and the pod patch; `StartupFailure` (exit 2) if unusable."""
    try:
        pod_patch = parse_pod_patch(options.pod_patch) if options.pod_patch is not None else None
    except PodPatchError as exc:
        raise StartupFailure(
            "--k8s-pod-patch", str(exc), hint="give a PodTemplateSpec as JSON"
        ) from None
    try:
        runconfig = load_runconfig(runconfig_text)
        spec = workload_spec_from_runconfig(runconfig)
    except (RunConfigError, PodPatchError) as exc:
        raise StartupFailure(
            CONFIG_SETTING,
            f"{options.config}: {exc}",
            hint="fix the MCPServer the operator wrote it from (or the file itself)",
        ) from None
    redis = runconfig.session_storage.redis
    try:
        if redis is not None:
            connection_options(redis)  # the password variable is set
    except RedisSettingError as exc:
        raise StartupFailure(
            "sessionStorage.redis",
            str(exc),
            hint="check the MCPServer's sessionStorage.redis.passwordSecretRef",
        ) from None
    return Prepared(runconfig=runconfig, spec=spec, pod_patch=pod_patch)


def read_and_prepare(options: ClusterOptions) -> Prepared:
    """`prepare` the RunConfig file of `options`; `StartupFailure` (exit 2) if unreadable."""
    try:
        text = options.config.read_text()
    except OSError as exc:
        raise StartupFailure(
            CONFIG_SETTING,
            f"cannot read {options.config}: {exc.strerror or exc}",
            hint="mount the MCPServer's <name>-runconfig ConfigMap there",
        ) from None
    return prepare(options, runconfig_text=text)


def build_allowed_hosts(runconfig: RunConfig, options: ClusterOptions) -> tuple[str, ...]:
    """The `Host` values the proxy accepts: the RunConfig's, then the flag's.

    Never empty, because an empty list would accept any `Host`: a RunConfig written before it
    carried `allowed_hosts` gets the Service's names derived here (the next one the operator
    writes carries them, and rolls the proxy).
    """
    hosts = runconfig.allowed_hosts or proxy_service_hosts(
        runconfig.name,
        namespace=runconfig.namespace,
        port=runconfig.port,
        cluster_domain=options.cluster_domain,
    )
    return tuple(dict.fromkeys([*hosts, *options.allowed_hosts]))


def build_proxy_settings(
    runconfig: RunConfig, options: ClusterOptions, *, environ: Mapping[str, str] = os.environ
) -> ProxyRunnerSettings:
    """How the proxy serves clients, from the RunConfig, the flags and `environ`."""
    port = runconfig.port if options.port is None else options.port
    return ProxyRunnerSettings(
        host=options.host,
        port=port,
        listen_setting="--host and the RunConfig's port" if options.port is None else "--port",
        max_body_bytes=options.max_body_bytes,
        drain_timeout=options.drain_timeout,
        allowed_hosts=build_allowed_hosts(runconfig, options),
        allowed_origins=options.allowed_origins,
        endpoint_prefix=runconfig.endpoint_prefix or "",
        stdio_era=runconfig.stdio_era,
        trust_proxy_headers=runconfig.trust_proxy_headers,
        tool_policy=tool_policy_from_runconfig(runconfig),
        oidc=runconfig.oidc,
        authz=runconfig.authz,
        audit=runconfig.audit.enabled,
        rate_limits=runconfig.rate_limits,
        session_storage=runconfig.session_storage,
        limits=options.limits,
        advertise_address=advertise_address_from(
            options.advertise_address, port=port, environ=environ
        ),
    )


# -- start-up ------------------------------------------------------------------------------


async def check_pod_security_of(kube: KubeClient, prepared: Prepared) -> None:
    """`StartupFailure` (exit 2) when the pod breaks a pod security rule that no MCPTenant
    covering the namespace allows. MCPTenants are read only when a rule refuses something."""
    spec = prepared.spec
    subject = pod_security_subject(spec, pod_patch=prepared.pod_patch)
    refusals = check_pod_security(subject, allowances=NO_ALLOWANCES)
    if refusals:
        try:
            allowances = await fetch_allowances(kube, namespace=spec.namespace)
        except Forbidden as exc:
            raise StartupFailure(
                "the proxy runner's ServiceAccount",
                f"cannot list the MCPTenants that might allow the pod of {spec.namespace}/"
                f"{spec.name}: {exc}",
                hint="bind the ClusterRole moorage-proxyrunner-mcptenants to the ServiceAccounts "
                f"of namespace {spec.namespace!r} (deploy/overlays), or change the MCPServer",
                exit_code=EXIT_FAILED,
            ) from None
        refusals = check_pod_security(subject, allowances=allowances)
    if refusals:
        log.error(
            "pod_security_refused",
            refusals=[str(r) for r in refusals],
            hint="nothing was applied",
        )
        raise StartupFailure(
            "the pod template of --config",
            f"refusing to apply StatefulSet {spec.namespace}/{spec.name}: "
            + "; ".join(str(r) for r in refusals),
            hint="change the MCPServer (the RunConfig ConfigMap is rewritten from it), or ask a "
            "cluster admin for an MCPTenant that allows it in this namespace",
            exit_code=EXIT_CONFIG,
        )


async def start_workload(kube: KubeClient, prepared: Prepared) -> WorkloadManager:
    """Resolve egress, apply the workload; `StartupFailure` (exit 1) when the cluster refuses."""
    spec = prepared.spec
    try:
        await check_pod_security_of(kube, prepared)
        egress = await fetch_egress(kube, spec)
        desired = desired_workload(spec, pod_patch=prepared.pod_patch, egress=egress)
        manager = WorkloadManager(kube, spec=spec, desired=desired)
        await manager.apply_all()
    except ProfileError as exc:
        raise StartupFailure(
            "permission_profile in --config",
            f"cannot apply the workload of {spec.namespace}/{spec.name}: {exc}",
            hint="create the profile's ConfigMap or change the MCPServer's permissionProfile",
            exit_code=EXIT_FAILED,
        ) from None
    except Forbidden as exc:
        raise StartupFailure(
            "the proxy runner's ServiceAccount",
            f"cannot apply the workload of {spec.namespace}/{spec.name}: {exc}",
            hint="check that its Role grants what the operator gives it",
            exit_code=EXIT_FAILED,
        ) from None
    except KubeError as exc:
        # Not a matter of permissions: an overloaded or failing apiserver, or a conflict with
        # another writer. Exiting lets Kubernetes restart the pod, which tries again.
        answer = f"the apiserver answered {exc}" if exc.status else f"no answer: {exc}"
        raise StartupFailure(
            "the apiserver",
            f"cannot apply the workload of {spec.namespace}/{spec.name}: {answer}",
            hint="the pod will be restarted to try again; if this persists, check the "
            "apiserver's health and the objects its answer names",
            exit_code=EXIT_FAILED,
        ) from None
    return manager


async def ready_workload(
    kube: KubeClient, prepared: Prepared, *, supervisor: TaskSupervisor, timeout: float
) -> tuple[WorkloadManager, JsonObject]:
    """Apply the workload, keep healing it under `supervisor`, and wait (at most `timeout`)
    for the StatefulSet to be ready: the manager and the ready StatefulSet."""
    manager = await start_workload(kube, prepared)
    healer = supervisor.spawn("workload", manager.run())
    log.info("workload_waiting", timeout_s=timeout)
    statefulset = await _unless_ended(manager.wait_ready(timeout=timeout), healer)
    log.info("workload_ready", replicas=wanted_replicas(statefulset))
    return manager, statefulset


def cluster_backend(
    kube: KubeClient,
    *,
    manager: WorkloadManager,
    statefulset: JsonObject,
    cluster_domain: str,
    open_channel: ChannelOpener | None = None,
    local_command: tuple[str, ...] = (),
    lease_holder: str | None = None,
) -> Backend:
    """What the proxy fronts in a cluster: the stdio server through `pods/attach` (or through
    `local_command`'s pipes), or the HTTP servers at the pods' DNS names."""
    spec = manager.spec
    if spec.is_stdio and local_command:
        log.warning(
            "stdio_local_command", command=local_command[0], hint="not attaching to the pod"
        )
        return Backend(spec.transport, channels=subprocess_factory(local_command))
    if spec.is_stdio and spec.leased_ordinals is not None:
        lease = OrdinalLease(
            kube,
            namespace=spec.namespace,
            statefulset=spec.name,
            holder=lease_holder or pod_identity(),
            ordinals=spec.leased_ordinals,
        )
        leased = LeasedChannelFactory(
            lease,
            attach=lambda choose: AttachChannelFactory(
                kube, pods=manager.pods, open_channel=open_channel, choose=choose
            ),
        )
        log.info("stdio_leased_backends", ordinals=spec.leased_ordinals, holder=lease.holder)
        return Backend(spec.transport, channels=leased)
    if spec.is_stdio:
        factory = AttachChannelFactory(kube, pods=manager.pods, open_channel=open_channel)
        return Backend(spec.transport, channels=factory)
    urls = build_backend_urls(
        spec, replicas=wanted_replicas(statefulset), cluster_domain=cluster_domain
    )
    if not urls:
        raise StartupFailure(
            "backend_replicas in --config",
            f"StatefulSet {spec.namespace}/{spec.name} has 0 replicas: nothing to proxy to",
            hint="give the MCPServer backendReplicas of 1 or more",
            exit_code=EXIT_FAILED,
        )
    log.info("http_backends", targets=urls)
    return Backend(spec.transport, target_urls=tuple(urls))


def pod_identity() -> str:
    """This proxy replica's name as a Lease holder: `POD_NAME` (the operator sets it from the
    downward API), else the host name (a pod's is its name)."""
    return os.environ.get("POD_NAME") or socket.gethostname()


def follow_rescaling(
    kube: KubeClient,
    spec: WorkloadSpec,
    *,
    manager: WorkloadManager,
    lease: OrdinalLease,
    supervisor: TaskSupervisor,
) -> None:
    """Follow the RunConfig's live `proxy_replicas`: scale the backend pods and the Lease range
    to it (every proxy replica does, so they agree)."""

    def rescale(ordinals: int) -> None:
        manager.rescale(ordinals)
        lease.resize(ordinals)

    supervisor.spawn(
        "proxy replicas",
        follow_proxy_replicas(
            kube,
            namespace=spec.namespace,
            configmap=runconfig_configmap_name(spec.name),
            on_ordinals=rescale,
        ),
    )


async def run_cluster(
    options: ClusterOptions,
    *,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
    open_channel: ChannelOpener | None = None,
    registry: CollectorRegistry | None = None,
    lifecycle: Lifecycle | None = None,
) -> int:
    """The whole start-up and serving; the process exit code.

    `stop` ends serving like SIGTERM does; `open_channel` replaces `pods/attach` for stdio (the
    tests use `pods/exec` where the fake kubelet cannot attach to a process). With `lifecycle`
    (the command), its stop event is used and it is told when start-up is over.
    """
    try:
        return await _run_cluster(
            options,
            stop=stop,
            on_listening=on_listening,
            open_channel=open_channel,
            registry=registry,
            lifecycle=lifecycle,
        )
    except StartupFailure as exc:
        return report_startup_failure(exc)
    finally:
        structlog.contextvars.unbind_contextvars("mcpserver", "namespace")


async def _run_cluster(
    options: ClusterOptions,
    *,
    stop: asyncio.Event | None,
    on_listening: Callable[[int], None] | None,
    open_channel: ChannelOpener | None,
    registry: CollectorRegistry | None,
    lifecycle: Lifecycle | None,
) -> int:
    prepared = read_and_prepare(options)
    spec = prepared.spec
    structlog.contextvars.bind_contextvars(mcpserver=spec.name, namespace=spec.namespace)
    check_outgoing_secrets(prepared.runconfig, os.environ)
    settings = build_proxy_settings(prepared.runconfig, options)
    if lifecycle is not None:
        stop = lifecycle.stop
    stop = stop or asyncio.Event()

    def listening(port: int) -> None:
        if on_listening is not None:
            on_listening(port)
        if lifecycle is not None:
            lifecycle.serving()

    kube = await connect_kube(
        kubeconfig=options.kubeconfig,
        setting=KUBECONFIG_SETTING,
        user_agent="moorage-proxyrunner",
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(kube.close)
        supervisor = TaskSupervisor(on_failure=stop.set)
        stack.push_async_callback(supervisor.aclose)
        try:
            await wait_for_apiserver(
                kube,
                timeout=options.startup_timeout,
                setting=STARTUP_TIMEOUT_SETTING,
                credentials_setting=KUBECONFIG_SETTING,
            )
            try:
                redis_ca = await fetch_redis_ca(kube, prepared.runconfig)
            except RedisSettingError as exc:
                raise StartupFailure(
                    "sessionStorage.redis.tls.caConfigMapRef",
                    str(exc),
                    hint="create the ConfigMap with the Redis CA bundle under that key",
                ) from None
            remote = prepared.runconfig.remote is not None
            aggregate = prepared.runconfig.aggregate is not None
            if not remote and not aggregate:
                manager, statefulset = await ready_workload(
                    kube, prepared, supervisor=supervisor, timeout=options.readiness_timeout
                )
            registry = registry or CollectorRegistry()
            metrics = ProxyMetrics(registry)
            sharing = share_sessions(
                settings, supervisor=supervisor, stack=stack, metrics=metrics, redis_ca=redis_ca
            )
            try:
                middleware = Middleware(
                    settings,
                    registry=registry,
                    kube=kube,
                    redis_ca=redis_ca,
                    buckets=shared_buckets(sharing),
                )
            except LiveConfigError as exc:
                raise StartupFailure(
                    "oidc or authz in --config",
                    str(exc),
                    hint="fix the MCPServer's oidcConfig or authzConfig",
                ) from None
            if aggregate:
                backend = aggregate_backend(
                    prepared.runconfig,
                    registry=registry,
                    supervisor=supervisor,
                    stack=stack,
                    kube=kube,
                    sharing=sharing,
                )
            elif remote:
                backend = remote_backend(
                    kube,
                    prepared.runconfig,
                    settings=settings,
                    registry=registry,
                    supervisor=supervisor,
                )
            else:
                backend = with_outgoing(
                    cluster_backend(
                        kube,
                        manager=manager,
                        statefulset=statefulset,
                        cluster_domain=options.cluster_domain,
                        open_channel=open_channel,
                        local_command=options.local_command,
                        lease_holder=options.lease_holder,
                    ),
                    prepared.runconfig,
                    settings=settings,
                    registry=registry,
                )
            if backend.client is not None:
                stack.push_async_callback(backend.client.close)
            if isinstance(backend.channels, AttachChannelFactory | LeasedChannelFactory):
                stack.push_async_callback(backend.channels.aclose)
            if isinstance(backend.channels, LeasedChannelFactory):
                follow_rescaling(
                    kube, spec, manager=manager, lease=backend.channels.lease, supervisor=supervisor
                )
            endpoints = build_endpoints(
                backend,
                settings=settings,
                metrics=metrics,
                pipeline=middleware.pipeline,
                sharing=sharing,
            )
            configmap = runconfig_configmap_name(spec.name)
            if aggregate:
                # A VirtualMCPServer's children are named `<name>-vmcp-*`.
                configmap = runconfig_configmap_name(f"{spec.name}-vmcp")
            await serve_proxy(
                settings,
                endpoints,
                middleware,
                transport=backend.transport,
                registry=registry,
                supervisor=supervisor,
                stop=stop,
                on_listening=listening,
                handle_signals=lifecycle is None,
                reloading=Reloading(
                    prepared.runconfig,
                    watch=lambda reloader: reloader.watch_configmap(
                        kube, namespace=spec.namespace, name=configmap
                    ),
                ),
                handover=sharing.hand_over,
            )
        except WorkloadNotReady as exc:
            log.error(
                "workload_not_ready",
                error=str(exc),
                problems=exc.problems,
                hint="the proxy exits so that Kubernetes restarts it",
            )
            return EXIT_FAILED
    return EXIT_OK


async def _unless_ended(work: Awaitable[T], watchdog: asyncio.Task[None]) -> T:
    """`await work`, unless `watchdog` ends first: then its exception (or a RuntimeError)."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, watchdog}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.done() and not task.cancelled():
        return task.result()
    watchdog.result()
    raise RuntimeError("the workload watch ended unexpectedly")


def run_from_config(args: argparse.Namespace) -> int:
    """Entry point for `moorage-proxyrunner run [--config PATH]`: the process exit code."""
    try:
        options = options_from_args(args)
    except SettingError as exc:
        log.error("startup_failed", setting="flags", error=str(exc), hint="see --help")
        return EXIT_CONFIG
    return run_service(
        lambda lifecycle: run_cluster(options, lifecycle=lifecycle),
        drain_timeout=options.drain_timeout,
    )
