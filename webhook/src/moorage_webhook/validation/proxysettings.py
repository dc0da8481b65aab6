"""Rules shared by the kinds that run a proxy (MCPServer, MCPRemoteProxy) for what their schema
cannot state: how the proxy authenticates and authorises clients, its compute resources, and the
pod security refusals of the pod a user's template describes.

Pure: no I/O. Each function takes the parsed part of the spec and reports at its `spec.` path.
"""

from __future__ import annotations

import re
from typing import Any, Final

from moorage_api.base import ResourceRequirements
from moorage_api.mcpserver import AuthzConfig, OIDCConfig
from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.podsecurity import NO_ALLOWANCES, PodSecuritySubject, check_pod_security
from moorage_webhook.validation.cedarpolicies import check_entities_json, check_policy_text
from moorage_webhook.validation.locations import https_url_problem
from moorage_webhook.validation.names import (
    dns1123_label_problem,
    dns1123_subdomain_problem,
    qualified_name_problem,
)
from moorage_webhook.validation.objects import is_being_deleted, spec_unchanged
from moorage_webhook.validation.quantities import QuantityError, parse_quantity
from moorage_webhook.validation.verdict import Findings, Problem, Verdict, key_path, quoted

STANDARD_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage"})
NOT_SYNCED_NOTE: Final = (
    " (this webhook replica has not loaded the MCPTenants yet, so no allowance applies: "
    "retry in a moment)"
)
_SCOPE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
"""An OAuth scope token (RFC 6749 §3.3): printable ASCII without space, '"' and '\\'."""


def scope_problem(scope: str) -> str | None:
    """Why `scope` is not an OAuth scope token, or None when it is."""
    if _SCOPE.fullmatch(scope) is None:
        return (
            f"{quoted(scope)} is not an OAuth scope (printable ASCII without spaces, '\"' or '\\')"
        )
    return None


def resource_name_problem(name: str) -> str | None:
    if name in STANDARD_RESOURCES or name.startswith("hugepages-"):
        return None
    if "/" in name:
        return qualified_name_problem(name)
    return (
        f"{quoted(name)} is not a resource name: use cpu, memory, ephemeral-storage, hugepages-<size> "
        "or a domain-qualified extended resource"
    )


def check_resources(resources: ResourceRequirements | None, out: Findings) -> None:
    """`spec.resources`: resource names, quantities, requests within limits."""
    if resources is None:
        return
    limits = resources.limits
    for part, values in (("limits", limits), ("requests", resources.requests)):
        for name, value in values.items():
            path = key_path(f"spec.resources.{part}", name)
            if (why := resource_name_problem(name)) is not None:
                out.error(path, why)
                continue
            try:
                amount = parse_quantity(value)
            except QuantityError as exc:
                out.error(path, str(exc))
                continue
            if amount < 0:
                out.error(path, "must not be negative")
            elif part == "requests" and name in limits:
                try:
                    limit = parse_quantity(limits[name])
                except QuantityError:
                    continue
                if amount > limit:
                    out.error(
                        path,
                        f"request {value} must be less than or equal to the limit {limits[name]}",
                    )


def check_oidc(oidc: OIDCConfig | None, out: Findings, *, at: str = "spec.oidcConfig") -> None:
    """The OIDC config at `at`: issuer and JWKS URLs, scopes, service-account references."""
    if oidc is None:
        return
    if oidc.inline is not None:
        base = f"{at}.inline"
        issuer = oidc.inline.issuer
        if (why := https_url_problem(issuer, what="OIDC issuer")) is not None:
            out.error(f"{base}.issuer", why)
        elif "?" in issuer:
            out.error(f"{base}.issuer", "an OIDC issuer URL must not have a query")
        jwks = oidc.inline.jwks_url
        if jwks is not None and (why := https_url_problem(jwks, what="JWKS URL")) is not None:
            out.error(f"{base}.jwksUrl", why)
        seen: set[str] = set()
        for index, scope in enumerate(oidc.inline.required_scopes):
            path = f"{base}.requiredScopes[{index}]"
            if (why := scope_problem(scope)) is not None:
                out.error(path, why)
            elif scope in seen:
                out.warn(path, f"scope {quoted(scope)} is listed twice")
            seen.add(scope)
    if oidc.kubernetes is not None:
        base = f"{at}.kubernetes"
        sa_issuer = oidc.kubernetes.issuer
        if sa_issuer is not None and (why := https_url_problem(sa_issuer, what="issuer")):
            out.error(f"{base}.issuer", why)
        accounts: set[str] = set()
        for index, ref in enumerate(oidc.kubernetes.allowed_service_accounts):
            path = f"{base}.allowedServiceAccounts[{index}]"
            namespace, _, name = ref.partition("/")
            ref_problem = dns1123_label_problem(namespace) or dns1123_subdomain_problem(name)
            if ref_problem is not None:
                out.error(path, f"{quoted(ref)} must be namespace/name: {ref_problem}")
            elif ref in accounts:
                out.warn(path, f"{quoted(ref)} is listed twice")
            accounts.add(ref)


def check_authz(authz: AuthzConfig | None, out: Findings, *, at: str = "spec.authzConfig") -> None:
    """The Cedar config at `at`: policies and entities parse."""
    if authz is None or authz.inline is None:
        return
    base = f"{at}.inline"
    for index, text in enumerate(authz.inline.policies):
        check = check_policy_text(text)
        if check.error is not None:
            out.error(f"{base}.policies[{index}]", check.error)
        for warning in check.warnings:
            out.warn(f"{base}.policies[{index}]", warning)
    if (why := check_entities_json(authz.inline.entities_json)) is not None:
        out.error(f"{base}.entitiesJson", why)


def dict_at(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """`obj[key]` when it is an object, else empty (raw admission input: types unchecked)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def with_pod_security(
    verdict: Verdict,
    new: dict[str, Any],
    old: dict[str, Any] | None,
    *,
    subject: PodSecuritySubject,
    allowances: PodTemplateAllowances | None,
) -> Verdict:
    """`verdict` with the pod security refusals of `subject` (the pod `new` describes) added;
    `allowances` None: not known yet (fail closed). Not ratcheted: an allowance that was withdrawn
    binds the next change of the spec, but an update that leaves the spec alone (finalizers,
    metadata) or a deletion is not judged again."""
    if spec_unchanged(new, old) or is_being_deleted(new):
        return verdict
    note = NOT_SYNCED_NOTE if allowances is None else ""
    refusals = check_pod_security(subject, allowances=allowances or NO_ALLOWANCES)
    return verdict.with_errors(Problem(r.path, r.message + note) for r in refusals)


def check_port_change(port: int, old_port: int, out: Findings) -> None:
    """On update: a new `spec.port` moves the endpoint clients use."""
    if port != old_port:
        out.warn(
            "spec.port",
            f"changing from {old_port} to {port} moves the endpoint clients use (status.url)",
        )
