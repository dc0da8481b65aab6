"""Names and labels of the objects Moorage creates, computed from the owner's name (spec §3).

Pure. The operator and the proxy runner both create children of an MCPServer and must agree on
their names, labels and selectors; they compute them here.
"""

from __future__ import annotations

from moorage_api.constants import (
    COMPONENT_MCP_SERVER,
    DEFAULT_CLUSTER_DOMAIN,
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_MCPREGISTRY,
    LABEL_MCPREMOTEPROXY,
    LABEL_MCPSERVER,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_VIRTUALMCPSERVER,
    MANAGED_BY,
    NAME_MCPREGISTRY,
    NAME_MCPREMOTEPROXY,
    NAME_MCPSERVER,
    NAME_VIRTUALMCPSERVER,
    PART_OF,
)
from moorage_api.mcpserver import ProxyMode
from moorage_api.outgoing import RemoteTransport


def proxy_service_name(server: str) -> str:
    """ClusterIP Service in front of the proxy runner."""
    return f"mcp-{server}-proxy"


def proxy_service_hosts(
    server: str, *, namespace: str, port: int, cluster_domain: str
) -> list[str]:
    """Every `Host` under which clients reach the proxy through its Service: the short name and
    each longer DNS name a pod's search path completes, each bare and with `:<port>`."""
    service = proxy_service_name(server)
    names = (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    )
    return [host for name in names for host in (name, f"{name}:{port}")]


def headless_service_name(server: str) -> str:
    """Headless Service of an HTTP-transport MCP server's StatefulSet."""
    return f"mcp-{server}-headless"


def mcp_service_name(server: str) -> str:
    """ClusterIP Service with ClientIP affinity in front of an HTTP-transport MCP server's pods
    (the incumbent operator's name for it)."""
    return f"mcp-{server}"


def runconfig_configmap_name(server: str) -> str:
    return f"{server}-runconfig"


def proxy_runner_name(server: str) -> str:
    """ServiceAccount, Role and RoleBinding of the proxy runner."""
    return f"{server}-proxy-runner"


def mcp_service_account_name(server: str) -> str:
    """ServiceAccount the operator creates for the MCP pods when `spec.serviceAccount` is unset."""
    return f"{server}-sa"


def stdio_pod_name(server: str, ordinal: int = 0) -> str:
    """A pod of a stdio server's StatefulSet `<name>`: ordinal 0 is the only one unless its
    proxies hold a Lease each (`stdio_lease_name`)."""
    return f"{server}-{ordinal}"


def stdio_lease_name(server: str, ordinal: int) -> str:
    """Lease `<name>-stdio-<ordinal>`: held by the one proxy replica attached to pod
    `<name>-<ordinal>` of a stdio server whose proxies share sessions through Redis."""
    return f"{server}-stdio-{ordinal}"


def egress_policy_name(server: str) -> str:
    """NetworkPolicy restricting the MCP pods' egress."""
    return f"{server}-egress"


def registry_storage_configmap_name(registry: str) -> str:
    return f"{registry}-registry-storage"


def registry_api_name(registry: str) -> str:
    """Deployment and Service of the registry API."""
    return f"{registry}-api"


def remote_proxy_name(proxy: str) -> str:
    """ServiceAccount, Role, RoleBinding and Deployment of an MCPRemoteProxy; the `remote-` infix
    keeps them apart from the children of an MCPServer of the same name."""
    return f"{proxy}-remote-proxy"


def remote_proxy_service_name(proxy: str) -> str:
    """ClusterIP Service in front of an MCPRemoteProxy's proxy runner."""
    return f"mcp-{proxy}-remote-proxy"


def remote_runconfig_configmap_name(proxy: str) -> str:
    return f"{proxy}-remote-runconfig"


def vmcp_name(server: str) -> str:
    """ServiceAccount, Role, RoleBinding and Deployment of a VirtualMCPServer's aggregator."""
    return f"{server}-vmcp"


def vmcp_service_name(server: str) -> str:
    """ClusterIP Service in front of a VirtualMCPServer's aggregator."""
    return f"mcp-{server}-vmcp"


def vmcp_runconfig_configmap_name(server: str) -> str:
    return f"{server}-vmcp-runconfig"


def _proxy_owner_labels(owner: str, *, kind_name: str, owner_label: str) -> dict[str, str]:
    return {
        LABEL_APP: kind_name,
        LABEL_NAME: kind_name,
        LABEL_INSTANCE: owner,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
        owner_label: owner,
    }


def mcpserver_labels(server: str) -> dict[str, str]:
    """Labels on every child (and pod) of an MCPServer; none of them is in a selector that
    Kubernetes keeps immutable except `LABEL_MCPSERVER` (see `mcp_pod_selector`)."""
    return _proxy_owner_labels(server, kind_name=NAME_MCPSERVER, owner_label=LABEL_MCPSERVER)


def mcp_pod_selector(server: str) -> dict[str, str]:
    """Selector of the MCP server's StatefulSet (and its headless Service, NetworkPolicy)."""
    return {LABEL_MCPSERVER: server, LABEL_COMPONENT: COMPONENT_MCP_SERVER}


def mcpregistry_labels(registry: str) -> dict[str, str]:
    """Labels on every child of an MCPRegistry."""
    return {
        LABEL_NAME: NAME_MCPREGISTRY,
        LABEL_INSTANCE: registry,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
        LABEL_MCPREGISTRY: registry,
    }


def mcpremoteproxy_labels(proxy: str) -> dict[str, str]:
    """Labels on every child (and pod) of an MCPRemoteProxy: an MCPServer's, with the kind's own
    name and key."""
    return _proxy_owner_labels(
        proxy, kind_name=NAME_MCPREMOTEPROXY, owner_label=LABEL_MCPREMOTEPROXY
    )


def mcpserver_url(
    server: str,
    *,
    namespace: str,
    port: int,
    proxy_mode: ProxyMode,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> str:
    """`status.url`: where clients in the cluster reach the proxy (spec §2.1); its host is one
    of `proxy_service_hosts`."""
    path = "/sse" if proxy_mode == "sse" else "/mcp"
    return f"http://{proxy_service_name(server)}.{namespace}.svc.{cluster_domain}:{port}{path}"


def mcpremoteproxy_url(
    proxy: str,
    *,
    namespace: str,
    port: int,
    transport: RemoteTransport,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
) -> str:
    """`status.url` of an MCPRemoteProxy: its Service, with the path clients of `transport` use."""
    path = "/sse" if transport == "sse" else "/mcp"
    service = remote_proxy_service_name(proxy)
    return f"http://{service}.{namespace}.svc.{cluster_domain}:{port}{path}"


def virtualmcpserver_labels(server: str) -> dict[str, str]:
    """Labels on every child (and pod) of a VirtualMCPServer."""
    return _proxy_owner_labels(
        server, kind_name=NAME_VIRTUALMCPSERVER, owner_label=LABEL_VIRTUALMCPSERVER
    )


def virtualmcpserver_url(
    server: str, *, namespace: str, port: int, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> str:
    """`status.url` of a VirtualMCPServer: its Service; the aggregator speaks streamable HTTP."""
    return f"http://{vmcp_service_name(server)}.{namespace}.svc.{cluster_domain}:{port}/mcp"
