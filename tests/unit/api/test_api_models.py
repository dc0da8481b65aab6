"""The resource models accept what the spec allows and reject everything else, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from testkit.rejections import assert_rejected_naming

from moorage_api import (
    MCPRegistry,
    MCPServer,
    MCPServerPhase,
    MCPToolConfig,
    parse_mcpexternalauthconfig,
    parse_mcpgroup,
    parse_mcpregistry,
    parse_mcpremoteproxy,
    parse_mcpserver,
    parse_mcptoolconfig,
    validation_messages,
)
from moorage_api.base import Condition, format_location
from moorage_api.mcpregistry import SyncPolicy
from moorage_api.mcpserver import MCPServerSpec, SecretEnv

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"
PARSERS: dict[str, Callable[[dict[str, Any]], BaseModel]] = {
    "MCPServer": parse_mcpserver,
    "MCPToolConfig": parse_mcptoolconfig,
    "MCPRegistry": parse_mcpregistry,
    "MCPRemoteProxy": parse_mcpremoteproxy,
    "MCPExternalAuthConfig": parse_mcpexternalauthconfig,
    "MCPGroup": parse_mcpgroup,
}
IMAGE = "ghcr.io/moorage-dev/mcp-server-time:2025.9.25"


def example_documents() -> list[Any]:
    params = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in PARSERS:
                label = f"{path.stem}:{document['metadata']['name']}"
                params.append(pytest.param(document, id=label))
    return params


def mcpserver(name: str = "probe", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, **spec},
    }


def mcptoolconfig(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPToolConfig", "spec": spec}


def mcpregistry(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "moorage.dev/v1alpha1", "kind": "MCPRegistry", "spec": spec}


CM_SOURCE = {"type": "configMap", "configMap": {"name": "data"}}
GIT = "https://github.com/stacklok/toolhive.git"


def test_examples_exist_for_every_kind_and_transport() -> None:
    documents = [param.values[0] for param in example_documents()]
    kinds = {document["kind"] for document in documents}
    transports = {
        document["spec"].get("transport", "stdio")
        for document in documents
        if document["kind"] == "MCPServer"
    }
    sources = {
        document["spec"]["source"]["type"]
        for document in documents
        if document["kind"] == "MCPRegistry"
    }
    assert kinds == set(PARSERS)
    assert transports == {"stdio", "sse", "streamable-http"}
    assert sources == {"configMap", "git"}


@pytest.mark.parametrize("document", example_documents())
def test_every_example_is_valid(document: dict[str, Any]) -> None:
    parsed = PARSERS[document["kind"]](document)
    assert (
        parsed.model_dump(mode="json", exclude_none=True)["metadata"]["name"]
        == (document["metadata"]["name"])
    )


def test_an_mcpserver_gets_the_spec_defaults() -> None:
    server = parse_mcpserver(mcpserver())
    spec = server.spec
    assert spec.transport == "stdio"
    assert spec.proxy_mode == "streamable-http"
    assert spec.stdio_era == "handshake"
    assert (spec.port, spec.target_port) == (8080, 8080)
    assert spec.session_affinity == "ClientIP"
    assert spec.trust_proxy_headers is False
    assert spec.audit.enabled is False
    assert (spec.permission_profile.type, spec.permission_profile.name) == ("builtin", "network")
    assert spec.replicas is None
    assert spec.backend_replicas is None
    assert server.status.phase is None
    assert server.status.conditions == []


def test_an_mcpregistry_gets_the_spec_defaults() -> None:
    registry = parse_mcpregistry(mcpregistry(source=CM_SOURCE))
    assert registry.spec.source.format == "toolhive"
    assert registry.spec.source.config_map is not None
    assert registry.spec.source.config_map.key == "registry.json"
    assert registry.spec.sync_policy == SyncPolicy(automatic=True, interval="1h")
    assert registry.spec.sync_policy.interval_seconds == 3600.0
    assert registry.spec.api_service.enabled is False


def test_git_source_defaults_its_path() -> None:
    registry = parse_mcpregistry(mcpregistry(source={"type": "git", "git": {"repository": GIT}}))
    assert registry.spec.source.git is not None
    assert registry.spec.source.git.path == "registry.json"


def test_oidc_and_authz_config_maps_default_their_keys() -> None:
    server = parse_mcpserver(
        mcpserver(
            oidcConfig={"type": "configMap", "configMap": {"name": "oidc"}},
            authzConfig={"type": "configMap", "configMap": {"name": "authz"}},
        )
    )
    assert server.spec.oidc_config is not None
    assert server.spec.oidc_config.config_map is not None
    assert server.spec.oidc_config.config_map.key == "oidc.json"
    assert server.spec.authz_config is not None
    assert server.spec.authz_config.config_map is not None
    assert server.spec.authz_config.config_map.key == "authz.json"


def test_kubernetes_oidc_defaults_its_audience() -> None:
    server = parse_mcpserver(
        mcpserver(oidcConfig={"type": "kubernetes", "kubernetes": {"issuer": "https://k8s"}})
    )
    assert server.spec.oidc_config is not None
    assert server.spec.oidc_config.kubernetes is not None
    assert server.spec.oidc_config.kubernetes.audience == "moorage"


@pytest.mark.parametrize(
    ("transport", "proxy_mode", "effective"),
    [
        ("stdio", "sse", "sse"),
        ("stdio", "streamable-http", "streamable-http"),
        ("sse", "streamable-http", "sse"),
        ("streamable-http", "sse", "streamable-http"),
    ],
)
def test_the_effective_proxy_mode_is_the_transport_for_http_servers(
    transport: str, proxy_mode: str, effective: str
) -> None:
    spec = MCPServerSpec.model_validate(
        {"image": IMAGE, "transport": transport, "proxyMode": proxy_mode}
    )
    assert spec.effective_proxy_mode == effective


@pytest.mark.parametrize(
    ("transport", "stdio_era"),
    [
        ("stdio", "handshake"),
        ("stdio", "auto"),
        ("sse", "handshake"),
        ("streamable-http", "handshake"),
    ],
)
def test_the_stdio_era_is_accepted_where_it_means_something(transport: str, stdio_era: str) -> None:
    spec = MCPServerSpec.model_validate(
        {"image": IMAGE, "transport": transport, "stdioEra": stdio_era}
    )
    assert spec.stdio_era == stdio_era


@pytest.mark.parametrize(
    ("secret", "env_name"),
    [
        ({"name": "api", "key": "TOKEN"}, "TOKEN"),
        ({"name": "api", "key": "token", "targetEnvName": "API_TOKEN"}, "API_TOKEN"),
    ],
)
def test_a_secret_sets_its_target_env_name_or_its_key(
    secret: dict[str, str], env_name: str
) -> None:
    assert SecretEnv.model_validate(secret).env_name == env_name


def test_wire_names_are_camel_case_and_python_names_are_accepted() -> None:
    spec = MCPServerSpec(image=IMAGE, proxy_mode="sse", target_port=9000)
    dumped = spec.model_dump(mode="json", exclude_none=True)
    assert dumped["proxyMode"] == "sse"
    assert dumped["targetPort"] == 9000
    assert "proxy_mode" not in dumped


def test_models_are_immutable() -> None:
    spec = MCPServerSpec(image=IMAGE)
    with pytest.raises(ValidationError):
        spec.port = 9000  # type: ignore[misc]
    assert spec.model_copy(update={"port": 9000}).port == 9000


def test_status_phases_are_the_spec_phases() -> None:
    assert [phase.value for phase in MCPServerPhase] == [
        "Pending",
        "Running",
        "Failed",
        "Terminating",
        "Stopped",
    ]


def test_an_object_read_from_the_apiserver_keeps_unknown_metadata() -> None:
    body = mcpserver()
    body["metadata"].update(
        {
            "uid": "1234",
            "generation": 3,
            "managedFields": [{"manager": "kubectl"}],
            "labels": {"a": "b"},
        }
    )
    body["status"] = {
        "phase": "Running",
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Running",
                "message": "MCP server is running",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }
    server = parse_mcpserver(body)
    assert server.metadata.generation == 3
    assert server.status.phase is MCPServerPhase.RUNNING
    assert server.status.conditions[0].observed_generation == 3
    dumped = server.model_dump(mode="json", exclude_none=True)
    assert dumped["metadata"]["managedFields"] == [{"manager": "kubectl"}]
    assert dumped["status"]["conditions"][0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"


def without_image() -> dict[str, Any]:
    body = mcpserver()
    del body["spec"]["image"]
    return body


def condition(**changes: Any) -> dict[str, Any]:
    value = {
        "type": "Ready",
        "status": "True",
        "reason": "Running",
        "message": "MCP server is running",
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    return {**value, **changes}


REJECTED: list[Any] = [
    pytest.param(
        MCPServer, mcpserver(transport="grpc"), "spec.transport", "'stdio'", id="bad-transport"
    ),
    pytest.param(MCPServer, without_image(), "spec.image", "required", id="missing-image"),
    pytest.param(MCPServer, mcpserver(image=""), "spec.image", "at least 1", id="empty-image"),
    pytest.param(
        MCPServer,
        mcpserver(image="Not An Image"),
        "spec.image",
        "not a valid image reference",
        id="bad-image",
    ),
    pytest.param(MCPServer, mcpserver(port=70000), "spec.port", "65535", id="port-70000"),
    pytest.param(
        MCPServer, mcpserver(port=0), "spec.port", "greater than or equal to 1", id="port-0"
    ),
    pytest.param(
        MCPServer, mcpserver(targetPort=65536), "spec.targetPort", "65535", id="target-port"
    ),
    pytest.param(MCPServer, mcpserver(port="http"), "spec.port", "integer", id="port-not-int"),
    pytest.param(MCPServer, mcpserver(replicas=-1), "spec.replicas", "0", id="replicas"),
    pytest.param(
        MCPServer, mcpserver(backendReplicas=-2), "spec.backendReplicas", "0", id="backend-replicas"
    ),
    pytest.param(MCPServer, mcpserver(foo=1), "spec.foo", "unknown field", id="unknown-field"),
    pytest.param(
        MCPServer,
        {**mcpserver(), "extra": True},
        "extra",
        "unknown field",
        id="unknown-top-level-field",
    ),
    pytest.param(
        MCPServer,
        mcpserver(audit={"enabled": True, "verbose": True}),
        "spec.audit.verbose",
        "unknown field",
        id="unknown-nested-field",
    ),
    pytest.param(
        MCPServer,
        {**mcpserver(), "apiVersion": "moorage.dev/v1"},
        "apiVersion",
        "moorage.dev/v1alpha1",
        id="wrong-api-version",
    ),
    pytest.param(MCPServer, {**mcpserver(), "kind": "Pod"}, "kind", "MCPServer", id="wrong-kind"),
    pytest.param(
        MCPServer,
        mcpserver(proxyMode="stdio"),
        "spec.proxyMode",
        "'sse'",
        id="bad-proxy-mode",
    ),
    pytest.param(
        MCPServer,
        mcpserver(sessionAffinity="Sticky"),
        "spec.sessionAffinity",
        "'ClientIP'",
        id="bad-session-affinity",
    ),
    pytest.param(
        MCPServer,
        mcpserver(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env",
        "unique: A",
        id="duplicate-env",
    ),
    pytest.param(
        MCPServer,
        mcpserver(env=[{"name": "1=BAD"}]),
        "spec.env[0].name",
        "pattern",
        id="bad-env-name",
    ),
    pytest.param(
        MCPServer,
        mcpserver(env=[{"value": "x"}]),
        "spec.env[0].name",
        "required",
        id="env-without-name",
    ),
    pytest.param(
        MCPServer,
        mcpserver(secrets=[{"name": "s"}]),
        "spec.secrets[0].key",
        "required",
        id="secret-without-key",
    ),
    pytest.param(
        MCPServer,
        mcpserver(serviceAccount="Not_Valid"),
        "spec.serviceAccount",
        "pattern",
        id="bad-service-account",
    ),
    pytest.param(
        MCPServer,
        mcpserver(resources={"limits": {"cpu": "lots"}}),
        "spec.resources.limits.cpu",
        "not a quantity",
        id="bad-quantity",
    ),
    pytest.param(
        MCPServer,
        mcpserver(podTemplateSpec=["not", "an", "object"]),
        "spec.podTemplateSpec",
        "dictionary",
        id="pod-template-not-an-object",
    ),
    pytest.param(
        MCPServer,
        mcpserver(permissionProfile={"type": "builtin", "name": "everything"}),
        "spec.permissionProfile",
        "name: builtin profile 'everything' does not exist",
        id="unknown-builtin-profile",
    ),
    pytest.param(
        MCPServer,
        mcpserver(permissionProfile={"type": "builtin", "name": "none", "key": "p.json"}),
        "spec.permissionProfile",
        "key: only used with a configMap",
        id="builtin-profile-with-key",
    ),
    pytest.param(
        MCPServer,
        mcpserver(transport="sse", stdioEra="auto"),
        "spec",
        "stdioEra: auto is only used with transport stdio, not sse",
        id="stdio-era-for-sse",
    ),
    pytest.param(
        MCPServer,
        mcpserver(stdioEra="modern"),
        "spec.stdioEra",
        "'handshake' or 'auto'",
        id="unknown-stdio-era",
    ),
    pytest.param(
        MCPServer,
        mcpserver(permissionProfile={"type": "file", "name": "x"}),
        "spec.permissionProfile.type",
        "'builtin'",
        id="bad-profile-type",
    ),
    pytest.param(
        MCPServer,
        mcpserver(oidcConfig={"type": "inline"}),
        "spec.oidcConfig",
        "inline: required when type is inline",
        id="oidc-inline-missing",
    ),
    pytest.param(
        MCPServer,
        mcpserver(oidcConfig={"type": "kubernetes", "configMap": {"name": "oidc"}}),
        "spec.oidcConfig",
        "configMap: not allowed when type is kubernetes",
        id="oidc-config-map-with-wrong-type",
    ),
    pytest.param(
        MCPServer,
        mcpserver(
            oidcConfig={
                "type": "inline",
                "inline": {"issuer": "https://i", "audience": "a"},
                "kubernetes": {},
            }
        ),
        "spec.oidcConfig",
        "kubernetes: only allowed when type is kubernetes",
        id="oidc-kubernetes-with-wrong-type",
    ),
    pytest.param(
        MCPServer,
        mcpserver(oidcConfig={"type": "inline", "inline": {"issuer": "ftp://i", "audience": "a"}}),
        "spec.oidcConfig.inline.issuer",
        "pattern",
        id="oidc-issuer-not-http",
    ),
    pytest.param(
        MCPServer,
        mcpserver(oidcConfig={"type": "inline", "inline": {"issuer": "https://i"}}),
        "spec.oidcConfig.inline.audience",
        "required",
        id="oidc-without-audience",
    ),
    pytest.param(
        MCPServer,
        mcpserver(
            oidcConfig={
                "type": "kubernetes",
                "kubernetes": {"allowedServiceAccounts": ["just-a-name"]},
            }
        ),
        "spec.oidcConfig.kubernetes.allowedServiceAccounts[0]",
        "pattern",
        id="service-account-without-namespace",
    ),
    pytest.param(
        MCPServer,
        mcpserver(oidcConfig={"type": "github"}),
        "spec.oidcConfig.type",
        "'kubernetes'",
        id="bad-oidc-type",
    ),
    pytest.param(
        MCPServer,
        mcpserver(authzConfig={"type": "configMap"}),
        "spec.authzConfig",
        "configMap: required when type is configMap",
        id="authz-config-map-missing",
    ),
    pytest.param(
        MCPServer,
        mcpserver(authzConfig={"type": "inline", "inline": {"policies": []}}),
        "spec.authzConfig.inline.policies",
        "at least 1",
        id="authz-without-policies",
    ),
    pytest.param(
        MCPServer,
        mcpserver(toolConfigRef={}),
        "spec.toolConfigRef.name",
        "required",
        id="tool-config-ref-without-name",
    ),
    pytest.param(
        MCPServer,
        mcpserver(endpointPrefix="no-slash"),
        "spec.endpointPrefix",
        "pattern",
        id="endpoint-prefix-without-slash",
    ),
    pytest.param(
        MCPServer,
        mcpserver(resourceOverrides={"proxyDeployment": {"env": [{"name": "A"}, {"name": "A"}]}}),
        "spec.resourceOverrides.proxyDeployment.env",
        "unique: A",
        id="duplicate-override-env",
    ),
    pytest.param(
        MCPServer,
        mcpserver(resourceOverrides={"proxyService": {"labels": {"a": 1}}}),
        "spec.resourceOverrides.proxyService.labels.a",
        "string",
        id="label-not-a-string",
    ),
    pytest.param(
        MCPServer, mcpserver(name="a" * 51), "metadata.name", "at most 50", id="name-too-long"
    ),
    pytest.param(
        MCPServer,
        mcpserver(name="1time"),
        "metadata.name",
        "starting with a letter",
        id="name-digit",
    ),
    pytest.param(
        MCPServer,
        {**mcpserver(), "status": {"phase": "Exploded"}},
        "status.phase",
        "'Running'",
        id="bad-phase",
    ),
    pytest.param(
        MCPServer,
        {**mcpserver(), "status": {"conditions": [condition(status="Yes")]}},
        "status.conditions[0].status",
        "'True'",
        id="bad-condition-status",
    ),
    pytest.param(
        MCPServer,
        {**mcpserver(), "status": {"conditions": [condition(reason="not a reason")]}},
        "status.conditions[0].reason",
        "pattern",
        id="bad-condition-reason",
    ),
    pytest.param(
        MCPServer,
        {**mcpserver(), "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        "status.conditions[0].lastTransitionTime",
        "required",
        id="condition-without-time",
    ),
    pytest.param(
        MCPToolConfig,
        mcptoolconfig(toolsOverride={"get_current_time": {}}),
        "spec.toolsOverride.get_current_time",
        "sets name, description or both",
        id="empty-tool-override",
    ),
    pytest.param(
        MCPToolConfig,
        mcptoolconfig(toolsOverride={"t": {"name": ""}}),
        "spec.toolsOverride.t.name",
        "at least 1",
        id="empty-tool-name",
    ),
    pytest.param(
        MCPToolConfig,
        mcptoolconfig(toolsFilter=["a", "b", "a"]),
        "spec.toolsFilter",
        "unique: a",
        id="duplicate-tool-filter",
    ),
    pytest.param(
        MCPToolConfig,
        mcptoolconfig(toolsFilter="a"),
        "spec.toolsFilter",
        "list",
        id="tool-filter-not-a-list",
    ),
    pytest.param(
        MCPRegistry, mcpregistry(), "spec.source", "required", id="registry-without-source"
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={"type": "configMap"}),
        "spec.source",
        "configMap: required when type is configMap",
        id="registry-config-map-missing",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={**CM_SOURCE, "git": {"repository": GIT}}),
        "spec.source",
        "git: not allowed when type is configMap",
        id="registry-git-with-config-map-type",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={"type": "s3"}),
        "spec.source.type",
        "'configMap'",
        id="registry-bad-source-type",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={**CM_SOURCE, "format": "yaml"}),
        "spec.source.format",
        "'toolhive'",
        id="registry-bad-format",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(
            source={
                "type": "git",
                "git": {"repository": GIT, "branch": "main", "commit": "abcdef1"},
            }
        ),
        "spec.source.git",
        "at most one of branch, tag and commit may be set (got branch, commit)",
        id="git-branch-and-commit",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={"type": "git", "git": {"repository": "http://example.com/r.git"}}),
        "spec.source.git.repository",
        "pattern",
        id="git-plain-http",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={"type": "git", "git": {"repository": GIT, "commit": "xyz"}}),
        "spec.source.git.commit",
        "pattern",
        id="git-bad-commit",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source={"type": "git", "git": {"repository": GIT, "path": "/abs.json"}}),
        "spec.source.git.path",
        "pattern",
        id="git-absolute-path",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(
            source={
                "type": "git",
                "git": {"repository": GIT, "auth": {"username": "u", "passwordSecretRef": {}}},
            }
        ),
        "spec.source.git.auth.passwordSecretRef.name",
        "required",
        id="git-auth-without-secret",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source=CM_SOURCE, syncPolicy={"interval": "30s"}),
        "spec.syncPolicy.interval",
        "at least 1m",
        id="interval-below-a-minute",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source=CM_SOURCE, syncPolicy={"interval": "daily"}),
        "spec.syncPolicy.interval",
        "pattern",
        id="interval-not-a-duration",
    ),
    pytest.param(
        MCPRegistry,
        mcpregistry(source=CM_SOURCE, filter={"names": {"include": "x"}}),
        "spec.filter.names.include",
        "list",
        id="filter-not-a-list",
    ),
    pytest.param(
        MCPRegistry,
        {**mcpregistry(source=CM_SOURCE), "metadata": {"name": "r" * 60}},
        "metadata.name",
        "at most 59",
        id="registry-name-too-long",
    ),
]


@pytest.mark.parametrize(("model", "body", "field", "expected"), REJECTED)
def test_invalid_input_is_rejected_naming_the_field(
    model: type[BaseModel], body: dict[str, Any], field: str, expected: str
) -> None:
    assert_rejected_naming(model, body, field, expected)


@pytest.mark.parametrize(
    ("loc", "prefix", "text"),
    [
        (("spec", "env", 0, "name"), "", "spec.env[0].name"),
        (("port",), "runconfig", "runconfig.port"),
        ((), "key.json", "key.json"),
        ((0, "a"), "", "[0].a"),
    ],
)
def test_locations_read_as_field_paths(loc: tuple[int | str, ...], prefix: str, text: str) -> None:
    assert format_location(loc, prefix=prefix) == text


def test_a_condition_round_trips_in_metav1_shape() -> None:
    wire = condition(observedGeneration=2)
    assert Condition.model_validate(wire).model_dump(mode="json") == wire


@pytest.mark.parametrize("value", [1, 0, "500m", "1Gi", "2", "1e3", "0.5"])
def test_quantities_are_ints_or_kubernetes_strings(value: int | str) -> None:
    server = parse_mcpserver(mcpserver(resources={"limits": {"cpu": value}}))
    assert server.spec.resources is not None
    assert server.spec.resources.limits["cpu"] == value


@pytest.mark.parametrize("value", [0.5, True, "1 Gi", "lots", None])
def test_other_quantities_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_mcpserver(mcpserver(resources={"requests": {"memory": value}}))
    assert validation_messages(info.value) == [
        f"spec.resources.requests.memory: {value!r} is not a quantity (expected e.g. 500m, 1Gi, 2)"
    ]
