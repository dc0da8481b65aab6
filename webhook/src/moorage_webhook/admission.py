"""AdmissionReview `admission.k8s.io/v1` in, AdmissionReview out: the webhook's decision, pure.

Pure: no I/O (the aiohttp layer in `app.py` reads the body, times, logs and counts). Given the
kind an endpoint serves and the raw request body, `review_body` returns a `ReviewOutcome`: the
HTTP status and body to send and the facts to log.

- A body that is not JSON, not an AdmissionReview, of another API version, or without the objects
  its operation needs → HTTP 400 with a one-line reason (the apiserver then applies the failure
  policy: fail-closed).
- DELETE and CONNECT, and writes to subresources such as `status` → allowed: the webhook judges
  only what a person writes in the main resource.
- A review for a kind or version this endpoint does not serve (a misconfigured
  ValidatingWebhookConfiguration) → denied with code 400 and a message saying so.
- Otherwise the kind's `validate_*` decides: allowed with warnings, or denied with code 422
  (`Invalid`), the errors joined into one message and listed as field causes. MCPServer's and
  MCPRemoteProxy's also get what MCPTenants allow in the request's namespace (`allowances`,
  looked up in memory): both describe a pod.

`dryRun` changes nothing: validation has no side effects.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moorage_api.constants import (
    GROUP,
    KIND_MCPEXTERNALAUTHCONFIG,
    KIND_MCPGROUP,
    KIND_MCPREGISTRY,
    KIND_MCPREMOTEPROXY,
    KIND_MCPSERVER,
    KIND_MCPTOOLCONFIG,
    KIND_VIRTUALMCPSERVER,
    VERSION,
)
from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.podsecurity import NO_ALLOWANCES
from moorage_webhook.validation import (
    Verdict,
    validate_mcpexternalauthconfig,
    validate_mcpgroup,
    validate_mcpregistry,
    validate_mcpremoteproxy,
    validate_mcpserver,
    validate_mcptoolconfig,
    validate_virtualmcpserver,
)

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
DENIED_CODE: Final = 422
DENIED_REASON: Final = "Invalid"
MISROUTED_CODE: Final = 400
MAX_WARNING_LENGTH: Final = 256
"""The apiserver may truncate longer warnings; we cut them ourselves, where we choose."""

Validator = Callable[..., Verdict]
"""`validate_<kind>(new, *, old) -> Verdict` (MCPServer's and MCPRemoteProxy's also take
`allowances=`)."""

AllowancesLookup = Callable[[str], PodTemplateAllowances | None]
"""Namespace → what MCPTenants allow there; None while they are not known (fail closed)."""


def no_tenants(namespace: str) -> PodTemplateAllowances:
    """The lookup of a webhook that reads no MCPTenants: nothing is allowed beyond the rules."""
    return NO_ALLOWANCES


@dataclass(frozen=True, slots=True)
class KindEndpoint:
    """One `/validate/<kind>` endpoint: which kind it serves and which function judges it."""

    path: str
    kind: str
    validate: Validator
    tenant_scoped: bool = False
    """Whether `validate` takes the MCPTenant allowances of the object's namespace."""


ENDPOINTS: Final = (
    KindEndpoint("/validate/mcpserver", KIND_MCPSERVER, validate_mcpserver, tenant_scoped=True),
    KindEndpoint("/validate/mcptoolconfig", KIND_MCPTOOLCONFIG, validate_mcptoolconfig),
    KindEndpoint("/validate/mcpregistry", KIND_MCPREGISTRY, validate_mcpregistry),
    KindEndpoint(
        "/validate/mcpremoteproxy", KIND_MCPREMOTEPROXY, validate_mcpremoteproxy, tenant_scoped=True
    ),
    KindEndpoint(
        "/validate/mcpexternalauthconfig",
        KIND_MCPEXTERNALAUTHCONFIG,
        validate_mcpexternalauthconfig,
    ),
    KindEndpoint("/validate/mcpgroup", KIND_MCPGROUP, validate_mcpgroup),
    KindEndpoint(
        "/validate/virtualmcpserver",
        KIND_VIRTUALMCPSERVER,
        validate_virtualmcpserver,
        tenant_scoped=True,
    ),
)


def build_endpoints(*, allow_local_sources: bool) -> tuple[KindEndpoint, ...]:
    """`ENDPOINTS`, with MCPRegistry sources on the operator's own host admitted when
    `allow_local_sources` (REGISTRY_ALLOW_LOCAL_SOURCES)."""
    if not allow_local_sources:
        return ENDPOINTS
    lenient = functools.partial(validate_mcpregistry, allow_local_sources=True)
    return tuple(
        KindEndpoint(e.path, e.kind, lenient) if e.kind == KIND_MCPREGISTRY else e
        for e in ENDPOINTS
    )


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)


class GroupVersionKind(_Wire):
    group: str = ""
    version: str
    kind: str


class UserInfo(_Wire):
    username: str = ""
    uid: str = ""
    groups: list[str] | None = None


class AdmissionRequest(_Wire):
    """The fields of `AdmissionRequest` the webhook reads; others are ignored."""

    uid: str = Field(..., min_length=1)
    kind: GroupVersionKind
    sub_resource: str = Field("", alias="subResource")
    name: str = ""
    namespace: str = ""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    user_info: UserInfo = Field(default_factory=UserInfo, alias="userInfo")
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(None, alias="oldObject")
    dry_run: bool = Field(False, alias="dryRun")


class AdmissionReview(_Wire):
    api_version: str = Field(..., alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """What to answer, and what to log and count about it."""

    status: int
    """HTTP status: 200 for every answered review, 400 for a malformed request."""
    body: bytes
    content_type: str
    uid: str = ""
    operation: str = ""
    user: str = ""
    namespace: str = ""
    name: str = ""
    dry_run: bool = False
    allowed: bool | None = None
    """None when no review was answered (HTTP error)."""
    code: int = 0
    """The admission status code (200 when allowed) or the HTTP error status."""
    message: str = ""
    """Why a review was denied, or why the request was malformed."""
    warnings: int = 0


def bad_request(reason: str, *, status: int = 400) -> ReviewOutcome:
    return ReviewOutcome(
        status=status,
        body=(reason + "\n").encode(),
        content_type="text/plain",
        code=status,
        message=reason,
    )


def _first_error(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in item["loc"]) or "body"
    return f"{where}: {item['msg']}"


def _sanitize(warning: str) -> str:
    text = warning.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else " " for c in text)
    if len(text) > MAX_WARNING_LENGTH:
        text = text[: MAX_WARNING_LENGTH - 3] + "..."
    return text


def build_response(
    uid: str,
    *,
    allowed: bool,
    code: int = 200,
    reason: str = "",
    message: str = "",
    warnings: list[str] | None = None,
    causes: list[dict[str, str]] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview `response` document."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        status: dict[str, Any] = {"status": "Failure", "code": code, "message": message}
        if reason:
            status["reason"] = reason
        if causes:
            status["details"] = {**(details or {}), "causes": causes}
        response["status"] = status
    if warnings:
        response["warnings"] = [_sanitize(w) for w in warnings]
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def _answer(request: AdmissionRequest, document: dict[str, Any], **facts: Any) -> ReviewOutcome:
    return ReviewOutcome(
        status=200,
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type="application/json",
        uid=request.uid,
        operation=request.operation,
        user=request.user_info.username,
        namespace=request.namespace,
        name=request.name,
        dry_run=request.dry_run,
        **facts,
    )


def _malformed(body: bytes, error: ValidationError) -> ReviewOutcome:
    """The 400 for a body the model refused, saying the most useful thing first."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return bad_request(f"request body is not JSON: {first['ctx'].get('error', first['msg'])}")
    document = json.loads(body)  # valid JSON, or pydantic would have said json_invalid
    if not isinstance(document, dict):
        return bad_request("request body must be a JSON object (an AdmissionReview)")
    if document.get("apiVersion") != ADMISSION_API_VERSION:
        return _unsupported_version(document.get("apiVersion"))
    return bad_request(f"not an AdmissionReview: {_first_error(error)}")


def _unsupported_version(version: object) -> ReviewOutcome:
    return bad_request(
        f"apiVersion {json.dumps(version)} is not supported: send an "
        f"{ADMISSION_API_VERSION} AdmissionReview (admissionReviewVersions: [v1])"
    )


def parse_review(body: bytes) -> AdmissionReview | ReviewOutcome:
    """The review in `body`, or the 400 outcome saying what is wrong with it."""
    try:
        # One pass from bytes to the model: cheaper than json.loads and validating the result.
        review = AdmissionReview.model_validate_json(body)
    except ValidationError as exc:
        return _malformed(body, exc)
    if review.api_version != ADMISSION_API_VERSION:
        return _unsupported_version(review.api_version)
    request = review.request
    if request.operation in {"CREATE", "UPDATE"} and request.object is None:
        return bad_request(f"request.object is required for {request.operation}")
    if request.operation == "UPDATE" and request.old_object is None:
        return bad_request("request.oldObject is required for UPDATE")
    return review


def review_body(
    endpoint: KindEndpoint, body: bytes, *, allowances: AllowancesLookup = no_tenants
) -> ReviewOutcome:
    """Decide one AdmissionReview for `endpoint`'s kind (see the module docstring)."""
    parsed = parse_review(body)
    if isinstance(parsed, ReviewOutcome):
        return parsed
    request = parsed.request
    if request.operation in {"DELETE", "CONNECT"} or request.sub_resource:
        return _answer(request, build_response(request.uid, allowed=True), allowed=True, code=200)
    gvk = request.kind
    if gvk.group != GROUP or gvk.kind != endpoint.kind or gvk.version != VERSION:
        message = (
            f"{endpoint.path} validates {GROUP}/{VERSION} {endpoint.kind}, not "
            f"{gvk.group or 'core'}/{gvk.version} {gvk.kind}: check the "
            "ValidatingWebhookConfiguration's rules"
        )
        document = build_response(
            request.uid, allowed=False, code=MISROUTED_CODE, reason="BadRequest", message=message
        )
        return _answer(request, document, allowed=False, code=MISROUTED_CODE, message=message)
    assert request.object is not None  # parse_review guarantees it for CREATE and UPDATE
    if endpoint.tenant_scoped:
        verdict = endpoint.validate(
            request.object, old=request.old_object, allowances=allowances(request.namespace)
        )
    else:
        verdict = endpoint.validate(request.object, old=request.old_object)
    warnings = verdict.warning_texts()
    if verdict.allowed:
        document = build_response(request.uid, allowed=True, warnings=warnings)
        return _answer(request, document, allowed=True, code=200, warnings=len(warnings))
    message = verdict.message()
    document = build_response(
        request.uid,
        allowed=False,
        code=DENIED_CODE,
        reason=DENIED_REASON,
        message=message,
        warnings=warnings,
        causes=[
            {"reason": "FieldValueInvalid", "field": e.path, "message": e.message}
            for e in verdict.errors
        ],
        details={"name": request.name, "group": GROUP, "kind": endpoint.kind},
    )
    return _answer(
        request,
        document,
        allowed=False,
        code=DENIED_CODE,
        message=message,
        warnings=len(warnings),
    )
