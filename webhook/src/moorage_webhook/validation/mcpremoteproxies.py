"""Rules for MCPRemoteProxy that its CRD schema cannot state.

Pure: no I/O. Runs on a parsed `moorage_api.MCPRemoteProxy` (types, defaults and schema rules
already hold, among them `remoteUrl` — http or https, no credentials or fragment, no private or
loopback address unless `allowPrivateEndpoint` — and the header names of `headerForward`: valid,
not set by the proxy itself, unique without case) and reports:

- OIDC, Cedar and `resources` as for an MCPServer (`proxysettings.py`);
- `podTemplateSpec`: a real PodTemplateSpec for the proxy's pod (container `proxyrunner` is
  Moorage's), within the pod security rules (`moorage_api.podsecurity`): the operator creates
  that pod for whoever may write an MCPRemoteProxy, so privileged and host access, another
  ServiceAccount and Secrets not named in `headerForward.addHeadersFromSecret` are refused unless
  an MCPTenant covering the namespace allows them;
- `headerForward.addHeaders`: a fixed value is stored in the proxy's RunConfig ConfigMap, so a
  header that looks like a credential gets a warning pointing at `addHeadersFromSecret`;
- `endpointPrefix` only appears in SSE endpoint URLs (warning for streamable-http);
- a remote on plain http is reachable by whoever is on the path (warning);
- `replicas` above 1 needs `sessionStorage.type: redis`, and rate-limit settings, as for an
  MCPServer (`ratelimits.py`);
- on update: a changed transport or port moves what clients use.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from moorage_api.mcpremoteproxy import MCPRemoteProxy, MCPRemoteProxySpec
from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.naming import remote_proxy_name
from moorage_api.podsecurity import NO_ALLOWANCES, PodSecuritySubject
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.podtemplates import PROXY_CONTAINER, check_pod_template_spec
from moorage_webhook.validation.proxysettings import (
    check_authz,
    check_oidc,
    check_port_change,
    check_resources,
    dict_at,
    with_pod_security,
)
from moorage_webhook.validation.ratelimits import check_rate_limits
from moorage_webhook.validation.verdict import Findings, Verdict, quoted

_CREDENTIAL_HEADER: Final = re.compile(r"(key|token|secret|password|auth|cookie)", re.IGNORECASE)
"""Header names whose value is most likely a credential."""


def _check_remote(spec: MCPRemoteProxySpec, out: Findings) -> None:
    if urlsplit(spec.remote_url).scheme == "http":
        out.warn(
            "spec.remoteUrl",
            "plain http: requests, responses and any outgoing credentials travel unencrypted",
        )
    if spec.endpoint_prefix and spec.transport != "sse":
        out.warn(
            "spec.endpointPrefix",
            "only used in SSE endpoint URLs; clients of this proxy use streamable HTTP",
        )


def _check_headers(spec: MCPRemoteProxySpec, out: Findings) -> None:
    if spec.header_forward is None:
        return
    for index, header in enumerate(spec.header_forward.add_headers):
        if _CREDENTIAL_HEADER.search(header.name):
            out.warn(
                f"spec.headerForward.addHeaders[{index}].value",
                f"header {quoted(header.name)} looks like a credential, and a fixed value is "
                "stored in the proxy's RunConfig ConfigMap; use addHeadersFromSecret",
            )


def _check_update(spec: MCPRemoteProxySpec, old: MCPRemoteProxySpec, out: Findings) -> None:
    if spec.transport != old.transport:
        out.warn(
            "spec.transport",
            f"changing from {old.transport} to {spec.transport} moves the endpoint clients use "
            "(status.url) and ends every client session",
        )
    check_port_change(spec.port, old.port, out)


def mcpremoteproxy_rules(
    new: MCPRemoteProxy, old: MCPRemoteProxy | None, raw: dict[str, Any], out: Findings
) -> None:
    """Every MCPRemoteProxy rule of this module, in field order."""
    spec = new.spec
    _check_remote(spec, out)
    check_oidc(spec.oidc_config, out)
    check_authz(spec.authz_config, out)
    check_resources(spec.resources, out)
    if spec.pod_template_spec is not None:
        check_pod_template_spec(
            spec.pod_template_spec, "spec.podTemplateSpec", out, main=PROXY_CONTAINER
        )
    check_rate_limits(spec.session_storage, spec.rate_limits, replicas=spec.replicas, out=out)
    _check_headers(spec, out)
    if old is not None:
        _check_update(spec, old.spec, out)


def pod_security_subject(obj: dict[str, Any]) -> PodSecuritySubject:
    """What the pod security rules judge, from a raw MCPRemoteProxy (types unchecked, as for an
    MCPServer): its proxy pod runs as `<name>-remote-proxy` and may read the Secrets its headers
    name."""
    metadata = dict_at(obj, "metadata")
    spec = dict_at(obj, "spec")
    template = spec.get("podTemplateSpec")
    headers = dict_at(spec, "headerForward").get("addHeadersFromSecret")
    refs = (
        [h.get("valueSecretRef") for h in headers if isinstance(h, dict)]
        if isinstance(headers, list)
        else []
    )
    name = str(metadata.get("name") or "")
    return PodSecuritySubject(
        name=name,
        namespace=str(metadata.get("namespace") or ""),
        pod_template=template if isinstance(template, dict) else None,
        secrets=frozenset(
            ref["name"]
            for ref in refs
            if isinstance(ref, dict) and isinstance(ref.get("name"), str)
        ),
        own_service_account=remote_proxy_name(name),
    )


def validate_mcpremoteproxy(
    new: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    allowances: PodTemplateAllowances | None = NO_ALLOWANCES,
) -> Verdict:
    """Validate an MCPRemoteProxy for admission; `old` is the stored object on an update, and
    `allowances` what MCPTenants allow in its namespace (None while they are not loaded)."""
    verdict = validate_object(new, old=old, model=MCPRemoteProxy, rules=mcpremoteproxy_rules)
    return with_pod_security(
        verdict, new, old, subject=pod_security_subject(new), allowances=allowances
    )
