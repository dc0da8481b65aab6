"""Rules for VirtualMCPServer that its CRD schema cannot state.

Pure: no I/O. Runs on a parsed `moorage_api.VirtualMCPServer` (types, defaults and schema rules
already hold; the conflict map's among them: fields of another strategy, an entry given twice and
two entries claiming one name are refused by the model, each naming the field, as by the CRD) and
reports:

- `incomingAuth` (OIDC, Cedar) and `resources` as for an MCPServer (`proxysettings.py`);
- `podTemplateSpec`: a real PodTemplateSpec for the aggregator's pod (container `proxyrunner` is
  Moorage's), within the pod security rules unless an MCPTenant allows more; the pod runs as
  `<name>-vmcp` and names no Secret itself (the backends' credentials come from their
  MCPExternalAuthConfigs);
- a `manual` entry that renames a tool to its own name resolves nothing (warning);
- `replicas` above 1 needs `sessionStorage.type: redis`, and rate-limit settings, as for an
  MCPServer (`ratelimits.py`);
- on update: a changed port moves what clients use.

The webhook does not know the group's members or their tools: a backend named in the maps that
is not (yet) a member is not an error.
"""

from __future__ import annotations

from typing import Any

from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.naming import vmcp_name
from moorage_api.podsecurity import NO_ALLOWANCES, PodSecuritySubject
from moorage_api.virtualmcpserver import VirtualMCPServer
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


def _check_manual(new: VirtualMCPServer, out: Findings) -> None:
    for index, entry in enumerate(new.spec.conflict_resolution.manual or []):
        if entry.name == entry.tool:
            out.warn(
                f"spec.conflictResolution.manual[{index}].name",
                f"tool {quoted(entry.tool)} of backend {quoted(entry.backend)} keeps its name; "
                "another backend offering it still conflicts",
            )


def virtualmcpserver_rules(
    new: VirtualMCPServer, old: VirtualMCPServer | None, raw: dict[str, Any], out: Findings
) -> None:
    """Every VirtualMCPServer rule of this module, in field order."""
    spec = new.spec
    check_oidc(spec.incoming_auth.oidc_config, out, at="spec.incomingAuth.oidcConfig")
    check_authz(spec.incoming_auth.authz_config, out, at="spec.incomingAuth.authzConfig")
    _check_manual(new, out)
    check_resources(spec.resources, out)
    if spec.pod_template_spec is not None:
        check_pod_template_spec(
            spec.pod_template_spec, "spec.podTemplateSpec", out, main=PROXY_CONTAINER
        )
    check_rate_limits(spec.session_storage, spec.rate_limits, replicas=spec.replicas, out=out)
    if old is not None:
        check_port_change(spec.port, old.spec.port, out)


def pod_security_subject(obj: dict[str, Any]) -> PodSecuritySubject:
    """What the pod security rules judge, from a raw VirtualMCPServer (types unchecked)."""
    metadata = dict_at(obj, "metadata")
    template = dict_at(obj, "spec").get("podTemplateSpec")
    name = str(metadata.get("name") or "")
    return PodSecuritySubject(
        name=name,
        namespace=str(metadata.get("namespace") or ""),
        pod_template=template if isinstance(template, dict) else None,
        own_service_account=vmcp_name(name),
    )


def validate_virtualmcpserver(
    new: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    allowances: PodTemplateAllowances | None = NO_ALLOWANCES,
) -> Verdict:
    """Validate a VirtualMCPServer for admission; `old` is the stored object on an update, and
    `allowances` what MCPTenants allow in its namespace (None while they are not loaded)."""
    verdict = validate_object(new, old=old, model=VirtualMCPServer, rules=virtualmcpserver_rules)
    return with_pod_security(
        verdict, new, old, subject=pod_security_subject(new), allowances=allowances
    )
