"""Rules for VirtualMCPServer that its CRD schema cannot state.

Pure: no I/O. The webhook does not know the group's members or their tools, so what the conflict
map names is judged on its own: the model refuses fields of another strategy, an entry given twice
and two entries claiming one name (each naming the field); here an entry that renames a tool to
its own name is a warning. Incoming authentication, resources and the pod template get the same
checks as an MCPServer's.
"""

from __future__ import annotations

from typing import Any

from moorage_api.virtualmcpserver import VirtualMCPServer
from moorage_webhook.validation.mcpservers import check_authz, check_oidc, check_resources
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.podtemplates import check_pod_template_spec
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
        check_pod_template_spec(spec.pod_template_spec, "spec.podTemplateSpec", out)


def validate_virtualmcpserver(new: dict[str, Any], *, old: dict[str, Any] | None = None) -> Verdict:
    """Validate a VirtualMCPServer for admission; `old` is the stored object on an update."""
    return validate_object(new, old=old, model=VirtualMCPServer, rules=virtualmcpserver_rules)
