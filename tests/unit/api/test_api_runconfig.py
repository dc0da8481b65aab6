"""The RunConfig contract: deterministic rendering, strict loading with errors naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage_api.documents import OutboundNetwork
from moorage_api.runconfig import (
    LIVE_FIELDS,
    SCHEMA_VERSION,
    OwnerReference,
    RunConfig,
    RunConfigAudit,
    RunConfigAuthz,
    RunConfigEnvVar,
    RunConfigError,
    RunConfigOIDC,
    RunConfigPermissionProfile,
    RunConfigToolOverride,
    SecretEnvVar,
    SecretKeyRef,
    load_runconfig,
    render_runconfig_json,
    restart_checksum,
)

SPEC_KEYS = {
    "allowed_hosts",
    "stdio_era",
    "schema_version",
    "name",
    "namespace",
    "owner",
    "generation",
    "image",
    "args",
    "env",
    "secret_env",
    "transport",
    "proxy_mode",
    "port",
    "target_port",
    "pod_template_spec",
    "resources",
    "service_account",
    "backend_replicas",
    "proxy_replicas",
    "permission_profile",
    "oidc",
    "authz",
    "tools_filter",
    "tools_override",
    "audit",
    "trust_proxy_headers",
    "endpoint_prefix",
    "remote",
    "outgoing_auth",
    "aggregate",
    "session_storage",
    "rate_limits",
}


def full_runconfig() -> RunConfig:
    return RunConfig(
        name="time",
        namespace="tools",
        owner=OwnerReference(
            api_version="moorage.dev/v1alpha1", kind="MCPServer", name="time", uid="u-1"
        ),
        generation=4,
        image="ghcr.io/moorage-dev/mcp-server-time:2025.9.25",
        args=["--local-timezone=UTC"],
        env=[RunConfigEnvVar(name="TZ", value="UTC")],
        secret_env=[
            SecretEnvVar(name="API_KEY", secret_key_ref=SecretKeyRef(name="creds", key="key"))
        ],
        transport="stdio",
        proxy_mode="sse",
        port=8081,
        target_port=9000,
        pod_template_spec={"spec": {"nodeSelector": {"disk": "ssd"}}},
        service_account="time-sa",
        backend_replicas=1,
        permission_profile=RunConfigPermissionProfile(
            type="configMap",
            name="profiles",
            key="time.json",
            outbound=OutboundNetwork(allow_port=[443], allow_cidr=["10.0.0.0/8"]),
        ),
        oidc=RunConfigOIDC(type="kubernetes", audience="moorage"),
        authz=RunConfigAuthz(policies=["permit(principal, action, resource);"]),
        tools_filter=["now"],
        tools_override={"get_current_time": RunConfigToolOverride(name="now")},
        audit=RunConfigAudit(enabled=True),
        trust_proxy_headers=True,
        endpoint_prefix="/time",
    )


def test_every_key_of_the_spec_is_rendered() -> None:
    data = json.loads(render_runconfig_json(RunConfig(name="a", namespace="b", image="c")))
    assert set(data) == SPEC_KEYS
    assert data["schema_version"] == SCHEMA_VERSION == "moorage/v1"


def test_rendering_is_sorted_indented_and_newline_terminated() -> None:
    text = render_runconfig_json(full_runconfig())
    assert text.endswith("}\n")
    assert text.startswith('{\n  "aggregate": null,\n  "allowed_hosts": [')
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_rendering_is_deterministic() -> None:
    assert render_runconfig_json(full_runconfig()) == render_runconfig_json(full_runconfig())


def test_the_owner_is_a_kubernetes_owner_reference() -> None:
    data = json.loads(render_runconfig_json(full_runconfig()))
    assert data["owner"] == {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "name": "time",
        "uid": "u-1",
    }
    assert data["secret_env"] == [
        {"name": "API_KEY", "secret_key_ref": {"name": "creds", "key": "key"}}
    ]


def test_a_rendered_runconfig_loads_back_equal() -> None:
    rc = full_runconfig()
    assert load_runconfig(render_runconfig_json(rc)) == rc


def _rendered(**changes: Any) -> str:
    data = json.loads(render_runconfig_json(full_runconfig()))
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{", "not JSON", id="not-json"),
        pytest.param("[]", "must be a JSON object", id="not-an-object"),
        pytest.param(_rendered(schema_version="moorage/v2"), "'moorage/v2'", id="newer-version"),
        pytest.param(json.dumps({"name": "x"}), "schema_version is None", id="no-version"),
        pytest.param(_rendered(port=70000), "port: Input should be less than", id="port"),
        pytest.param(_rendered(transport="grpc"), "transport:", id="transport"),
        pytest.param(_rendered(image=None), "image:", id="image-null"),
        pytest.param(_rendered(colour="blue"), "colour: unknown field", id="unknown-key"),
        pytest.param(
            _rendered(env=[{"name": "A", "value": "1", "from": "x"}]),
            "env[0].from: unknown field",
            id="unknown-nested-key",
        ),
        pytest.param(
            _rendered(oidc={"type": "oidc", "audience": "a"}),
            "oidc.issuer: required when type is oidc",
            id="oidc-without-issuer",
        ),
        pytest.param(
            _rendered(authz={"policies": []}), "authz.policies:", id="authz-without-policies"
        ),
        pytest.param(
            _rendered(owner={"apiVersion": "v", "kind": "k", "name": "n"}),
            "owner.uid: required field is missing",
            id="owner-without-uid",
        ),
    ],
)
def test_a_bad_runconfig_is_rejected_naming_the_field(text: str, expected: str) -> None:
    with pytest.raises(RunConfigError) as info:
        load_runconfig(text)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        {"generation": 5},
        {"tools_filter": []},
        {"tools_override": {}},
        {"authz": None},
        {"audit": RunConfigAudit(enabled=False)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_live_changes_keep_the_restart_checksum(change: dict[str, Any]) -> None:
    rc = full_runconfig()
    assert set(change) <= LIVE_FIELDS
    assert restart_checksum(rc.model_copy(update=change)) == restart_checksum(rc)


@pytest.mark.parametrize(
    "change",
    [
        {"image": "ghcr.io/moorage-dev/mcp-server-time:2026.1.1"},
        {"args": []},
        {"env": []},
        {"secret_env": []},
        {"pod_template_spec": None},
        {"port": 8080},
        {"target_port": 8080},
        {"transport": "sse"},
        {"proxy_mode": "streamable-http"},
        {"oidc": None},
        {"trust_proxy_headers": False},
    ],
    ids=lambda change: next(iter(change)),
)
def test_workload_changes_change_the_restart_checksum(change: dict[str, Any]) -> None:
    rc = full_runconfig()
    assert restart_checksum(rc.model_copy(update=change)) != restart_checksum(rc)
