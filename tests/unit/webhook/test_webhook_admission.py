"""AdmissionReview handling, without HTTP: what each kind of request is answered."""

from __future__ import annotations

import json
from typing import Any

import pytest
from webhook_samples import (
    mcpexternalauthconfig,
    mcpgroup,
    mcpremoteproxy,
    mcpserver,
    mcptoolconfig,
    review,
    review_bytes,
)

from moorage_api.mcptenant import PodSecurityRule, PodTemplateAllowances
from moorage_webhook.admission import ENDPOINTS, KindEndpoint, ReviewOutcome, review_body

SERVERS, TOOLCONFIGS, REGISTRIES, REMOTEPROXIES, AUTHCONFIGS, GROUPS, VIRTUALSERVERS = ENDPOINTS


def _answer(endpoint: KindEndpoint, document: dict[str, Any]) -> tuple[ReviewOutcome, Any]:
    outcome = review_body(endpoint, review_bytes(document))
    assert outcome.status == 200, outcome.body
    return outcome, json.loads(outcome.body)


def test_allowed_review_echoes_the_uid() -> None:
    outcome, body = _answer(SERVERS, review(mcpserver(), uid="u-1"))
    assert body == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u-1", "allowed": True},
    }
    assert (outcome.allowed, outcome.code, outcome.operation, outcome.user) == (
        True,
        200,
        "CREATE",
        "alice",
    )


def test_denied_review_carries_422_the_message_and_field_causes() -> None:
    obj = mcpserver({"image": "nginx@sha256:" + "a" * 40})
    outcome, body = _answer(SERVERS, review(obj, uid="u-2"))
    response = body["response"]
    assert response["uid"] == "u-2"
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('spec.image: "nginx@sha256:')
    assert status["details"]["kind"] == "MCPServer"
    assert status["details"]["causes"][0]["field"] == "spec.image"
    assert outcome.message == status["message"]


def test_warnings_are_returned_with_an_allowed_review() -> None:
    _, body = _answer(SERVERS, review(mcpserver({"image": "nginx:latest"})))
    assert body["response"]["allowed"] is True
    assert body["response"]["warnings"] == [
        "spec.image: tag 'latest' moves: pin a version tag or a digest so every pod runs the "
        "same code"
    ]


def test_warnings_are_made_printable_ascii_and_short() -> None:
    spec = {"toolsOverride": {"fetch": {"name": "é" * 120}}}
    _, body = _answer(TOOLCONFIGS, review(mcptoolconfig(spec)))
    (warning,) = body["response"]["warnings"]
    assert warning.isascii()
    assert warning.isprintable()
    assert len(warning) == 256
    assert warning.endswith("...")


def test_dry_run_reviews_are_judged_the_same() -> None:
    outcome, body = _answer(SERVERS, review(mcpserver({"image": "Bad"}), dry_run=True))
    assert body["response"]["allowed"] is False
    assert outcome.dry_run is True


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_allowed(operation: str) -> None:
    document = review(None, operation=operation, old=mcpserver({"image": "Bad"}))
    outcome, body = _answer(SERVERS, document)
    assert body["response"] == {"uid": "0f1e2d3c", "allowed": True}
    assert outcome.operation == operation


def test_subresource_writes_are_allowed() -> None:
    document = review(mcpserver({"image": "Bad"}), operation="UPDATE", old=mcpserver())
    document["request"]["subResource"] = "status"
    _, body = _answer(SERVERS, document)
    assert body["response"]["allowed"] is True


def test_update_sees_the_old_object() -> None:
    document = review(
        mcpserver({"transport": "sse"}), operation="UPDATE", old=mcpserver({"transport": "stdio"})
    )
    _, body = _answer(SERVERS, document)
    assert body["response"]["allowed"] is True
    assert body["response"]["warnings"][0].startswith("spec.transport: changing from stdio to sse")


@pytest.mark.parametrize(
    ("endpoint", "gvk", "fragment"),
    [
        pytest.param(
            TOOLCONFIGS,
            {"group": "moorage.dev", "version": "v1alpha1", "kind": "MCPServer"},
            "/validate/mcptoolconfig validates moorage.dev/v1alpha1 MCPToolConfig, not "
            "moorage.dev/v1alpha1 MCPServer",
            id="wrong-kind",
        ),
        pytest.param(
            SERVERS,
            {"group": "moorage.dev", "version": "v1beta1", "kind": "MCPServer"},
            "not moorage.dev/v1beta1 MCPServer",
            id="wrong-version",
        ),
        pytest.param(
            REGISTRIES,
            {"group": "", "version": "v1", "kind": "ConfigMap"},
            "not core/v1 ConfigMap",
            id="wrong-group",
        ),
    ],
)
def test_misrouted_reviews_are_denied_with_a_message_naming_the_configuration(
    endpoint: KindEndpoint, gvk: dict[str, str], fragment: str
) -> None:
    document = review(mcpserver())
    document["request"]["kind"] = gvk
    _, body = _answer(endpoint, document)
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["code"] == 400
    assert fragment in body["response"]["status"]["message"]


def _broken(mutate: Any) -> bytes:
    document = review(mcpserver())
    mutate(document)
    return review_bytes(document)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"{", "not JSON", id="truncated"),
        pytest.param(b"\xff\xfe", "not JSON", id="not-utf8"),
        pytest.param(b"[]", "must be a JSON object", id="array"),
        pytest.param(
            _broken(lambda d: d.update(apiVersion="admission.k8s.io/v1beta1")),
            'apiVersion "admission.k8s.io/v1beta1" is not supported',
            id="v1beta1",
        ),
        pytest.param(_broken(lambda d: d.pop("apiVersion")), "apiVersion null", id="no-version"),
        pytest.param(_broken(lambda d: d.update(kind="Review")), "kind", id="wrong-kind"),
        pytest.param(_broken(lambda d: d.pop("request")), "request", id="no-request"),
        pytest.param(_broken(lambda d: d["request"].pop("uid")), "request.uid", id="no-uid"),
        pytest.param(_broken(lambda d: d["request"].update(uid="")), "request.uid", id="empty-uid"),
        pytest.param(_broken(lambda d: d["request"].update(uid=7)), "request.uid", id="int-uid"),
        pytest.param(
            _broken(lambda d: d["request"].update(operation="PATCH")),
            "request.operation",
            id="operation",
        ),
        pytest.param(
            _broken(lambda d: d["request"].update(object=None)),
            "request.object is required for CREATE",
            id="create-without-object",
        ),
        pytest.param(
            _broken(lambda d: d["request"].update(operation="UPDATE")),
            "request.oldObject is required for UPDATE",
            id="update-without-old-object",
        ),
        pytest.param(
            _broken(lambda d: d["request"].update(object=[1])),
            "request.object",
            id="object-not-an-object",
        ),
        pytest.param(
            _broken(lambda d: d["request"].update(dryRun="yes")),
            "request.dryRun",
            id="dry-run-type",
        ),
        pytest.param(
            _broken(lambda d: d["request"].pop("kind")), "request.kind", id="no-request-kind"
        ),
    ],
)
def test_malformed_requests_get_400_with_the_reason(body: bytes, fragment: str) -> None:
    outcome = review_body(SERVERS, body)
    assert outcome.status == 400
    assert outcome.allowed is None
    assert fragment in outcome.body.decode()


@pytest.mark.parametrize(
    ("endpoint", "obj", "field"),
    [
        (
            REMOTEPROXIES,
            mcpremoteproxy({"remoteUrl": "https://u:p@mcp.example.com/"}),
            "spec",
        ),
        (
            AUTHCONFIGS,
            mcpexternalauthconfig({"type": "headerInjection"}),
            "spec",
        ),
        (GROUPS, mcpgroup({"description": "a\nb"}), "spec.description"),
    ],
    ids=["remote-proxy", "auth-config", "group"],
)
def test_the_new_kinds_are_denied_with_field_causes(
    endpoint: KindEndpoint, obj: dict[str, Any], field: str
) -> None:
    outcome, body = _answer(endpoint, review(obj))
    status = body["response"]["status"]
    assert (outcome.allowed, status["code"]) == (False, 422)
    assert status["details"]["kind"] == obj["kind"]
    assert status["details"]["causes"][0]["field"] == field


def test_a_remote_proxy_is_judged_with_its_namespaces_allowances() -> None:
    privileged = {
        "podTemplateSpec": {
            "spec": {
                "containers": [{"name": "proxyrunner", "securityContext": {"privileged": True}}]
            }
        }
    }
    document = review_bytes(review(mcpremoteproxy(privileged)))
    assert not review_body(REMOTEPROXIES, document).allowed
    allowed = PodTemplateAllowances(allow=[PodSecurityRule.PRIVILEGED])
    seen: list[str] = []

    def lookup(namespace: str) -> PodTemplateAllowances:
        seen.append(namespace)
        return allowed

    assert review_body(REMOTEPROXIES, document, allowances=lookup).allowed
    assert seen == ["team-a"]
