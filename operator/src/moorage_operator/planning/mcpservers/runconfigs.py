"""The RunConfig (spec §3.1) of an MCPServer: what its proxy runner reads from `<name>-runconfig`.

Pure: no I/O. The MCPServer supplies the workload (image, args, env, ports, pod template, ...);
`ResolvedInputs` supply what its references resolved to (tool filter and overrides, OIDC and
authorisation settings, the permission profile's egress). Secrets appear only as names and keys.
Rendering (`moorage_api.runconfig.render_runconfig_json`) is deterministic, so equal inputs give
byte-identical ConfigMap data and the reconciler can skip the write.
"""

from __future__ import annotations

from typing import Any

from moorage_api.constants import API_VERSION, DEFAULT_CLUSTER_DOMAIN, KIND_MCPSERVER
from moorage_api.mcpserver import MCPServer
from moorage_api.naming import mcp_service_account_name, proxy_service_hosts
from moorage_api.ratelimits import RateLimits
from moorage_api.runconfig import (
    OwnerReference,
    RunConfig,
    RunConfigAudit,
    RunConfigEnvVar,
    RunConfigToolOverride,
    SecretEnvVar,
    SecretKeyRef,
    runconfig_rate_limits,
    runconfig_session_storage,
)
from moorage_api.sessionstorage import SessionStorage
from moorage_operator.planning.mcpservers.references import ResolvedInputs


def server_name(server: MCPServer) -> str:
    """`metadata.name`; the apiserver always sets it on stored objects."""
    name = server.metadata.name
    if not name:
        raise ValueError("MCPServer has no metadata.name")
    return name


def server_namespace(server: MCPServer) -> str:
    namespace = server.metadata.namespace
    if not namespace:
        raise ValueError("MCPServer has no metadata.namespace")
    return namespace


def runconfig_owner(kind: str, *, name: str, uid: str | None) -> OwnerReference | None:
    """The RunConfig's owner (a `kind` object), or None before it has a uid (never when
    stored)."""
    if not uid:
        return None
    return OwnerReference(api_version=API_VERSION, kind=kind, name=name, uid=uid)


def desired_owner_reference(server: MCPServer) -> OwnerReference | None:
    """The MCPServer as an ownerReference, or None before it has a uid (never when stored)."""
    return runconfig_owner(KIND_MCPSERVER, name=server_name(server), uid=server.metadata.uid)


def desired_allowed_hosts(server: MCPServer, *, cluster_domain: str) -> list[str]:
    """The `Host` values the proxy accepts: its Service's names, then `spec.allowedHosts`."""
    derived = proxy_service_hosts(
        server_name(server),
        namespace=server_namespace(server),
        port=server.spec.port,
        cluster_domain=cluster_domain,
    )
    return derived + [host for host in server.spec.allowed_hosts if host not in derived]


def client_fields(inputs: ResolvedInputs, *, audit: bool) -> dict[str, Any]:
    """The RunConfig's client side (authentication, authorisation, tool filter, audit) and
    upstream authentication, alike for every kind that runs a proxy."""
    return {
        "oidc": inputs.oidc,
        "authz": inputs.authz,
        "tools_filter": list(inputs.tools_filter),
        "tools_override": {
            tool: RunConfigToolOverride.model_validate(dict(override))
            for tool, override in inputs.tools_override.items()
        },
        "audit": RunConfigAudit(enabled=audit),
        "outgoing_auth": inputs.outgoing_auth,
    }


def shared_state_fields(
    storage: SessionStorage, limits: RateLimits | None, *, namespace: str, name: str
) -> dict[str, Any]:
    """The RunConfig's `session_storage` and `rate_limits`, alike for every kind that runs a
    proxy; `name` is the proxy Deployment's, so the default Redis key prefix of two kinds'
    objects of one name never collides."""
    return {
        "session_storage": runconfig_session_storage(storage, namespace=namespace, name=name),
        "rate_limits": runconfig_rate_limits(limits),
    }


def stdio_proxy_replicas(server: MCPServer) -> int | None:
    """`proxy_replicas` of the RunConfig: a stdio server's proxy replicas above 1 sharing
    sessions through Redis (each runs its own backend pod); None for every other server, whose
    proxies do not need to know how many they are."""
    spec = server.spec
    if spec.transport != "stdio" or spec.session_storage.type != "redis":
        return None
    if spec.replicas is None or spec.replicas <= 1:
        return None
    return spec.replicas


def desired_runconfig(
    server: MCPServer, *, inputs: ResolvedInputs, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> RunConfig:
    """The RunConfig for `server` with its references resolved to `inputs`; `cluster_domain`
    completes the Service's DNS names the proxy answers to."""
    spec = server.spec
    name = server_name(server)
    namespace = server_namespace(server)
    return RunConfig(
        name=name,
        namespace=namespace,
        owner=desired_owner_reference(server),
        generation=server.metadata.generation or 0,
        image=spec.image,
        args=list(spec.args),
        env=[RunConfigEnvVar(name=var.name, value=var.value) for var in spec.env],
        secret_env=[
            SecretEnvVar(
                name=secret.env_name,
                secret_key_ref=SecretKeyRef(name=secret.name, key=secret.key),
            )
            for secret in spec.secrets
        ],
        transport=spec.transport,
        proxy_mode=spec.effective_proxy_mode,
        stdio_era=spec.stdio_era,
        port=spec.port,
        target_port=spec.target_port,
        pod_template_spec=spec.pod_template_spec,
        resources=spec.resources,
        service_account=spec.service_account or mcp_service_account_name(name),
        backend_replicas=spec.backend_replicas,
        proxy_replicas=stdio_proxy_replicas(server),
        permission_profile=inputs.permission_profile,
        allowed_hosts=desired_allowed_hosts(server, cluster_domain=cluster_domain),
        **client_fields(inputs, audit=spec.audit.enabled),
        trust_proxy_headers=spec.trust_proxy_headers,
        endpoint_prefix=spec.endpoint_prefix,
        **shared_state_fields(
            spec.session_storage, spec.rate_limits, namespace=namespace, name=name
        ),
    )
