"""VirtualMCPServer admission: a bad conflict map is refused naming the field, incoming auth,
resources and the pod template are judged as on an MCPServer, a rename to the same name warned
about."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_samples import virtualmcpserver

from moorage_webhook.validation import validate_virtualmcpserver


def manual(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "strategy": "manual",
        "manual": [{"backend": b, "tool": t, "name": n} for b, t, n in entries],
    }


def test_a_complete_virtual_server_is_allowed_without_warnings() -> None:
    body = virtualmcpserver(
        incomingAuth={"oidcConfig": {"type": "kubernetes", "kubernetes": {"audience": "team"}}},
        outgoingAuth={"backends": {"docs": {"externalAuthConfigRef": {"name": "upstream"}}}},
        toolConfigs={"time": {"name": "only-now"}},
        conflictResolution=manual(("time", "now", "time_now"), ("docs", "now", "docs_now")),
        resources={"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}},
    )
    verdict = validate_virtualmcpserver(body, old=None)
    assert verdict.allowed, verdict.message()
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        pytest.param(
            {"conflictResolution": manual(("a", "t", "x"), ("b", "u", "x"))},
            "spec.conflictResolution: manual: names must be unique: x",
            id="manual-name-twice",
        ),
        pytest.param(
            {"conflictResolution": manual(("a", "t", "x"), ("a", "t", "y"))},
            "spec.conflictResolution: manual: (backend, tool) given twice: a/t",
            id="manual-pair-twice",
        ),
        pytest.param(
            {"conflictResolution": {**manual(("a", "t", "x")), "strategy": "priority"}},
            "spec.conflictResolution: priority: required with strategy priority",
            id="manual-with-priority",
        ),
        pytest.param(
            {"conflictResolution": manual(("a", "t", "not a name"))},
            "spec.conflictResolution.manual[0].name",
            id="manual-name-invalid",
        ),
        pytest.param(
            {
                "incomingAuth": {
                    "oidcConfig": {
                        "type": "inline",
                        "inline": {"issuer": "http://idp", "audience": "a"},
                    }
                }
            },
            "spec.incomingAuth.oidcConfig.inline.issuer",
            id="oidc-issuer",
        ),
        pytest.param(
            {
                "incomingAuth": {
                    "authzConfig": {"type": "inline", "inline": {"policies": ["permit("]}}
                }
            },
            "spec.incomingAuth.authzConfig.inline.policies[0]",
            id="cedar",
        ),
        pytest.param(
            {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
            "spec.resources.requests[cpu]",
            id="request-over-limit",
        ),
        pytest.param(
            {"podTemplateSpec": {"spek": {}}},
            'spec.podTemplateSpec.spek: unknown field (did you mean "spec"?)',
            id="pod-template",
        ),
        pytest.param(
            {"podTemplateSpec": {"spec": {"hostNetwork": True}}},
            "spec.podTemplateSpec.spec.hostNetwork",
            id="pod-security",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(spec: dict[str, Any], fragment: str) -> None:
    verdict = validate_virtualmcpserver(virtualmcpserver(**spec), old=None)
    assert not verdict.allowed
    assert fragment in verdict.message(), verdict.message()


def test_a_manual_entry_keeping_its_name_is_a_warning() -> None:
    body = virtualmcpserver(conflictResolution=manual(("a", "now", "now"), ("b", "now", "b_now")))
    verdict = validate_virtualmcpserver(body, old=None)
    assert verdict.allowed
    assert [str(w) for w in verdict.warnings] == [
        'spec.conflictResolution.manual[0].name: tool "now" of backend "a" keeps its name; '
        "another backend offering it still conflicts"
    ]
