"""Resolving an MCPServer's references: what it names, and every way a reference can fail."""

from __future__ import annotations

import json
from typing import Any

import pytest
from planning_fixtures import config_map, raw_server, server, tool_config
from testkit.cedarattacks import LONG_AND_CHAIN, NESTED_PARENTHESES

from moorage_api.mcpserver import MCPServerConditionType
from moorage_operator.planning.mcpservers.references import (
    Problem,
    References,
    compute_config_hash,
    config_map_names_of,
    resolve_inputs,
    tool_config_name_of,
)

OIDC = MCPServerConditionType.AUTH_CONFIG_VALID
TOOLS = MCPServerConditionType.TOOL_CONFIG_RESOLVED


@pytest.mark.parametrize(
    ("spec", "tool_config_name", "config_maps"),
    [
        pytest.param({}, None, [], id="nothing"),
        pytest.param({"toolConfigRef": {"name": "t"}}, "t", [], id="tool-config"),
        pytest.param(
            {
                "oidcConfig": {"type": "configMap", "configMap": {"name": "shared"}},
                "authzConfig": {"type": "configMap", "configMap": {"name": "shared"}},
                "permissionProfile": {"type": "configMap", "name": "egress"},
            },
            None,
            ["shared", "egress"],
            id="configmaps-deduplicated",
        ),
        pytest.param(
            {
                "oidcConfig": {"type": "kubernetes"},
                "authzConfig": {"type": "inline", "inline": {"policies": ["p"]}},
            },
            None,
            [],
            id="inline-references-nothing",
        ),
    ],
)
def test_what_a_raw_server_references(
    spec: dict[str, Any], tool_config_name: str | None, config_maps: list[str]
) -> None:
    raw = raw_server(**spec)
    assert tool_config_name_of(raw) == tool_config_name
    assert config_map_names_of(raw) == config_maps


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({}, id="empty"),
        pytest.param({"spec": None}, id="spec-null"),
        pytest.param({"spec": {"toolConfigRef": "x", "oidcConfig": []}}, id="wrong-types"),
        pytest.param(
            {"spec": {"oidcConfig": {"type": "configMap", "configMap": {"name": 3}}}},
            id="name-not-string",
        ),
    ],
)
def test_index_functions_tolerate_malformed_objects(raw: dict[str, Any]) -> None:
    assert tool_config_name_of(raw) is None
    assert config_map_names_of(raw) == []


BAD_OIDC = '{"issuer": "not a url", "audience": "x"}'


@pytest.mark.parametrize(
    ("spec", "references", "expected"),
    [
        pytest.param(
            {"toolConfigRef": {"name": "t"}},
            References(),
            Problem(TOOLS, "ToolConfigNotFound", 'MCPToolConfig "t" not found', missing=True),
            id="tool-config-missing",
        ),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp"}}},
            References(),
            Problem(
                OIDC,
                "ConfigMapNotFound",
                'ConfigMap "idp" not found (spec.oidcConfig.configMap)',
                missing=True,
            ),
            id="oidc-configmap-missing",
        ),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp"}}},
            References(config_maps={"idp": config_map("idp", other="x")}),
            Problem(
                OIDC,
                "ConfigMapKeyNotFound",
                'ConfigMap "idp" has no key "oidc.json" (spec.oidcConfig.configMap)',
                missing=True,
            ),
            id="oidc-key-missing",
        ),
        pytest.param(
            {"authzConfig": {"type": "configMap", "configMap": {"name": "cedar", "key": "p"}}},
            References(),
            Problem(
                OIDC,
                "ConfigMapNotFound",
                'ConfigMap "cedar" not found (spec.authzConfig.configMap)',
                missing=True,
            ),
            id="authz-configmap-missing",
        ),
        pytest.param(
            {"permissionProfile": {"type": "configMap", "name": "egress", "key": "net.json"}},
            References(config_maps={"egress": config_map("egress")}),
            Problem(
                None,
                "ConfigMapKeyNotFound",
                'ConfigMap "egress" has no key "net.json" (spec.permissionProfile)',
                missing=True,
            ),
            id="profile-key-missing",
        ),
    ],
)
def test_a_missing_reference_names_the_object(
    spec: dict[str, Any], references: References, expected: Problem
) -> None:
    resolution = resolve_inputs(server(**spec).spec, references=references)
    assert resolution.inputs is None
    assert resolution.problems == (expected,)


def cedar_document(policies: list[str]) -> References:
    """ConfigMap "cedar" holding an authz document with `policies`."""
    document = json.dumps({"policies": policies})
    return References(config_maps={"cedar": config_map("cedar", **{"authz.json": document})})


@pytest.mark.parametrize(
    ("spec", "references", "reason", "message_start"),
    [
        pytest.param(
            {"toolConfigRef": {"name": "t"}},
            References(tool_config=tool_config("t", toolsOverride={"x": {}})),
            "ToolConfigInvalid",
            'MCPToolConfig "t" is invalid: spec.toolsOverride.x',
            id="tool-config",
        ),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp"}}},
            References(config_maps={"idp": config_map("idp", **{"oidc.json": BAD_OIDC})}),
            "OIDCConfigInvalid",
            'ConfigMap "idp" holds an invalid OIDC configuration: oidc.json.issuer',
            id="oidc-document",
        ),
        pytest.param(
            {"oidcConfig": {"type": "configMap", "configMap": {"name": "idp"}}},
            References(config_maps={"idp": config_map("idp", **{"oidc.json": "{"})}),
            "OIDCConfigInvalid",
            'ConfigMap "idp" holds an invalid OIDC configuration: oidc.json: not JSON',
            id="oidc-not-json",
        ),
        pytest.param(
            {"authzConfig": {"type": "configMap", "configMap": {"name": "cedar"}}},
            References(config_maps={"cedar": config_map("cedar", **{"authz.json": "{}"})}),
            "AuthzConfigInvalid",
            'ConfigMap "cedar" holds an invalid authorization configuration: authz.json.policies',
            id="authz-document",
        ),
        pytest.param(
            {"authzConfig": {"type": "configMap", "configMap": {"name": "cedar"}}},
            cedar_document([NESTED_PARENTHESES]),
            "AuthzConfigInvalid",
            'ConfigMap "cedar" holds an invalid authorization configuration: '
            "authz.json.policies[0]: nests brackets 701 deep (at line 1, column 743); at most 32 "
            "levels of (, [ and { are allowed",
            id="authz-policy-too-deep",
        ),
        pytest.param(
            {"authzConfig": {"type": "configMap", "configMap": {"name": "cedar"}}},
            cedar_document([LONG_AND_CHAIN]),
            "AuthzConfigInvalid",
            'ConfigMap "cedar" holds an invalid authorization configuration: '
            "authz.json.policies[0]: String should have at most 16384 characters",
            id="authz-policy-too-long",
        ),
        pytest.param(
            {"permissionProfile": {"type": "configMap", "name": "egress"}},
            References(config_maps={"egress": config_map("egress", **{"profile.json": "[1]"})}),
            "PermissionProfileInvalid",
            'ConfigMap "egress" holds an invalid permission profile: profile.json',
            id="profile-document",
        ),
    ],
)
def test_an_unusable_reference_says_what_is_wrong(
    spec: dict[str, Any], references: References, reason: str, message_start: str
) -> None:
    resolution = resolve_inputs(server(**spec).spec, references=references)
    (problem,) = resolution.problems
    assert problem.reason == reason
    assert problem.message.startswith(message_start), problem.message
    assert problem.missing is False


def test_every_problem_is_reported_at_once() -> None:
    spec = server(
        toolConfigRef={"name": "t"},
        oidcConfig={"type": "configMap", "configMap": {"name": "idp"}},
        authzConfig={"type": "configMap", "configMap": {"name": "cedar"}},
    ).spec
    reasons = [p.message for p in resolve_inputs(spec, references=References()).problems]
    assert reasons == [
        'MCPToolConfig "t" not found',
        'ConfigMap "idp" not found (spec.oidcConfig.configMap)',
        'ConfigMap "cedar" not found (spec.authzConfig.configMap)',
    ]


def test_config_hash_ignores_filter_order_and_sees_every_change() -> None:
    from moorage_api.mcptoolconfig import MCPToolConfigSpec

    base = MCPToolConfigSpec.model_validate({"toolsFilter": ["a", "b"]})
    same = MCPToolConfigSpec.model_validate({"toolsFilter": ["b", "a"]})
    other = MCPToolConfigSpec.model_validate(
        {"toolsFilter": ["a", "b"], "toolsOverride": {"a": {"description": "A"}}}
    )
    assert compute_config_hash(base) == compute_config_hash(same)
    assert compute_config_hash(base) != compute_config_hash(other)
    assert len(compute_config_hash(base)) == 16
