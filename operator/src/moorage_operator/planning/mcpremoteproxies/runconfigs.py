"""The RunConfig of an MCPRemoteProxy: what its proxy runner reads from `<name>-remote-runconfig`.

The client side (OIDC, Cedar, tool filter, audit) and the upstream authentication are resolved
exactly as for an MCPServer (`ResolvedInputs`); `remote` carries the endpoint, its transport and
the headers forwarded to it, a header from a Secret only as an env reference
(`MOORAGE_HEADER_<n>`). There is no workload: no image, pod template or backend replicas.

Pure: no I/O.
"""

from __future__ import annotations

from moorage_api.constants import DEFAULT_CLUSTER_DOMAIN, KIND_MCPREMOTEPROXY
from moorage_api.mcpremoteproxy import MCPRemoteProxy, MCPRemoteProxySpec
from moorage_api.naming import remote_proxy_name, remote_proxy_service_name
from moorage_api.runconfig import RunConfig, RunConfigHeader, RunConfigRemote
from moorage_operator.planning.externalauth import forwarded_header_env, secret_value
from moorage_operator.planning.mcpservers.references import ResolvedInputs
from moorage_operator.planning.mcpservers.runconfigs import (
    client_fields,
    runconfig_owner,
    shared_state_fields,
)


def proxy_name(proxy: MCPRemoteProxy) -> str:
    """`metadata.name`; the apiserver always sets it on stored objects."""
    if not proxy.metadata.name:
        raise ValueError("MCPRemoteProxy has no metadata.name")
    return proxy.metadata.name


def proxy_namespace(proxy: MCPRemoteProxy) -> str:
    if not proxy.metadata.namespace:
        raise ValueError("MCPRemoteProxy has no metadata.namespace")
    return proxy.metadata.namespace


def service_hosts(service: str, *, namespace: str, port: int, cluster_domain: str) -> list[str]:
    """Every `Host` under which clients reach a Service: each DNS name a pod's search path
    completes, bare and with `:<port>`."""
    qualified = [f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    names = [service, *qualified, f"{qualified[-1]}.{cluster_domain}"]
    return [host for name in names for host in (name, f"{name}:{port}")]


def desired_remote(spec: MCPRemoteProxySpec) -> RunConfigRemote:
    """The remote endpoint and the headers forwarded to it (fixed ones first)."""
    forward = spec.header_forward
    headers = [
        RunConfigHeader(name=header.name, value=header.value)
        for header in (forward.add_headers if forward else ())
    ]
    headers += [
        RunConfigHeader(
            name=header.header_name,
            value_from=secret_value(forwarded_header_env(index), header.value_secret_ref),
        )
        for index, header in enumerate(forward.add_headers_from_secret if forward else ())
    ]
    return RunConfigRemote(
        url=spec.remote_url,
        transport=spec.transport,
        headers=headers,
        allow_private_endpoint=spec.allow_private_endpoint,
    )


def desired_remote_runconfig(
    proxy: MCPRemoteProxy, *, inputs: ResolvedInputs, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> RunConfig:
    """The RunConfig for `proxy` with its references resolved to `inputs`."""
    spec = proxy.spec
    name = proxy_name(proxy)
    namespace = proxy_namespace(proxy)
    return RunConfig(
        name=name,
        namespace=namespace,
        owner=runconfig_owner(KIND_MCPREMOTEPROXY, name=name, uid=proxy.metadata.uid),
        generation=proxy.metadata.generation or 0,
        transport=spec.transport,
        proxy_mode=spec.transport,
        port=spec.port,
        allowed_hosts=service_hosts(
            remote_proxy_service_name(name),
            namespace=namespace,
            port=spec.port,
            cluster_domain=cluster_domain,
        ),
        **client_fields(inputs, audit=spec.audit.enabled),
        trust_proxy_headers=spec.trust_proxy_headers,
        endpoint_prefix=spec.endpoint_prefix,
        remote=desired_remote(spec),
        **shared_state_fields(
            spec.session_storage,
            spec.rate_limits,
            namespace=namespace,
            name=remote_proxy_name(name),
        ),
    )
