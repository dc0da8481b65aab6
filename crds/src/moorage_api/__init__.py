"""Moorage API: pydantic models of our custom resources, the single source of truth for the CRDs.

Pure: no I/O, no asyncio, no Kubernetes client. Submodules:
`constants` (group, kinds, labels, annotations, finalizer, field managers), `naming` (children's
names, labels, status URL), `mcpserver`, `mcptoolconfig`, `mcpregistry`, `mcpremoteproxy`,
`mcpexternalauthconfig`, `mcpgroup`, `virtualmcpserver` (the kinds; `references` holds the references between them,
`outgoing` what a proxy sends upstream), `runconfig`
(the operator ↔ proxy runner contract), `documents` (JSON documents referenced from ConfigMaps),
`cedarbounds` (the size and nesting bounds every Cedar policy passes before it is parsed),
`images`, `durations`, `base` (shared parts and error formatting). `crdgen` and `docgen` generate
`crds/manifests` and `docs/reference.md` from these models.
"""

from moorage_api.base import Condition, ObjectMeta, validation_messages
from moorage_api.mcpexternalauthconfig import (
    MCPExternalAuthConfig,
    MCPExternalAuthConfigSpec,
    MCPExternalAuthConfigStatus,
    parse_mcpexternalauthconfig,
)
from moorage_api.mcpgroup import (
    MCPGroup,
    MCPGroupPhase,
    MCPGroupSpec,
    MCPGroupStatus,
    parse_mcpgroup,
)
from moorage_api.mcpregistry import (
    MCPRegistry,
    MCPRegistryPhase,
    MCPRegistrySpec,
    MCPRegistryStatus,
    parse_mcpregistry,
)
from moorage_api.mcpremoteproxy import (
    MCPRemoteProxy,
    MCPRemoteProxySpec,
    MCPRemoteProxyStatus,
    parse_mcpremoteproxy,
)
from moorage_api.mcpserver import (
    MCPServer,
    MCPServerPhase,
    MCPServerSpec,
    MCPServerStatus,
    parse_mcpserver,
)
from moorage_api.mcptoolconfig import (
    MCPToolConfig,
    MCPToolConfigSpec,
    MCPToolConfigStatus,
    parse_mcptoolconfig,
)
from moorage_api.runconfig import RunConfig, load_runconfig, render_runconfig_json
from moorage_api.virtualmcpserver import (
    VirtualMCPServer,
    VirtualMCPServerSpec,
    VirtualMCPServerStatus,
    parse_virtualmcpserver,
)

__all__ = [
    "Condition",
    "MCPExternalAuthConfig",
    "MCPExternalAuthConfigSpec",
    "MCPExternalAuthConfigStatus",
    "MCPGroup",
    "MCPGroupPhase",
    "MCPGroupSpec",
    "MCPGroupStatus",
    "MCPRegistry",
    "MCPRegistryPhase",
    "MCPRegistrySpec",
    "MCPRegistryStatus",
    "MCPRemoteProxy",
    "MCPRemoteProxySpec",
    "MCPRemoteProxyStatus",
    "MCPServer",
    "MCPServerPhase",
    "MCPServerSpec",
    "MCPServerStatus",
    "MCPToolConfig",
    "MCPToolConfigSpec",
    "MCPToolConfigStatus",
    "ObjectMeta",
    "RunConfig",
    "VirtualMCPServer",
    "VirtualMCPServerSpec",
    "VirtualMCPServerStatus",
    "load_runconfig",
    "parse_mcpexternalauthconfig",
    "parse_mcpgroup",
    "parse_mcpregistry",
    "parse_mcpremoteproxy",
    "parse_mcpserver",
    "parse_mcptoolconfig",
    "parse_virtualmcpserver",
    "render_runconfig_json",
    "validation_messages",
]
