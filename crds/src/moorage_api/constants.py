"""Names every component agrees on: API group and kinds, labels, annotations, finalizers, managers.

Pure data. Anything that names an object or a key shared between the operator, the webhook and the
proxy runner lives here (or in `moorage_api.naming` when it is computed from an object's name), so
that a rename happens in one place.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "moorage.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "moorage"

KIND_MCPSERVER: Final = "MCPServer"
KIND_MCPTOOLCONFIG: Final = "MCPToolConfig"
KIND_MCPREGISTRY: Final = "MCPRegistry"
KIND_MCPTENANT: Final = "MCPTenant"
KIND_MCPREMOTEPROXY: Final = "MCPRemoteProxy"
KIND_MCPEXTERNALAUTHCONFIG: Final = "MCPExternalAuthConfig"
KIND_MCPGROUP: Final = "MCPGroup"
KIND_VIRTUALMCPSERVER: Final = "VirtualMCPServer"

PLURAL_MCPSERVER: Final = "mcpservers"
PLURAL_MCPTOOLCONFIG: Final = "mcptoolconfigs"
PLURAL_MCPREGISTRY: Final = "mcpregistries"
PLURAL_MCPTENANT: Final = "mcptenants"
PLURAL_MCPREMOTEPROXY: Final = "mcpremoteproxies"
PLURAL_MCPEXTERNALAUTHCONFIG: Final = "mcpexternalauthconfigs"
PLURAL_MCPGROUP: Final = "mcpgroups"
PLURAL_VIRTUALMCPSERVER: Final = "virtualmcpservers"

SINGULAR_MCPSERVER: Final = "mcpserver"
SINGULAR_MCPTOOLCONFIG: Final = "mcptoolconfig"
SINGULAR_MCPREGISTRY: Final = "mcpregistry"
SINGULAR_MCPTENANT: Final = "mcptenant"
SINGULAR_MCPREMOTEPROXY: Final = "mcpremoteproxy"
SINGULAR_MCPEXTERNALAUTHCONFIG: Final = "mcpexternalauthconfig"
SINGULAR_MCPGROUP: Final = "mcpgroup"
SINGULAR_VIRTUALMCPSERVER: Final = "virtualmcpserver"

SHORT_NAMES_MCPSERVER: Final = ("mcps", "mcpserver")
SHORT_NAMES_MCPTOOLCONFIG: Final = ("mcptc",)
SHORT_NAMES_MCPREGISTRY: Final = ("mcpreg",)
SHORT_NAMES_MCPTENANT: Final = ("mcpten",)
SHORT_NAMES_MCPREMOTEPROXY: Final = ("mcprp", "rp")
SHORT_NAMES_MCPEXTERNALAUTHCONFIG: Final = ("mcpeac",)
SHORT_NAMES_MCPGROUP: Final = ("mcpg",)
SHORT_NAMES_VIRTUALMCPSERVER: Final = ("vmcp",)

# Labels on everything Moorage creates (spec §3). The operator's informers select owned objects
# with LABEL_MANAGED_BY=MANAGED_BY only, so every child must carry it.
LABEL_APP: Final = "app"
"""`app: mcpserver` on an MCPServer's children and pods, as the incumbent operator labels them, so
that Services and NetworkPolicies written for it select Moorage's pods too."""
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MCPSERVER: Final = f"{GROUP}/mcpserver"
LABEL_MCPREGISTRY: Final = f"{GROUP}/mcpregistry"
LABEL_MCPREMOTEPROXY: Final = f"{GROUP}/mcpremoteproxy"
LABEL_VIRTUALMCPSERVER: Final = f"{GROUP}/virtualmcpserver"

NAME_MCPSERVER: Final = "mcpserver"
"""Value of LABEL_NAME on an MCPServer's children."""
NAME_MCPREGISTRY: Final = "mcpregistry"
"""Value of LABEL_NAME on an MCPRegistry's children."""
NAME_MCPREMOTEPROXY: Final = "mcpremoteproxy"
"""Value of LABEL_NAME on an MCPRemoteProxy's children."""
NAME_VIRTUALMCPSERVER: Final = "virtualmcpserver"
"""Value of LABEL_NAME on a VirtualMCPServer's children."""
MANAGED_BY: Final = "moorage"
PART_OF: Final = "moorage"
COMPONENT_MCP_SERVER: Final = "mcp-server"
"""Value of LABEL_COMPONENT on the MCP server's StatefulSet pods (part of its selector)."""
COMPONENT_PROXY_RUNNER: Final = "proxy-runner"
COMPONENT_REGISTRY_API: Final = "registry-api"

ANNOTATION_CONTENT_CHECKSUM: Final = f"{GROUP}/content-checksum"
"""On a ConfigMap the operator renders: checksum of its data, to skip writes when unchanged."""
ANNOTATION_RUNCONFIG_CHECKSUM: Final = f"{GROUP}/runconfig-checksum"
"""On the proxy Deployment's pod template: changes when a RunConfig change needs a restart."""
ANNOTATION_STDIO_ERA: Final = f"{GROUP}/stdio-era"
"""On a stdio server's pod template when its `stdioEra` is not the default: a process locks to
the era of its first message, so a change of era must replace the server's pod."""
ANNOTATION_SYNC: Final = f"{GROUP}/sync"
"""On an MCPRegistry: `true` requests a manual sync; the operator removes it once handled."""
SYNC_REQUESTED: Final = "true"

FINALIZER_TOOLCONFIG_PROTECTION: Final = f"{GROUP}/toolconfig-protection"
"""Keeps an MCPToolConfig while an MCPServer references it."""
FINALIZER_GROUP_MEMBERS: Final = f"{GROUP}/group-members"
"""Keeps an MCPGroup while an MCPServer or MCPRemoteProxy names it in `spec.groupRef`."""

FIELD_MANAGER_OPERATOR: Final = "moorage-operator"
FIELD_MANAGER_PROXYRUNNER: Final = "moorage-proxyrunner"

CONTAINER_MCP: Final = "mcp"
"""The MCP server's container in its StatefulSet pod; Moorage's required settings target it."""
CONTAINER_PROXYRUNNER: Final = "proxyrunner"
RUNCONFIG_KEY: Final = "runconfig.json"
"""Key of the RunConfig in ConfigMap `<name>-runconfig`."""
RUNCONFIG_PATH: Final = "/etc/moorage/runconfig.json"
"""Where the proxy runner reads its RunConfig by default."""
REGISTRY_DATA_KEY: Final = "registry.json"
REGISTRY_SYNC_METADATA_KEY: Final = "sync_metadata.json"
REGISTRY_API_PORT: Final = 8080
MCP_SERVICE_AFFINITY_TIMEOUT: Final = 1800
"""Seconds a client IP stays pinned to one MCP pod through Service `mcp-<name>` (the incumbent
operator's value)."""
DEFAULT_CLUSTER_DOMAIN: Final = "cluster.local"
"""The cluster's DNS domain unless the operator's CLUSTER_DOMAIN says otherwise."""
