"""Our CRDs in a real apiserver: installed, examples accepted, bad objects rejected by the schema.

Everything here is decided by the CRD alone (OpenAPI schema, CEL rules, list types): no webhook
and no operator run. Objects are sent with `fieldValidation=Strict` (what `kubectl apply
--validate=strict` sends), so unknown fields are rejected rather than pruned.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.cedarattacks import LONG_AND_CHAIN

from moorage_core import errors
from moorage_core.kube import (
    CONFIGMAPS,
    CRDS,
    DEPLOYMENTS,
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPREGISTRIES,
    MCPREMOTEPROXIES,
    MCPSERVERS,
    MCPTOOLCONFIGS,
    SECRETS,
    SERVICES,
    VIRTUALMCPSERVERS,
    KubeClient,
    ResourceKind,
)
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"
KINDS = {
    "MCPServer": MCPSERVERS,
    "MCPToolConfig": MCPTOOLCONFIGS,
    "MCPRegistry": MCPREGISTRIES,
    "MCPRemoteProxy": MCPREMOTEPROXIES,
    "MCPExternalAuthConfig": MCPEXTERNALAUTHCONFIGS,
    "MCPGroup": MCPGROUPS,
    "VirtualMCPServer": VIRTUALMCPSERVERS,
    "ConfigMap": CONFIGMAPS,
    "Secret": SECRETS,
    "Deployment": DEPLOYMENTS,
    "Service": SERVICES,
}


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    documents: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((f"{path.name}:{document['metadata']['name']}", document))
    return documents


async def create_strict(
    kube: KubeClient,
    kind: ResourceKind,
    body: dict[str, Any],
    *,
    namespace: str,
    dry_run: bool = True,
) -> dict[str, Any]:
    """Create with strict field validation (unknown fields are errors, not pruned)."""
    query = {"fieldValidation": "Strict"}
    if dry_run:
        query["dryRun"] = "All"
    result: dict[str, Any] = await kube.request(
        "POST", kind.path(namespace=namespace), verb="create", query=query, body=body
    )
    return result


def mcpserver(name: str = "probe", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/moorage-dev/mcp-server-time:2025.9.25", **spec},
    }


def mcpregistry(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRegistry",
        "metadata": {"name": "probe"},
        "spec": spec,
    }


def mcptoolconfig(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPToolConfig",
        "metadata": {"name": "probe"},
        "spec": spec,
    }


def without_image() -> dict[str, Any]:
    body = mcpserver()
    del body["spec"]["image"]
    return body


CM_SOURCE = {"type": "configMap", "configMap": {"name": "data"}}
GIT = "https://github.com/stacklok/toolhive.git"

REJECTED: list[Any] = [
    pytest.param(
        MCPSERVERS,
        mcpserver(sessionStorage={"type": "redis"}),
        "spec.sessionStorage.redis",
        "redis is required when type is redis",
        id="redis-storage-without-redis",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(
            sessionStorage={"type": "redis", "redis": {"address": "r:1", "keyPrefix": "a b"}}
        ),
        "spec.sessionStorage.redis.keyPrefix",
        "should match",
        id="redis-key-prefix-charset",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(
            sessionStorage={
                "type": "redis",
                "redis": {"address": "r:1", "tls": {"insecureSkipVerify": True}},
            }
        ),
        "spec.sessionStorage.redis.tls",
        "only used when enabled is true",
        id="redis-tls-options-without-tls",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(rateLimits={"perSubject": {"requestsPerMinute": 0, "burst": 1}}),
        "spec.rateLimits.perSubject.requestsPerMinute",
        "1",
        id="rate-limit-zero",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(rateLimits={}),
        "spec.rateLimits",
        "needs perSubject or at least one perTool limit",
        id="rate-limits-empty",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(
            rateLimits={
                "perTool": [
                    {"tool": "t", "requestsPerMinute": 1, "burst": 1},
                    {"tool": "t", "requestsPerMinute": 1, "burst": 1},
                ]
            }
        ),
        "spec.rateLimits.perTool[1]",
        "Duplicate value",
        id="rate-limit-tool-twice",
    ),
    pytest.param(
        MCPSERVERS, mcpserver(transport="grpc"), "spec.transport", "grpc", id="bad-transport"
    ),
    pytest.param(MCPSERVERS, without_image(), "spec.image", "Required", id="missing-image"),
    pytest.param(MCPSERVERS, mcpserver(port=70000), "spec.port", "65535", id="port-70000"),
    pytest.param(MCPSERVERS, mcpserver(targetPort=0), "spec.targetPort", "1", id="target-port-0"),
    pytest.param(MCPSERVERS, mcpserver(replicas=-1), "spec.replicas", "0", id="negative-replicas"),
    pytest.param(
        MCPSERVERS, mcpserver(image="Not An Image"), "spec.image", "should match", id="bad-image"
    ),
    pytest.param(MCPSERVERS, mcpserver(foo=1), "spec.foo", "unknown field", id="unknown-field"),
    pytest.param(
        MCPSERVERS,
        mcpserver(audit={"enabled": True, "verbose": True}),
        "spec.audit.verbose",
        "unknown field",
        id="unknown-nested-field",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
        "Duplicate value",
        id="duplicate-env",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(env=[{"name": "1=BAD", "value": "x"}]),
        "spec.env[0].name",
        "should match",
        id="bad-env-name",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(sessionAffinity="Sticky"),
        "spec.sessionAffinity",
        "Sticky",
        id="bad-session-affinity",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(oidcConfig={"type": "inline"}),
        "spec.oidcConfig.inline",
        "inline is required when type is inline",
        id="oidc-inline-missing",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(oidcConfig={"type": "kubernetes", "configMap": {"name": "oidc"}}),
        "spec.oidcConfig.configMap",
        "configMap is required when type is configMap and not allowed otherwise",
        id="oidc-configmap-with-wrong-type",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(authzConfig={"type": "configMap"}),
        "spec.authzConfig.configMap",
        "configMap is required when type is configMap",
        id="authz-configmap-missing",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(authzConfig={"type": "inline", "inline": {"policies": [LONG_AND_CHAIN]}}),
        "spec.authzConfig.inline.policies[0]",
        "Too long: may not be more than 16384 bytes",
        id="cedar-policy-too-long",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(
            authzConfig={
                "type": "inline",
                "inline": {"policies": ["permit(principal, action, resource);"] * 65},
            }
        ),
        "spec.authzConfig.inline.policies",
        "Too many: 65: must have at most 64 items",
        id="too-many-cedar-policies",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(
            authzConfig={
                "type": "inline",
                "inline": {
                    "policies": ["permit(principal, action, resource);"],
                    "entitiesJson": "[" + " " * 65_536 + "]",
                },
            }
        ),
        "spec.authzConfig.inline.entitiesJson",
        "Too long: may not be more than 65536 bytes",
        id="cedar-entities-too-long",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(transport="streamable-http", stdioEra="auto"),
        "spec.stdioEra",
        "stdioEra auto is only used with transport stdio",
        id="stdio-era-for-http",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(stdioEra="modern"),
        "spec.stdioEra",
        'Unsupported value: "modern"',
        id="unknown-stdio-era",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(permissionProfile={"type": "builtin", "name": "everything"}),
        "spec.permissionProfile.name",
        "named none or network",
        id="unknown-builtin-profile",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(name="a" * 51),
        "metadata.name",
        "at most 50 characters",
        id="name-too-long",
    ),
    pytest.param(
        MCPSERVERS,
        mcpserver(name="1time"),
        "metadata.name",
        "starting with a letter",
        id="name-starts-with-digit",
    ),
    pytest.param(
        MCPTOOLCONFIGS,
        mcptoolconfig(toolsOverride={"get_current_time": {}}),
        "spec.toolsOverride[get_current_time]",
        "sets name, description or both",
        id="empty-tool-override",
    ),
    pytest.param(
        MCPTOOLCONFIGS,
        mcptoolconfig(toolsFilter=["a", "a"]),
        "spec.toolsFilter[1]",
        "Duplicate value",
        id="duplicate-tool-filter",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(source={"type": "configMap"}),
        "spec.source.configMap",
        "configMap is required when type is configMap",
        id="registry-configmap-missing",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(source={**CM_SOURCE, "git": {"repository": GIT}}),
        "spec.source.git",
        "git is required when type is git and not allowed otherwise",
        id="registry-git-with-configmap-type",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(
            source={"type": "git", "git": {"repository": GIT, "branch": "main", "tag": "v1"}}
        ),
        "spec.source.git",
        "at most one of branch, tag and commit",
        id="git-branch-and-tag",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(source={"type": "git", "git": {"repository": "http://example.com/r.git"}}),
        "spec.source.git.repository",
        "should match",
        id="git-plain-http",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(source=CM_SOURCE, syncPolicy={"interval": "30s"}),
        "spec.syncPolicy.interval",
        "at least 1m",
        id="interval-below-a-minute",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(source=CM_SOURCE, syncPolicy={"interval": "daily"}),
        "spec.syncPolicy.interval",
        "should match",
        id="interval-not-a-duration",
    ),
    pytest.param(
        MCPREGISTRIES,
        mcpregistry(source={**CM_SOURCE, "format": "yaml"}),
        "spec.source.format",
        "yaml",
        id="unknown-format",
    ),
]


def test_crds_are_established(crds: list[str], control_plane: ControlPlane) -> None:
    assert sorted(crds) == [
        "customresourcedefinition.apiextensions.k8s.io/mcpexternalauthconfigs.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/mcpgroups.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/mcpregistries.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/mcpremoteproxies.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/mcpservers.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/mcptenants.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/mcptoolconfigs.moorage.dev",
        "customresourcedefinition.apiextensions.k8s.io/virtualmcpservers.moorage.dev",
    ]
    for name in crds:
        out = control_plane.kubectl("get", name, "-o", "json")
        conditions = {
            c["type"]: c["status"] for c in json.loads(out.stdout)["status"]["conditions"]
        }
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert "NonStructuralSchema" not in conditions


async def test_the_served_schema_is_the_generated_one(crds: list[str], kube: KubeClient) -> None:
    stored = await kube.get(CRDS, name="mcpservers.moorage.dev")
    committed = yaml.safe_load(
        (REPO / "crds" / "manifests" / "mcpservers.moorage.dev.yaml").read_text()
    )
    assert stored["spec"]["versions"][0]["schema"] == committed["spec"]["versions"][0]["schema"]


@pytest.mark.parametrize(
    ("label", "document"), example_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_every_example_is_accepted(
    crds: list[str], kube: KubeClient, namespace: str, label: str, document: dict[str, Any]
) -> None:
    created = await create_strict(kube, KINDS[document["kind"]], document, namespace=namespace)
    assert created["metadata"]["name"] == document["metadata"]["name"], label


@pytest.mark.parametrize(
    ("transport", "stdio_era"),
    [("stdio", "auto"), ("stdio", "handshake"), ("sse", "handshake"), ("streamable-http", None)],
)
async def test_the_stdio_era_is_accepted_where_it_means_something(
    crds: list[str], kube: KubeClient, namespace: str, transport: str, stdio_era: str | None
) -> None:
    spec: dict[str, Any] = {"transport": transport}
    if stdio_era is not None:
        spec["stdioEra"] = stdio_era
    created = await create_strict(kube, MCPSERVERS, mcpserver(**spec), namespace=namespace)
    assert created["spec"]["stdioEra"] == (stdio_era or "handshake")


async def test_defaults_are_applied_by_the_apiserver(
    crds: list[str], kube: KubeClient, namespace: str
) -> None:
    created = await create_strict(kube, MCPSERVERS, mcpserver(), namespace=namespace)
    assert created["spec"] == {
        "image": "ghcr.io/moorage-dev/mcp-server-time:2025.9.25",
        "transport": "stdio",
        "proxyMode": "streamable-http",
        "stdioEra": "handshake",
        "port": 8080,
        "targetPort": 8080,
        "permissionProfile": {"type": "builtin", "name": "network"},
        "audit": {"enabled": False},
        "sessionAffinity": "ClientIP",
        "trustProxyHeaders": False,
        "sessionStorage": {"type": "memory"},
    }
    registry = await create_strict(
        kube, MCPREGISTRIES, mcpregistry(source=CM_SOURCE), namespace=namespace
    )
    assert registry["spec"]["syncPolicy"] == {"automatic": True, "interval": "1h"}
    assert registry["spec"]["source"] == {
        **CM_SOURCE,
        "format": "toolhive",
        "configMap": {"name": "data", "key": "registry.json"},
    }
    assert registry["spec"]["apiService"] == {"enabled": False}


@pytest.mark.parametrize(("kind", "body", "field", "expected"), REJECTED)
async def test_the_schema_rejects_with_a_message_naming_the_field(
    crds: list[str],
    kube: KubeClient,
    namespace: str,
    kind: ResourceKind,
    body: dict[str, Any],
    field: str,
    expected: str,
) -> None:
    with pytest.raises((errors.Invalid, errors.BadRequest)) as info:
        await create_strict(kube, kind, copy.deepcopy(body), namespace=namespace)
    message = info.value.message
    assert field in message, message
    assert expected in message, message


async def test_status_is_a_subresource(crds: list[str], kube: KubeClient, namespace: str) -> None:
    await create_strict(kube, MCPSERVERS, mcpserver("time"), namespace=namespace, dry_run=False)
    status = {"phase": "Running", "url": "http://mcp-time-proxy/mcp"}
    # Status sent through the main resource is ignored...
    body = mcpserver("time")
    body["status"] = status
    updated = await kube.apply(MCPSERVERS, body, namespace=namespace, field_manager="tests")
    assert "phase" not in updated.get("status", {})
    # ...and accepted through the status subresource.
    patched = await kube.patch(
        MCPSERVERS, {"status": status}, namespace=namespace, name="time", subresource="status"
    )
    assert patched["status"]["phase"] == "Running"


async def test_kubectl_get_shows_the_printer_columns(
    crds: list[str], kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    await create_strict(kube, MCPSERVERS, mcpserver("time"), namespace=namespace, dry_run=False)
    await kube.patch(
        MCPSERVERS,
        {
            "status": {
                "phase": "Running",
                "readyReplicas": 1,
                "url": f"http://mcp-time-proxy.{namespace}.svc.cluster.local:8080/mcp",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Running",
                        "message": "MCP server is running",
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                    }
                ],
            }
        },
        namespace=namespace,
        name="time",
        subresource="status",
    )
    out = control_plane.kubectl("get", "mcps", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "PHASE", "READY", "REPLICAS", "URL", "AGE"]
    row = out[1].split()
    assert row[:5] == [
        "time",
        "Running",
        "True",
        "1",
        f"http://mcp-time-proxy.{namespace}.svc.cluster.local:8080/mcp",
    ]
    for short_name in ("mcpserver", "mcpservers", "moorage"):
        listed = control_plane.kubectl("get", short_name, "-n", namespace, "-o", "name").stdout
        assert "mcpserver.moorage.dev/time" in listed


def test_the_examples_kustomization_applies(
    crds: list[str], namespace: str, control_plane: ControlPlane
) -> None:
    out = control_plane.kubectl(
        "apply",
        "-k",
        str(EXAMPLES),
        "-n",
        namespace,
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
    )
    applied = out.stdout
    for name in (
        "mcpserver.moorage.dev/time",
        "mcpserver.moorage.dev/toolbox",
        "mcpserver.moorage.dev/everything-sse",
        "mcptoolconfig.moorage.dev/time-tools",
        "mcpregistry.moorage.dev/example",
        "mcpregistry.moorage.dev/community",
        "mcpexternalauthconfig.moorage.dev/docs-token-exchange",
        "mcpremoteproxy.moorage.dev/docs",
        "mcpgroup.moorage.dev/research",
        "mcpserver.moorage.dev/research-time",
        "mcpremoteproxy.moorage.dev/research-papers",
    ):
        assert name in applied, applied


def test_kubectl_strict_validation_names_an_unknown_field(
    crds: list[str], namespace: str, control_plane: ControlPlane
) -> None:
    body = mcpserver(transport="stdio", replica=2)
    out = control_plane.kubectl(
        "apply",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(body),
        check=False,
    )
    assert out.returncode != 0
    assert 'unknown field "spec.replica"' in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("resource", "columns"),
    [
        ("mcptc", ["NAME", "VALID", "BLOCKED", "AGE"]),
        ("mcpreg", ["NAME", "PHASE", "SERVERS", "LAST", "SYNC", "AGE"]),
    ],
)
async def test_the_other_kinds_show_their_columns(
    crds: list[str],
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
    resource: str,
    columns: list[str],
) -> None:
    if resource == "mcptc":
        await create_strict(
            kube,
            MCPTOOLCONFIGS,
            mcptoolconfig(toolsFilter=["a"]),
            namespace=namespace,
            dry_run=False,
        )
    else:
        await create_strict(
            kube, MCPREGISTRIES, mcpregistry(source=CM_SOURCE), namespace=namespace, dry_run=False
        )
    out = control_plane.kubectl("get", resource, "-n", namespace).stdout.splitlines()
    assert out[0].split() == columns
    assert out[1].split()[0] == "probe"
