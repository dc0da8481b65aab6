"""Property tests: any valid object survives model → JSON → model unchanged."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_api import (
    MCPRegistry,
    MCPServer,
    MCPToolConfig,
    parse_mcpregistry,
    parse_mcpserver,
    parse_mcptoolconfig,
)
from moorage_api.runconfig import RunConfig, load_runconfig, render_runconfig_json

label = st.from_regex(r"[a-z]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
env_name = st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True)
text = st.text(max_size=30)
port = st.integers(min_value=1, max_value=65535)
quantity = st.one_of(
    st.integers(min_value=0, max_value=10**6),
    st.from_regex(r"[0-9]{1,4}(m|Mi|Gi|k)?", fullmatch=True),
)
image = st.builds(
    lambda domain, path, tag: f"{domain}{path}{tag}",
    st.sampled_from(["", "ghcr.io/", "localhost:5000/", "registry.example.com/team/"]),
    # Bounded: a repository name longer than 255 characters is (rightly) refused.
    st.from_regex(r"[a-z0-9]{1,10}([._-][a-z0-9]{1,10}){0,3}(/[a-z0-9]{1,10})?", fullmatch=True),
    st.one_of(st.just(""), st.from_regex(r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)),
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def fixed(required: dict[str, Any], optional_fields: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A dict with the required keys and any subset of the optional ones."""
    return st.fixed_dictionaries(required, optional=optional_fields)


env = st.lists(
    st.builds(lambda name, value: {"name": name, "value": value}, env_name, text),
    max_size=4,
    unique_by=lambda item: item["name"],
)
secret = fixed({"name": label, "key": env_name}, {"targetEnvName": env_name})
metadata_overrides = fixed({}, {"labels": st.dictionaries(label, text, max_size=2)})
oidc = st.one_of(
    fixed(
        {
            "type": st.just("inline"),
            "inline": fixed(
                {"issuer": st.just("https://issuer.example.com"), "audience": label},
                {
                    "jwksUrl": st.just("https://issuer.example.com/jwks"),
                    "clientId": label,
                    "requiredScopes": st.lists(label, max_size=3),
                },
            ),
        },
        {},
    ),
    fixed(
        {"type": st.just("configMap"), "configMap": fixed({"name": label}, {"key": env_name})}, {}
    ),
    fixed(
        {"type": st.just("kubernetes")},
        {
            "kubernetes": fixed(
                {},
                {
                    "audience": label,
                    "allowedServiceAccounts": st.lists(
                        st.builds(lambda ns, name: f"{ns}/{name}", label, label), max_size=2
                    ),
                },
            )
        },
    ),
)
authz = st.one_of(
    fixed(
        {
            "type": st.just("inline"),
            "inline": fixed(
                {"policies": st.lists(text, min_size=1, max_size=2)}, {"entitiesJson": text}
            ),
        },
        {},
    ),
    fixed({"type": st.just("configMap"), "configMap": fixed({"name": label}, {})}, {}),
)
permission_profile = st.one_of(
    fixed({"name": st.sampled_from(["none", "network"])}, {"type": st.just("builtin")}),
    fixed({"type": st.just("configMap"), "name": label}, {"key": env_name}),
)
mcpserver_spec = fixed(
    {"image": image},
    {
        "transport": st.sampled_from(["stdio", "sse", "streamable-http"]),
        "proxyMode": st.sampled_from(["sse", "streamable-http"]),
        "port": port,
        "targetPort": port,
        "args": st.lists(text, max_size=4),
        "env": env,
        "secrets": st.lists(secret, max_size=2),
        "serviceAccount": label,
        "resources": fixed(
            {},
            {
                "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantity),
                "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantity),
            },
        ),
        "podTemplateSpec": st.dictionaries(
            st.sampled_from(["metadata", "spec"]),
            st.dictionaries(label, st.one_of(text, st.integers(), st.booleans()), max_size=2),
        ),
        "permissionProfile": permission_profile,
        "oidcConfig": oidc,
        "authzConfig": authz,
        "toolConfigRef": fixed({"name": label}, {}),
        "audit": fixed({}, {"enabled": st.booleans()}),
        "replicas": st.integers(min_value=0, max_value=5),
        "backendReplicas": st.integers(min_value=0, max_value=5),
        "sessionAffinity": st.sampled_from(["ClientIP", "None"]),
        "trustProxyHeaders": st.booleans(),
        "endpointPrefix": st.from_regex(r"/[a-z]{0,8}", fullmatch=True),
        "resourceOverrides": fixed(
            {},
            {
                "proxyDeployment": fixed(
                    {},
                    {
                        "annotations": st.dictionaries(label, text, max_size=2),
                        "env": env,
                        "podTemplateMetadataOverrides": metadata_overrides,
                    },
                ),
                "proxyService": metadata_overrides,
            },
        ),
    },
)
condition = fixed(
    {
        "type": st.sampled_from(["Ready", "PodTemplateValid", "Valid"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
        "reason": st.from_regex(r"[A-Z][A-Za-z]{0,10}", fullmatch=True),
        "message": text,
        "lastTransitionTime": st.just("2025-01-01T00:00:00Z"),
    },
    {"observedGeneration": st.integers(min_value=0, max_value=100)},
)
mcpserver_status = fixed(
    {},
    {
        "phase": st.sampled_from(["Pending", "Running", "Failed", "Terminating", "Stopped"]),
        "message": text,
        "url": text,
        "readyReplicas": st.integers(min_value=0, max_value=5),
        "observedGeneration": st.integers(min_value=0, max_value=100),
        "conditions": st.lists(condition, max_size=3, unique_by=lambda c: c["type"]),
    },
)


def resource(kind: str, spec: st.SearchStrategy[Any], status: st.SearchStrategy[Any]) -> Any:
    return fixed(
        {
            "apiVersion": st.just("moorage.dev/v1alpha1"),
            "kind": st.just(kind),
            "metadata": fixed(
                {"name": label}, {"namespace": label, "generation": st.integers(1, 9)}
            ),
            "spec": spec,
        },
        {"status": status},
    )


tool_override = st.one_of(
    fixed({"name": label}, {"description": text}), fixed({"description": text}, {})
)
mcptoolconfig_spec = fixed(
    {},
    {
        "toolsFilter": st.lists(label, max_size=4, unique=True),
        "toolsOverride": st.dictionaries(label, tool_override, max_size=3),
    },
)
glob_filter = fixed(
    {}, {"include": st.lists(text, max_size=2), "exclude": st.lists(text, max_size=2)}
)
source = st.one_of(
    fixed(
        {"type": st.just("configMap"), "configMap": fixed({"name": label}, {"key": env_name})},
        {"format": st.sampled_from(["toolhive", "upstream"])},
    ),
    fixed(
        {
            "type": st.just("git"),
            "git": st.one_of(
                fixed(
                    {"repository": st.just("https://github.com/o/r.git")},
                    {"branch": label, "path": label},
                ),
                fixed({"repository": st.just("git@github.com:o/r.git")}, {"tag": label}),
                fixed(
                    {"repository": st.just("file:///srv/r.git")},
                    {"commit": st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True)},
                ),
            ),
        },
        {},
    ),
)
mcpregistry_spec = fixed(
    {"source": source},
    {
        "syncPolicy": fixed(
            {},
            {
                "automatic": st.booleans(),
                "interval": st.sampled_from(["1m", "90s", "1h30m", "24h", "0.5h"]),
            },
        ),
        "filter": fixed({}, {"names": glob_filter, "tags": glob_filter}),
        "apiService": fixed({}, {"enabled": st.booleans()}),
    },
)
mcpregistry_status = fixed(
    {},
    {
        "phase": st.sampled_from(["Pending", "Syncing", "Ready", "Failed"]),
        "syncStatus": fixed(
            {},
            {
                "serverCount": st.integers(0, 100),
                "lastSyncHash": text,
                "lastSyncTime": st.just("2025-01-01T00:00:00Z"),
            },
        ),
        "apiStatus": fixed({}, {"endpoint": text, "ready": st.booleans()}),
    },
)


@settings(max_examples=150)
@given(resource("MCPServer", mcpserver_spec, mcpserver_status))
def test_an_mcpserver_round_trips_through_json(body: dict[str, Any]) -> None:
    server = parse_mcpserver(body)
    assert MCPServer.model_validate_json(server.model_dump_json()) == server
    wire = server.model_dump(mode="json", exclude_none=True)
    assert parse_mcpserver(wire) == server
    assert wire["spec"]["image"] == body["spec"]["image"]


@settings(max_examples=100)
@given(resource("MCPToolConfig", mcptoolconfig_spec, st.just({})))
def test_an_mcptoolconfig_round_trips_through_json(body: dict[str, Any]) -> None:
    config = parse_mcptoolconfig(body)
    assert MCPToolConfig.model_validate_json(config.model_dump_json()) == config
    assert parse_mcptoolconfig(config.model_dump(mode="json", exclude_none=True)) == config


@settings(max_examples=100)
@given(resource("MCPRegistry", mcpregistry_spec, mcpregistry_status))
def test_an_mcpregistry_round_trips_through_json(body: dict[str, Any]) -> None:
    registry = parse_mcpregistry(body)
    assert MCPRegistry.model_validate_json(registry.model_dump_json()) == registry
    assert parse_mcpregistry(registry.model_dump(mode="json", exclude_none=True)) == registry


runconfig = st.builds(
    RunConfig,
    name=label,
    namespace=label,
    image=image,
    generation=st.integers(min_value=0, max_value=1000),
    args=st.lists(text, max_size=3),
    port=port,
    target_port=port,
    transport=st.sampled_from(["stdio", "sse", "streamable-http"]),
    tools_filter=st.lists(label, max_size=3),
    pod_template_spec=optional(st.dictionaries(label, text, max_size=2)),
    backend_replicas=optional(st.integers(min_value=0, max_value=3)),
    endpoint_prefix=optional(text),
)


@settings(max_examples=100)
@given(runconfig)
def test_a_runconfig_round_trips_through_its_rendering(rc: RunConfig) -> None:
    text_form = render_runconfig_json(rc)
    loaded = load_runconfig(text_form)
    assert loaded == rc
    assert render_runconfig_json(loaded) == text_form
