"""The RunConfig rendered for an MCPServer (spec §3.1): every spec field lands where it should."""

from __future__ import annotations

import json
from typing import Any

import pytest
from planning_fixtures import NAMESPACE, SETTINGS, UID, by_kind, config_map, server, tool_config

from moorage_api.runconfig import load_runconfig
from moorage_operator.planning import References, desired_children


def rendered(references: References | None = None, **spec: Any) -> dict[str, Any]:
    children = desired_children(server(**spec), settings=SETTINGS, references=references)
    text = by_kind(children, "ConfigMap")["data"]["runconfig.json"]
    load_runconfig(text)  # the proxy runner must be able to read it
    data: dict[str, Any] = json.loads(text)
    return data


OIDC_DOC = json.dumps(
    {"issuer": "https://idp.example", "audience": "mcp", "requiredScopes": ["mcp:call"]}
)
AUTHZ_DOC = json.dumps(
    {"policies": ['permit(principal, action == Action::"call_tool", resource);']}
)
PROFILE_DOC = json.dumps(
    {"network": {"outbound": {"allow_port": [443], "allow_cidr": ["10.0.0.0/8"]}}}
)


@pytest.mark.parametrize(
    ("spec", "references", "expected"),
    [
        pytest.param({}, None, {"image": "ghcr.io/example/mcp-time:1.2.0"}, id="image"),
        pytest.param({"args": ["--tz", "UTC"]}, None, {"args": ["--tz", "UTC"]}, id="args"),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}, {"name": "B"}]},
            None,
            {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}]},
            id="env",
        ),
        pytest.param(
            {
                "secrets": [
                    {"name": "api", "key": "token", "targetEnvName": "API_TOKEN"},
                    {"name": "db", "key": "PASSWORD"},
                ]
            },
            None,
            {
                "secret_env": [
                    {"name": "API_TOKEN", "secret_key_ref": {"name": "api", "key": "token"}},
                    {"name": "PASSWORD", "secret_key_ref": {"name": "db", "key": "PASSWORD"}},
                ]
            },
            id="secrets",
        ),
        pytest.param(
            {}, None, {"transport": "stdio", "proxy_mode": "streamable-http"}, id="defaults"
        ),
        pytest.param({"proxyMode": "sse"}, None, {"proxy_mode": "sse"}, id="stdio-proxyMode"),
        pytest.param(
            {"transport": "sse", "proxyMode": "streamable-http"},
            None,
            {"transport": "sse", "proxy_mode": "sse"},
            id="http-transport-wins-over-proxyMode",
        ),
        pytest.param(
            {"port": 9000, "targetPort": 3000},
            None,
            {"port": 9000, "target_port": 3000},
            id="ports",
        ),
        pytest.param(
            {"podTemplateSpec": {"spec": {"nodeSelector": {"disk": "ssd"}}}},
            None,
            {"pod_template_spec": {"spec": {"nodeSelector": {"disk": "ssd"}}}},
            id="podTemplateSpec",
        ),
        pytest.param(
            {"resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m"}}},
            None,
            {"resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m"}}},
            id="resources",
        ),
        pytest.param({}, None, {"service_account": "time-sa"}, id="created-service-account"),
        pytest.param(
            {"serviceAccount": "mine"}, None, {"service_account": "mine"}, id="serviceAccount"
        ),
        pytest.param({}, None, {"backend_replicas": None}, id="backendReplicas-unset"),
        pytest.param({"backendReplicas": 3}, None, {"backend_replicas": 3}, id="backendReplicas"),
        pytest.param(
            {},
            None,
            {
                "permission_profile": {
                    "type": "builtin",
                    "name": "network",
                    "key": None,
                    "outbound": None,
                }
            },
            id="permissionProfile-default",
        ),
        pytest.param(
            {"permissionProfile": {"type": "builtin", "name": "none"}},
            None,
            {
                "permission_profile": {
                    "type": "builtin",
                    "name": "none",
                    "key": None,
                    "outbound": None,
                }
            },
            id="permissionProfile-none",
        ),
        pytest.param(
            {"permissionProfile": {"type": "configMap", "name": "egress"}},
            References(
                config_maps={"egress": config_map("egress", **{"profile.json": PROFILE_DOC})}
            ),
            {
                "permission_profile": {
                    "type": "configMap",
                    "name": "egress",
                    "key": "profile.json",
                    "outbound": {
                        "insecure_allow_all": False,
                        "allow_port": [443],
                        "allow_cidr": ["10.0.0.0/8"],
                        "allow_host": [],
                    },
                }
            },
            id="permissionProfile-configMap",
        ),
        pytest.param({}, None, {"oidc": None, "authz": None}, id="no-auth"),
        pytest.param(
            {"oidcConfig": {"type": "kubernetes"}},
            None,
            {
                "oidc": {
                    "type": "kubernetes",
                    "issuer": None,
                    "audience": "moorage",
                    "jwks_url": None,
                    "client_id": None,
                    "required_scopes": [],
                    "allowed_service_accounts": [],
                }
            },
            id="oidc-kubernetes-defaults",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "kubernetes",
                    "kubernetes": {
                        "audience": "a",
                        "issuer": "https://k8s",
                        "allowedServiceAccounts": ["ns/agent"],
                    },
                }
            },
            None,
            {
                "oidc": {
                    "type": "kubernetes",
                    "issuer": "https://k8s",
                    "audience": "a",
                    "jwks_url": None,
                    "client_id": None,
                    "required_scopes": [],
                    "allowed_service_accounts": ["ns/agent"],
                }
            },
            id="oidc-kubernetes",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "inline",
                    "inline": {
                        "issuer": "https://idp",
                        "audience": "mcp",
                        "jwksUrl": "https://idp/jwks",
                        "clientId": "c",
                        "requiredScopes": ["s"],
                    },
                }
            },
            None,
            {
                "oidc": {
                    "type": "oidc",
                    "issuer": "https://idp",
                    "audience": "mcp",
                    "jwks_url": "https://idp/jwks",
                    "client_id": "c",
                    "required_scopes": ["s"],
                    "allowed_service_accounts": [],
                }
            },
            id="oidc-inline",
        ),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp", "key": "o.json"}}},
            References(config_maps={"idp": config_map("idp", **{"o.json": OIDC_DOC})}),
            {
                "oidc": {
                    "type": "oidc",
                    "issuer": "https://idp.example",
                    "audience": "mcp",
                    "jwks_url": None,
                    "client_id": None,
                    "required_scopes": ["mcp:call"],
                    "allowed_service_accounts": [],
                }
            },
            id="oidc-configMap",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {
                        "policies": ["permit(principal, action, resource);"],
                        "entitiesJson": "[{}]",
                    },
                }
            },
            None,
            {
                "authz": {
                    "policies": ["permit(principal, action, resource);"],
                    "entities_json": "[{}]",
                }
            },
            id="authz-inline",
        ),
        pytest.param(
            {"authzConfig": {"type": "configMap", "configMap": {"name": "cedar"}}},
            References(config_maps={"cedar": config_map("cedar", **{"authz.json": AUTHZ_DOC})}),
            {
                "authz": {
                    "policies": ['permit(principal, action == Action::"call_tool", resource);'],
                    "entities_json": "[]",
                }
            },
            id="authz-configMap",
        ),
        pytest.param({}, None, {"tools_filter": [], "tools_override": {}}, id="no-tool-config"),
        pytest.param(
            {"toolConfigRef": {"name": "tools"}},
            References(
                tool_config=tool_config(
                    toolsFilter=["now", "convert"],
                    toolsOverride={"get_time": {"name": "now"}, "convert": {"description": "C"}},
                )
            ),
            {
                "tools_filter": ["now", "convert"],
                "tools_override": {
                    "get_time": {"name": "now", "description": None},
                    "convert": {"name": None, "description": "C"},
                },
            },
            id="toolConfigRef",
        ),
        pytest.param({}, None, {"stdio_era": "handshake"}, id="stdio-era-default"),
        pytest.param({"stdioEra": "auto"}, None, {"stdio_era": "auto"}, id="stdio-era"),
        pytest.param({}, None, {"audit": {"enabled": False}}, id="audit-default"),
        pytest.param({"audit": {"enabled": True}}, None, {"audit": {"enabled": True}}, id="audit"),
        pytest.param(
            {},
            None,
            {"trust_proxy_headers": False, "endpoint_prefix": None},
            id="proxy-headers-default",
        ),
        pytest.param(
            {"trustProxyHeaders": True, "endpointPrefix": "/servers/time"},
            None,
            {"trust_proxy_headers": True, "endpoint_prefix": "/servers/time"},
            id="proxy-headers",
        ),
    ],
)
def test_spec_fields_reach_the_runconfig(
    spec: dict[str, Any], references: References | None, expected: dict[str, Any]
) -> None:
    data = rendered(references, **spec)
    assert {key: data[key] for key in expected} == expected


def test_runconfig_identifies_its_owner() -> None:
    data = rendered()
    assert data["schema_version"] == "moorage/v1"
    assert (data["name"], data["namespace"], data["generation"]) == ("time", NAMESPACE, 3)
    assert data["owner"] == {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "name": "time",
        "uid": UID,
    }


def test_runconfig_is_pretty_printed_with_sorted_keys() -> None:
    children = desired_children(server(), settings=SETTINGS)
    text = by_kind(children, "ConfigMap")["data"]["runconfig.json"]
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_no_secret_value_ever_reaches_the_runconfig() -> None:
    children = desired_children(
        server(secrets=[{"name": "api", "key": "token"}]), settings=SETTINGS
    )
    text = by_kind(children, "ConfigMap")["data"]["runconfig.json"]
    assert json.loads(text)["secret_env"] == [
        {"name": "token", "secret_key_ref": {"name": "api", "key": "token"}}
    ]
    assert "value" not in json.dumps(json.loads(text)["secret_env"])
