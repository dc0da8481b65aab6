"""MCPServer admission rules: every rejection and warning, with the field path it names."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from webhook_samples import POLICY, mcpserver

from moorage_api.mcptenant import PodSecurityRule, PodTemplateAllowances
from moorage_webhook.validation import validate_mcpserver
from moorage_webhook.validation.objects import RATCHETED_PREFIX

DIGEST = "sha256:" + "0" * 64


def _errors(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in validate_mcpserver(obj, old=old).errors]


def _warnings(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [str(w) for w in validate_mcpserver(obj, old=old).warnings]


def test_a_plain_server_is_allowed_without_warnings() -> None:
    verdict = validate_mcpserver(mcpserver(), old=None)
    assert verdict.allowed
    assert verdict.warnings == ()


def test_a_server_using_every_field_well_is_allowed() -> None:
    spec = {
        "image": f"ghcr.io/moorage/fetch:2.0@{DIGEST}",
        "transport": "sse",
        "proxyMode": "sse",
        "targetPort": 3000,
        "backendReplicas": 2,
        "replicas": 2,
        "sessionStorage": {"type": "redis", "redis": {"address": "redis.cache:6379"}},
        "args": ["--verbose"],
        "env": [{"name": "LOG_LEVEL", "value": "debug"}],
        "secrets": [
            {"name": "api", "key": "token", "targetEnvName": "API_TOKEN"},
            {"name": "api", "key": "USER"},
        ],
        "serviceAccount": "fetcher",
        "resources": {"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"cpu": "250m"}},
        "podTemplateSpec": {
            "metadata": {"labels": {"team": "a"}},
            "spec": {
                "serviceAccountName": "fetcher",
                "containers": [
                    {"name": "mcp", "resources": {"limits": {"memory": "1Gi"}}},
                    {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "inf"]},
                ],
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "affinity": {"nodeAffinity": {"anything": ["goes", "here"]}},
            },
        },
        "permissionProfile": {"type": "configMap", "name": "egress", "key": "profile.json"},
        "oidcConfig": {
            "type": "inline",
            "inline": {
                "issuer": "https://issuer.example.com/realms/a",
                "audience": "mcp",
                "jwksUrl": "https://issuer.example.com/jwks?v=2",
                "requiredScopes": ["mcp:tools", "openid"],
            },
        },
        "authzConfig": {
            "type": "inline",
            "inline": {
                "policies": [POLICY, 'forbid(principal, action, resource == Tool::"rm");'],
                "entitiesJson": '[{"uid": {"type": "Client", "id": "a"}, "attrs": {}, '
                '"parents": []}]',
            },
        },
        "toolConfigRef": {"name": "tools"},
        "endpointPrefix": "/servers/fetch",
        "resourceOverrides": {
            "proxyDeployment": {
                "labels": {"team": "a"},
                "annotations": {"example.com/owner": "a"},
                "env": [{"name": "HTTP_PROXY", "value": "http://proxy:3128"}],
                "podTemplateMetadataOverrides": {"labels": {"tier": "mcp"}},
            },
            "proxyService": {"annotations": {"example.com/lb": "internal"}},
        },
    }
    # Running as another ServiceAccount needs an MCPTenant's allowance (see the pod security tests).
    allowances = PodTemplateAllowances(service_accounts=["fetcher"])
    verdict = validate_mcpserver(mcpserver(spec), old=None, allowances=allowances)
    assert verdict.errors == ()
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param(
            {"image": "Foo:bar"},
            "spec.image",
            '"Foo:bar" is not a valid image reference: repository "Foo" must be lowercase',
            id="image-uppercase",
        ),
        pytest.param(
            {"image": "nginx@sha256:" + "a" * 40},
            "spec.image",
            "sha256 digest must have 64 hex digits, not 40",
            id="image-digest-length",
        ),
        pytest.param(
            {"image": "nginx@sha256:" + "A" * 64},
            "spec.image",
            "must be lowercase hex",
            id="image-digest-case",
        ),
        pytest.param(
            {"transport": "streamable-http", "proxyMode": "sse"},
            "spec.proxyMode",
            "must be streamable-http (or unset) for transport streamable-http",
            id="proxy-mode-contradicts-transport",
        ),
        pytest.param(
            {"secrets": [{"name": "s", "key": "1password"}]},
            "spec.secrets[0].key",
            "set targetEnvName",
            id="secret-key-not-an-env-name",
        ),
        pytest.param(
            {
                "env": [{"name": "TOKEN", "value": "x"}],
                "secrets": [{"name": "s", "key": "k", "targetEnvName": "TOKEN"}],
            },
            "spec.secrets[0].targetEnvName",
            '"TOKEN" is also set by spec.env[0]',
            id="secret-collides-with-env",
        ),
        pytest.param(
            {"secrets": [{"name": "a", "key": "TOKEN"}, {"name": "b", "key": "TOKEN"}]},
            "spec.secrets[1].key",
            '"TOKEN" is also set by spec.secrets[0]',
            id="secrets-collide",
        ),
        pytest.param(
            {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.env",
            "environment variable names must be unique: A",
            id="env-duplicate",
        ),
        pytest.param(
            {"env": [{"name": "1A", "value": "1"}]},
            "spec.env[0].name",
            '"1A" is not a valid environment variable name',
            id="env-invalid-name",
        ),
        pytest.param(
            {"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1500m"}}},
            "spec.resources.requests[cpu]",
            "request 1500m must be less than or equal to the limit 1",
            id="request-over-limit",
        ),
        pytest.param(
            {"resources": {"limits": {"gpu": "1"}}},
            "spec.resources.limits[gpu]",
            "is not a resource name",
            id="resource-name",
        ),
        pytest.param(
            {"resources": {"requests": {"memory": "-1Gi"}}},
            "spec.resources.requests[memory]",
            "must not be negative",
            id="negative-quantity",
        ),
        pytest.param(
            {"podTemplateSpec": {"spec": {"containers": {"name": "mcp"}}}},
            "spec.podTemplateSpec.spec.containers",
            "must be a list, not an object",
            id="pod-template-wrong-type",
        ),
        pytest.param(
            {"podTemplateSpec": {"spec": {"containers": [{"name": "mcp", "imag": "x"}]}}},
            "spec.podTemplateSpec.spec.containers[0].imag",
            'unknown field (did you mean "image"?)',
            id="pod-template-unknown-field",
        ),
        pytest.param(
            {"serviceAccount": "a", "podTemplateSpec": {"spec": {"serviceAccountName": "b"}}},
            "spec.podTemplateSpec.spec.serviceAccountName",
            '"b" contradicts spec.serviceAccount "a"',
            id="service-account-contradiction",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "inline",
                    "inline": {"issuer": "http://issuer.example.com", "audience": "a"},
                }
            },
            "spec.oidcConfig.inline.issuer",
            "must use https:// (http is only accepted for localhost)",
            id="oidc-http-issuer",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "inline",
                    "inline": {"issuer": "https://i.example.com?x=1", "audience": "a"},
                }
            },
            "spec.oidcConfig.inline.issuer",
            "must not have a query",
            id="oidc-issuer-query",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "inline",
                    "inline": {
                        "issuer": "https://i.example.com",
                        "audience": "a",
                        "jwksUrl": "https://user:pw@i.example.com/jwks",
                    },
                }
            },
            "spec.oidcConfig.inline.jwksUrl",
            "must not carry credentials",
            id="oidc-jwks-credentials",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "inline",
                    "inline": {
                        "issuer": "https://i.example.com",
                        "audience": "a",
                        "requiredScopes": ['a"b'],
                    },
                }
            },
            "spec.oidcConfig.inline.requiredScopes[0]",
            "is not an OAuth scope",
            id="oidc-scope",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "kubernetes",
                    "kubernetes": {"issuer": "ftp://k8s", "allowedServiceAccounts": []},
                }
            },
            "spec.oidcConfig.kubernetes.issuer",
            '"ftp://k8s" is not a valid URL: expected an https:// URL',
            id="kubernetes-issuer",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "kubernetes",
                    "kubernetes": {"allowedServiceAccounts": ["n" * 64 + "/sa"]},
                }
            },
            "spec.oidcConfig.kubernetes.allowedServiceAccounts[0]",
            "must be namespace/name",
            id="service-account-ref-too-long",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "kubernetes",
                    "kubernetes": {"allowedServiceAccounts": ["no-slash"]},
                }
            },
            "spec.oidcConfig.kubernetes.allowedServiceAccounts[0]",
            '"no-slash" must be namespace/name of a service account',
            id="service-account-ref-format",
        ),
        pytest.param(
            {"oidcConfig": {"type": "inline"}},
            "spec.oidcConfig",
            "inline: required when type is inline",
            id="oidc-type-mismatch",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {"policies": ["permit(principal, action, resource"]},
                }
            },
            "spec.authzConfig.inline.policies[0]",
            "is not a valid Cedar policy: unexpected end of input",
            id="cedar-syntax",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {"policies": ["permit(principal == ?principal, action, resource);"]},
                }
            },
            "spec.authzConfig.inline.policies[0]",
            "is a Cedar template",
            id="cedar-template",
        ),
        pytest.param(
            {"authzConfig": {"type": "inline", "inline": {"policies": ["// nothing"]}}},
            "spec.authzConfig.inline.policies[0]",
            "contains no Cedar policy",
            id="cedar-empty",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {"policies": [POLICY], "entitiesJson": "{}"},
                }
            },
            "spec.authzConfig.inline.entitiesJson",
            "must be a JSON list of Cedar entities",
            id="cedar-entities",
        ),
        pytest.param(
            {
                "resourceOverrides": {
                    "proxyService": {"labels": {"bad key!": "x"}},
                }
            },
            "spec.resourceOverrides.proxyService.labels[bad key!]",
            "is not a valid key",
            id="override-label-key",
        ),
        pytest.param(
            {
                "resourceOverrides": {
                    "proxyDeployment": {"labels": {"team": "not valid"}},
                }
            },
            "spec.resourceOverrides.proxyDeployment.labels[team]",
            'label value "not valid"',
            id="override-label-value",
        ),
        pytest.param(
            {
                "resourceOverrides": {
                    "proxyDeployment": {
                        "podTemplateMetadataOverrides": {"annotations": {"/x": "y"}}
                    },
                }
            },
            "spec.resourceOverrides.proxyDeployment.podTemplateMetadataOverrides.annotations[/x]",
            "the prefix before '/' must not be empty",
            id="override-annotation-key",
        ),
        pytest.param(
            {"permissionProfile": {"type": "builtin", "name": "open"}},
            "spec.permissionProfile",
            'builtin profile "open" does not exist'.replace('"', "'"),
            id="permission-profile-name",
        ),
        pytest.param({"transport": "grpc"}, "spec.transport", "Input should be", id="transport"),
        pytest.param(
            {"transport": "streamable-http", "stdioEra": "auto"},
            "spec",
            "stdioEra: auto is only used with transport stdio",
            id="stdio-era-for-http",
        ),
        pytest.param({"stdioEra": "modern"}, "spec.stdioEra", "Input should be", id="stdio-era"),
        pytest.param({"surprise": 1}, "spec.surprise", "unknown field", id="unknown-spec-field"),
    ],
)
def test_rejects_with_the_field_path_and_what_is_expected(
    spec: dict[str, Any], path: str, fragment: str
) -> None:
    errors = _errors(mcpserver(spec))
    assert any(e.startswith(f"{path}: ") and fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("obj", "path", "fragment"),
    [
        pytest.param(
            mcpserver(name="a" * 51), "metadata.name", "at most 50 characters", id="name-length"
        ),
        pytest.param(
            mcpserver(name="1st"), "metadata.name", "starting with a letter", id="name-pattern"
        ),
        pytest.param(
            {k: v for k, v in mcpserver().items() if k != "spec"},
            "spec",
            "required field is missing",
            id="no-spec",
        ),
    ],
)
def test_rejects_objects_whose_name_or_shape_cannot_work(
    obj: dict[str, Any], path: str, fragment: str
) -> None:
    errors = _errors(obj)
    assert any(e.startswith(f"{path}: ") and fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param({"image": "nginx"}, "spec.image", "no tag means 'latest'", id="no-tag"),
        pytest.param({"image": "nginx:latest"}, "spec.image", "tag 'latest' moves", id="latest"),
        pytest.param(
            {"targetPort": 9000}, "spec.targetPort", "ignored for transport stdio", id="stdio-port"
        ),
        pytest.param(
            {"backendReplicas": 2},
            "spec.backendReplicas",
            "ignored for transport stdio",
            id="stdio-backend-replicas",
        ),
        pytest.param(
            {"endpointPrefix": "/x"},
            "spec.endpointPrefix",
            "only used in SSE endpoint URLs",
            id="prefix-without-sse",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "inline",
                    "inline": {
                        "issuer": "https://i.example.com",
                        "audience": "a",
                        "requiredScopes": ["a", "a"],
                    },
                }
            },
            "spec.oidcConfig.inline.requiredScopes[1]",
            'scope "a" is listed twice',
            id="scope-twice",
        ),
        pytest.param(
            {
                "oidcConfig": {
                    "type": "kubernetes",
                    "kubernetes": {"allowedServiceAccounts": ["ns/a", "ns/a"]},
                }
            },
            "spec.oidcConfig.kubernetes.allowedServiceAccounts[1]",
            "listed twice",
            id="service-account-twice",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {
                        "policies": ['permit(principal, action == Action::"list_tools", resource);']
                    },
                }
            },
            "spec.authzConfig.inline.policies[0]",
            'names Action::"list_tools", which Moorage never evaluates',
            id="cedar-unknown-action",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {"policies": ['permit(principal == User::"a", action, resource);']},
                }
            },
            "spec.authzConfig.inline.policies[0]",
            "names principal type User, but callers are Client",
            id="cedar-principal-type",
        ),
        pytest.param(
            {
                "authzConfig": {
                    "type": "inline",
                    "inline": {
                        "policies": [
                            POLICY + "\npermit(principal, action, resource is Server);",
                        ]
                    },
                }
            },
            "spec.authzConfig.inline.policies[0]",
            "policy 2 names resource type Server",
            id="cedar-resource-type",
        ),
        pytest.param(
            {"resourceOverrides": {"proxyService": {"labels": {"app.kubernetes.io/name": "x"}}}},
            "spec.resourceOverrides.proxyService.labels[app.kubernetes.io/name]",
            "Moorage sets this label itself; its value wins",
            id="override-moorage-label",
        ),
        pytest.param(
            {
                "resourceOverrides": {
                    "proxyDeployment": {"annotations": {"moorage.dev/runconfig-checksum": "x"}}
                }
            },
            "spec.resourceOverrides.proxyDeployment.annotations[moorage.dev/runconfig-checksum]",
            "annotations are Moorage's",
            id="override-moorage-annotation",
        ),
        pytest.param(
            {"podTemplateSpec": {"spec": {"containers": [{"name": "mcp", "image": "other:1"}]}}},
            "spec.podTemplateSpec.spec.containers[0].image",
            'container "mcp" always runs spec.image',
            id="pod-template-mcp-image",
        ),
    ],
)
def test_warns_about_legal_but_risky_settings(
    spec: dict[str, Any], path: str, fragment: str
) -> None:
    verdict = validate_mcpserver(mcpserver(spec), old=None)
    assert verdict.allowed, verdict.message()
    warnings = [str(w) for w in verdict.warnings]
    assert any(w.startswith(f"{path}: ") and fragment in w for w in warnings), warnings


def test_a_pinned_digest_needs_no_tag() -> None:
    assert _warnings(mcpserver({"image": f"nginx@{DIGEST}"})) == []
    assert _warnings(mcpserver({"image": f"nginx:latest@{DIGEST}"})) == []


def test_sse_transport_with_the_default_proxy_mode_is_accepted() -> None:
    # proxyMode defaults to streamable-http in the schema, so it cannot tell us anything here.
    assert _errors(mcpserver({"transport": "sse", "proxyMode": "streamable-http"})) == []


def test_loopback_issuers_may_use_http_for_local_development() -> None:
    for issuer in ("http://localhost:8080/realms/a", "http://127.0.0.1:9000", "http://[::1]/x"):
        spec = {"oidcConfig": {"type": "inline", "inline": {"issuer": issuer, "audience": "a"}}}
        assert _errors(mcpserver(spec)) == [], issuer


def test_many_problems_are_all_reported_in_one_message() -> None:
    spec = {
        "image": "bad@sha256:" + "a" * 40,
        "transport": "streamable-http",
        "proxyMode": "sse",
        "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}},
    }
    message = validate_mcpserver(mcpserver(spec), old=None).message()
    assert message.startswith('spec.image: "bad@sha256:aaaa')
    assert "; spec.proxyMode: " in message
    assert "; spec.resources.requests[cpu]: " in message


def test_errors_beyond_the_cap_are_counted_not_listed() -> None:
    env = [{"name": f"{i}X", "value": ""} for i in range(30)]
    verdict = validate_mcpserver(mcpserver({"env": env}), old=None)
    assert not verdict.allowed
    assert len(verdict.errors) == 20
    assert verdict.message().endswith("; and 10 more")


# -- updates ----------------------------------------------------------------------------------


def test_changing_the_transport_warns_that_sessions_end() -> None:
    old = mcpserver()
    new = mcpserver({"transport": "streamable-http"})
    warnings = _warnings(new, old)
    assert any(
        w.startswith("spec.transport: changing from stdio to streamable-http") for w in warnings
    )


@pytest.mark.parametrize(("before", "after"), [("handshake", "auto"), ("auto", "handshake")])
def test_changing_the_stdio_era_warns_that_it_replaces_the_servers_pod(
    before: str, after: str
) -> None:
    warnings = _warnings(mcpserver({"stdioEra": after}), mcpserver({"stdioEra": before}))
    assert any(
        w.startswith(f"spec.stdioEra: changing from {before} to {after}")
        and "replaces the MCP server's pod" in w
        for w in warnings
    ), warnings


def test_keeping_the_stdio_era_does_not_warn() -> None:
    old = mcpserver({"stdioEra": "auto"})
    assert _warnings(mcpserver({"stdioEra": "auto", "args": ["-v"]}), old) == []


def test_changing_what_clients_speak_or_the_port_warns_that_the_url_moves() -> None:
    old = mcpserver()
    warnings = _warnings(mcpserver({"proxyMode": "sse", "port": 9090}), old)
    assert any(
        w.startswith("spec.proxyMode: changing from streamable-http to sse") for w in warnings
    )
    assert any(w.startswith("spec.port: changing from 8080 to 9090") for w in warnings)


def test_metadata_only_updates_are_not_validated() -> None:
    # An object admitted before a rule existed must still get its finalizer removed.
    old = mcpserver({"image": "nginx@sha256:" + "a" * 40})
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["metadata"]["labels"] = {"x": "y"}
    verdict = validate_mcpserver(new, old=old)
    assert verdict.allowed
    assert verdict.warnings == ()


def test_objects_being_deleted_are_not_validated() -> None:
    obj = mcpserver({"image": "Bad"})
    obj["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert validate_mcpserver(obj, old=None).allowed


def test_problems_the_old_object_already_had_only_warn_on_update() -> None:
    old = mcpserver({"image": "nginx@sha256:" + "a" * 40})
    new = mcpserver({"image": "nginx@sha256:" + "a" * 40, "args": ["--new"]})
    verdict = validate_mcpserver(new, old=old)
    assert verdict.allowed
    assert any(w.message.startswith(RATCHETED_PREFIX) for w in verdict.warnings)


def test_new_problems_reject_an_update_even_beside_old_ones() -> None:
    old = mcpserver({"image": "nginx@sha256:" + "a" * 40})
    new = mcpserver(
        {
            "image": "nginx@sha256:" + "a" * 40,
            "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}},
        }
    )
    verdict = validate_mcpserver(new, old=old)
    assert [e.path for e in verdict.errors] == ["spec.resources.requests[cpu]"]


def test_status_is_not_validated() -> None:
    obj = mcpserver()
    obj["status"] = {"phase": "NotAPhase", "conditions": "junk"}
    assert validate_mcpserver(obj, old=None).allowed


# -- pod security (the rule table itself is tested in test_api_podsecurity) ---------------------

PRIVILEGED = {"spec": {"containers": [{"name": "mcp", "securityContext": {"privileged": True}}]}}
PRIVILEGED_PATH = "spec.podTemplateSpec.spec.containers[0].securityContext.privileged"


def test_a_privileged_pod_template_is_refused_with_the_field_and_the_allowance() -> None:
    verdict = validate_mcpserver(mcpserver({"podTemplateSpec": PRIVILEGED}), old=None)
    [error] = verdict.errors
    assert error.path == PRIVILEGED_PATH
    assert "must allow it (allow: [Privileged])" in error.message


def test_an_allowance_of_the_namespace_lets_it_through() -> None:
    allowances = PodTemplateAllowances(allow=[PodSecurityRule.PRIVILEGED])
    verdict = validate_mcpserver(
        mcpserver({"podTemplateSpec": PRIVILEGED}), old=None, allowances=allowances
    )
    assert verdict.allowed


def test_while_mcptenants_are_not_loaded_only_what_needs_an_allowance_is_refused() -> None:
    refused = validate_mcpserver(mcpserver({"podTemplateSpec": PRIVILEGED}), allowances=None)
    [error] = refused.errors
    assert "has not loaded the MCPTenants yet" in error.message
    assert validate_mcpserver(mcpserver(), allowances=None).allowed


def test_pod_security_refusals_are_not_ratcheted_on_update() -> None:
    old = mcpserver({"podTemplateSpec": PRIVILEGED})
    new = mcpserver({"podTemplateSpec": PRIVILEGED, "args": ["--more"]})
    assert [e.path for e in validate_mcpserver(new, old=old).errors] == [PRIVILEGED_PATH]


def test_an_update_that_leaves_the_spec_alone_is_not_judged_again() -> None:
    # The operator's own metadata and finalizer writes must not be refused after an allowance is
    # withdrawn; the proxy runner refuses the workload itself.
    old = mcpserver({"podTemplateSpec": PRIVILEGED})
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["example.com/hold"]
    assert validate_mcpserver(new, old=old).allowed
