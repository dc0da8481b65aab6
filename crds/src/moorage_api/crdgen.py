"""Generate the CustomResourceDefinitions in `crds/manifests` from the models.

`python -m moorage_api.crdgen` writes one `apiextensions.k8s.io/v1` CRD per kind
(`<plural>.moorage.dev.yaml`) and a `kustomization.yaml` listing them; `--check` writes nothing and
exits 1 when the committed files differ. Output is deterministic: same models, same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from moorage_api.constants import (
    CATEGORY,
    GROUP,
    KIND_MCPEXTERNALAUTHCONFIG,
    KIND_MCPGROUP,
    KIND_MCPREGISTRY,
    KIND_MCPREMOTEPROXY,
    KIND_MCPSERVER,
    KIND_MCPTENANT,
    KIND_MCPTOOLCONFIG,
    KIND_VIRTUALMCPSERVER,
    PLURAL_MCPEXTERNALAUTHCONFIG,
    PLURAL_MCPGROUP,
    PLURAL_MCPREGISTRY,
    PLURAL_MCPREMOTEPROXY,
    PLURAL_MCPSERVER,
    PLURAL_MCPTENANT,
    PLURAL_MCPTOOLCONFIG,
    PLURAL_VIRTUALMCPSERVER,
    SHORT_NAMES_MCPEXTERNALAUTHCONFIG,
    SHORT_NAMES_MCPGROUP,
    SHORT_NAMES_MCPREGISTRY,
    SHORT_NAMES_MCPREMOTEPROXY,
    SHORT_NAMES_MCPSERVER,
    SHORT_NAMES_MCPTENANT,
    SHORT_NAMES_MCPTOOLCONFIG,
    SHORT_NAMES_VIRTUALMCPSERVER,
    SINGULAR_MCPEXTERNALAUTHCONFIG,
    SINGULAR_MCPGROUP,
    SINGULAR_MCPREGISTRY,
    SINGULAR_MCPREMOTEPROXY,
    SINGULAR_MCPSERVER,
    SINGULAR_MCPTENANT,
    SINGULAR_MCPTOOLCONFIG,
    SINGULAR_VIRTUALMCPSERVER,
    VERSION,
)
from moorage_api.generating import REPO_ROOT, run_generator
from moorage_api.mcpexternalauthconfig import MCPExternalAuthConfig
from moorage_api.mcpgroup import MCPGroup
from moorage_api.mcpregistry import MCPRegistry
from moorage_api.mcpremoteproxy import MCPRemoteProxy
from moorage_api.mcpserver import MCPServer
from moorage_api.mcptenant import MCPTenant
from moorage_api.mcptoolconfig import MCPToolConfig
from moorage_api.structural import JsonSchema, resource_schema
from moorage_api.virtualmcpserver import VirtualMCPServer

HEADER: Final = (
    "# Generated from crds/src/moorage_api by `python -m moorage_api.crdgen`. Do not edit.\n"
)
KUSTOMIZATION: Final = "kustomization.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry; priority 1 shows only with `-o wide`."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        column: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


AGE: Final = PrinterColumn(
    name="Age",
    type="date",
    json_path=".metadata.creationTimestamp",
    description="Time since the object was created.",
)


def condition_column(condition: str, *, name: str | None = None) -> PrinterColumn:
    return PrinterColumn(
        name=name or condition,
        type="string",
        json_path=f'.status.conditions[?(@.type=="{condition}")].status',
        description=f"Status of the {condition} condition.",
    )


@dataclass(frozen=True, slots=True)
class KindDefinition:
    """Everything a CRD says about one kind besides its schema."""

    model: type[BaseModel]
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]
    namespaced: bool = True
    """False for cluster-scoped kinds (MCPTenant: only cluster-wide rights may write it)."""

    @property
    def has_status(self) -> bool:
        return "status" in self.model.model_fields

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{self.crd_name}.yaml"


KINDS: Final = (
    KindDefinition(
        model=MCPServer,
        kind=KIND_MCPSERVER,
        plural=PLURAL_MCPSERVER,
        singular=SINGULAR_MCPSERVER,
        short_names=SHORT_NAMES_MCPSERVER,
        columns=(
            PrinterColumn(
                name="Phase",
                type="string",
                json_path=".status.phase",
                description="Coarse state of the server.",
            ),
            condition_column("Ready"),
            PrinterColumn(
                name="Replicas",
                type="integer",
                json_path=".status.readyReplicas",
                description="Ready proxy replicas.",
            ),
            PrinterColumn(
                name="URL",
                type="string",
                json_path=".status.url",
                description="Where MCP clients connect.",
            ),
            AGE,
            PrinterColumn(
                name="Transport",
                type="string",
                json_path=".spec.transport",
                description="How the server speaks MCP.",
                priority=1,
            ),
            PrinterColumn(
                name="Image",
                type="string",
                json_path=".spec.image",
                description="The MCP server's image.",
                priority=1,
            ),
        ),
    ),
    KindDefinition(
        model=MCPToolConfig,
        kind=KIND_MCPTOOLCONFIG,
        plural=PLURAL_MCPTOOLCONFIG,
        singular=SINGULAR_MCPTOOLCONFIG,
        short_names=SHORT_NAMES_MCPTOOLCONFIG,
        columns=(
            condition_column("Valid"),
            condition_column("DeletionBlocked", name="Blocked"),
            AGE,
            PrinterColumn(
                name="Hash",
                type="string",
                json_path=".status.configHash",
                description="Hash of the spec.",
                priority=1,
            ),
        ),
    ),
    KindDefinition(
        model=MCPRegistry,
        kind=KIND_MCPREGISTRY,
        plural=PLURAL_MCPREGISTRY,
        singular=SINGULAR_MCPREGISTRY,
        short_names=SHORT_NAMES_MCPREGISTRY,
        columns=(
            PrinterColumn(
                name="Phase",
                type="string",
                json_path=".status.phase",
                description="Coarse state of the registry.",
            ),
            PrinterColumn(
                name="Servers",
                type="integer",
                json_path=".status.syncStatus.serverCount",
                description="Servers in the synced data.",
            ),
            PrinterColumn(
                name="Last Sync",
                type="date",
                json_path=".status.syncStatus.lastSyncTime",
                description="When data last synced.",
            ),
            AGE,
            PrinterColumn(
                name="Source",
                type="string",
                json_path=".spec.source.type",
                description="configMap or git.",
                priority=1,
            ),
            PrinterColumn(
                name="Endpoint",
                type="string",
                json_path=".status.apiStatus.endpoint",
                description="The registry API's URL.",
                priority=1,
            ),
        ),
    ),
    KindDefinition(
        model=MCPRemoteProxy,
        kind=KIND_MCPREMOTEPROXY,
        plural=PLURAL_MCPREMOTEPROXY,
        singular=SINGULAR_MCPREMOTEPROXY,
        short_names=SHORT_NAMES_MCPREMOTEPROXY,
        columns=(
            PrinterColumn(
                name="Phase",
                type="string",
                json_path=".status.phase",
                description="Coarse state of the proxy.",
            ),
            PrinterColumn(
                name="Remote URL",
                type="string",
                json_path=".spec.remoteUrl",
                description="The remote MCP endpoint.",
            ),
            PrinterColumn(
                name="URL",
                type="string",
                json_path=".status.url",
                description="Where MCP clients connect.",
            ),
            PrinterColumn(
                name="Ready",
                type="integer",
                json_path=".status.readyReplicas",
                description="Ready proxy replicas.",
            ),
            AGE,
            replace(condition_column("RemoteAvailable", name="Remote"), priority=1),
        ),
    ),
    KindDefinition(
        model=MCPExternalAuthConfig,
        kind=KIND_MCPEXTERNALAUTHCONFIG,
        plural=PLURAL_MCPEXTERNALAUTHCONFIG,
        singular=SINGULAR_MCPEXTERNALAUTHCONFIG,
        short_names=SHORT_NAMES_MCPEXTERNALAUTHCONFIG,
        columns=(
            PrinterColumn(
                name="Type",
                type="string",
                json_path=".spec.type",
                description="The kind of outgoing authentication.",
            ),
            condition_column("Valid"),
            AGE,
        ),
    ),
    KindDefinition(
        model=MCPGroup,
        kind=KIND_MCPGROUP,
        plural=PLURAL_MCPGROUP,
        singular=SINGULAR_MCPGROUP,
        short_names=SHORT_NAMES_MCPGROUP,
        columns=(
            PrinterColumn(
                name="Members",
                type="integer",
                json_path=".status.memberCount",
                description="MCPServers and MCPRemoteProxies in the group.",
            ),
            PrinterColumn(
                name="Phase",
                type="string",
                json_path=".status.phase",
                description="Coarse state of the group.",
            ),
            AGE,
        ),
    ),
    KindDefinition(
        model=VirtualMCPServer,
        kind=KIND_VIRTUALMCPSERVER,
        plural=PLURAL_VIRTUALMCPSERVER,
        singular=SINGULAR_VIRTUALMCPSERVER,
        short_names=SHORT_NAMES_VIRTUALMCPSERVER,
        columns=(
            PrinterColumn(
                name="Phase",
                type="string",
                json_path=".status.phase",
                description="Coarse state of the virtual server.",
            ),
            PrinterColumn(
                name="URL",
                type="string",
                json_path=".status.url",
                description="Where MCP clients connect.",
            ),
            PrinterColumn(
                name="Backends",
                type="integer",
                json_path=".status.backendCount",
                description="Members of the group aggregated.",
            ),
            PrinterColumn(
                name="Ready",
                type="integer",
                json_path=".status.readyReplicas",
                description="Ready aggregator replicas.",
            ),
            AGE,
        ),
    ),
    KindDefinition(
        model=MCPTenant,
        kind=KIND_MCPTENANT,
        plural=PLURAL_MCPTENANT,
        singular=SINGULAR_MCPTENANT,
        short_names=SHORT_NAMES_MCPTENANT,
        columns=(
            PrinterColumn(
                name="Namespaces",
                type="string",
                json_path=".spec.namespaces",
                description="Namespaces covered.",
            ),
            AGE,
        ),
        namespaced=False,
    ),
)


def build_crd(definition: KindDefinition) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind, as a plain JSON-able dict."""
    schema: JsonSchema = resource_schema(definition.model)
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if definition.has_status:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = [column.to_json() for column in definition.columns]
    version["schema"] = {"openAPIV3Schema": schema}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": definition.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": definition.kind,
                "listKind": f"{definition.kind}List",
                "plural": definition.plural,
                "singular": definition.singular,
                "shortNames": list(definition.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced" if definition.namespaced else "Cluster",
            "versions": [version],
        },
    }


def to_yaml(document: dict[str, Any]) -> str:
    """Block-style YAML in the dict's own order, long lines unwrapped (stable diffs)."""
    return yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=1_000_000, default_flow_style=False
    )


def render_manifests(output: Path) -> dict[Path, str]:
    """File path → text of every file in `crds/manifests`."""
    files = {
        output / definition.file_name: HEADER + to_yaml(build_crd(definition))
        for definition in KINDS
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(definition.file_name for definition in KINDS),
    }
    files[output / KUSTOMIZATION] = HEADER + to_yaml(kustomization)
    return files


def stale_manifests(output: Path, files: dict[Path, str]) -> list[Path]:
    """YAML files in `output` this generator no longer produces (a renamed kind)."""
    if not output.is_dir():
        return []
    return sorted(path for path in output.glob("*.yaml") if path not in files)


DEFAULT_OUTPUT: Final = REPO_ROOT / "crds" / "manifests"


def main(argv: Sequence[str] | None = None) -> int:
    return run_generator(
        argv,
        prog="moorage_api.crdgen",
        description="Generate Moorage's CRDs from the moorage_api models.",
        default_output=DEFAULT_OUTPUT,
        render=render_manifests,
        stale=stale_manifests,
    )


if __name__ == "__main__":
    raise SystemExit(main())
