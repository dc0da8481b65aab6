"""Rules for MCPServer that its CRD schema cannot state (spec §5).

Pure: no I/O. Runs on a parsed `moorage_api.MCPServer` (types, defaults and schema rules already
hold, see `objects.py`) and reports:

- `image`: the full `distribution/reference` grammar with the reason it fails; a warning for a
  floating reference (`latest`, or no tag and no digest);
- transport/port consistency: `proxyMode` cannot contradict an HTTP transport, `targetPort` and
  `backendReplicas` mean nothing for stdio (with several proxy replicas each gets its own
  backend pod, so a stdio server with Redis and unset `replicas` cannot follow an autoscaler),
  an `endpointPrefix` only appears in SSE endpoint URLs;
- `replicas` above 1 needs `sessionStorage.type: redis`, and rate-limit settings
  (`ratelimits.py`);
- env: secret env names must not collide with `env` or each other, and must be valid names;
- `resources`: resource names, requests within limits;
- `podTemplateSpec`: a real PodTemplateSpec (`podtemplates.py`), and its service account must not
  contradict `serviceAccount`;
- pod security (`moorage_api.podsecurity`, shared with the proxy runner): privileged and host
  access, other ServiceAccounts and undeclared Secrets are refused unless an MCPTenant covering
  the namespace allows them. These refusals are not ratcheted on update: an allowance that was
  withdrawn must be honoured by the next change of the spec (the proxy runner refuses the
  workload anyway);
- OIDC issuer and JWKS URLs (https, http only for localhost), scopes, service-account references;
- Cedar policies and entities parse (`cedarpolicies.py`);
- `resourceOverrides`: valid keys and values, and a warning for keys Moorage sets itself;
- `allowedHosts`: each a host name (at most 253 characters before its port);
- `stdioEra`: `auto` only for transport stdio (the CRD's CEL rule; the model says the same);
- on update: a changed transport, proxy mode or port moves or breaks what clients use; a changed
  `stdioEra` replaces the MCP server's pod.
"""

from __future__ import annotations

from typing import Any, Final

from moorage_api.constants import GROUP
from moorage_api.mcpserver import (
    MCPServer,
    MCPServerSpec,
    MetadataOverrides,
)
from moorage_api.mcptenant import PodTemplateAllowances
from moorage_api.podsecurity import NO_ALLOWANCES, PodSecuritySubject
from moorage_webhook.validation.imagerefs import ImageReferenceError, check_image_reference
from moorage_webhook.validation.names import (
    allowed_host_problem,
    env_name_problem,
    label_value_problem,
    qualified_name_problem,
)
from moorage_webhook.validation.objects import validate_object
from moorage_webhook.validation.podtemplates import MOORAGE_LABELS, check_pod_template_spec
from moorage_webhook.validation.proxysettings import (
    check_authz,
    check_oidc,
    check_port_change,
    check_resources,
    dict_at,
    with_pod_security,
)
from moorage_webhook.validation.ratelimits import check_rate_limits
from moorage_webhook.validation.verdict import Findings, Verdict, key_path, quoted

DEFAULT_TARGET_PORT: Final = 8080
MOORAGE_ANNOTATION_PREFIX: Final = f"{GROUP}/"


def image_message(value: str) -> str | None:
    """The message for an invalid `spec.image`, naming the part of the reference that is wrong."""
    result = check_image_reference(value)
    if isinstance(result, ImageReferenceError):
        return f"{quoted(value)} is not a valid image reference: {result}"
    return None


def _check_image(spec: MCPServerSpec, out: Findings) -> None:
    result = check_image_reference(spec.image)
    if isinstance(result, ImageReferenceError):
        out.error("spec.image", f"{quoted(spec.image)} is not a valid image reference: {result}")
        return
    if result.digest is None and result.tag == "latest":
        out.warn(
            "spec.image",
            "tag 'latest' moves: pin a version tag or a digest so every pod runs the same code",
        )
    elif result.digest is None and result.tag is None:
        out.warn(
            "spec.image",
            "no tag means 'latest', which moves: pin a version tag or a digest",
        )


def _check_transport(spec: MCPServerSpec, out: Findings) -> None:
    if spec.transport == "streamable-http" and spec.proxy_mode == "sse":
        out.error(
            "spec.proxyMode",
            "must be streamable-http (or unset) for transport streamable-http: the proxy "
            "serves an HTTP server's own transport",
        )
    if spec.transport == "stdio":
        if spec.target_port != DEFAULT_TARGET_PORT:
            out.warn(
                "spec.targetPort",
                "ignored for transport stdio: the proxy talks to the server over stdin/stdout",
            )
        if spec.backend_replicas is not None:
            out.warn(
                "spec.backendReplicas",
                "ignored for transport stdio: one pod runs the server's process",
            )
        if spec.replicas is None and spec.session_storage.type == "redis":
            out.warn(
                "spec.replicas",
                "unset (an autoscaler decides): a stdio server runs one backend pod per proxy "
                "replica only for a set replicas; proxy replicas an autoscaler adds wait for a "
                "backend pod that never comes",
            )
    if spec.endpoint_prefix and spec.effective_proxy_mode != "sse":
        out.warn(
            "spec.endpointPrefix",
            "only used in SSE endpoint URLs; clients of this server use streamable HTTP",
        )


def _check_env(spec: MCPServerSpec, out: Findings) -> None:
    env_names = {var.name: index for index, var in enumerate(spec.env)}
    secret_names: dict[str, int] = {}
    for index, secret in enumerate(spec.secrets):
        field = "targetEnvName" if secret.target_env_name is not None else "key"
        path = f"spec.secrets[{index}].{field}"
        name = secret.env_name
        if secret.target_env_name is None and (why := env_name_problem(name)) is not None:
            out.error(path, f"{why}; set targetEnvName to name the variable")
            continue
        if name in env_names:
            out.error(
                path,
                f"environment variable {quoted(name)} is also set by spec.env[{env_names[name]}]",
            )
        elif name in secret_names:
            out.error(
                path,
                f"environment variable {quoted(name)} is also set by spec.secrets[{secret_names[name]}]",
            )
        secret_names.setdefault(name, index)


def _check_pod_template(spec: MCPServerSpec, out: Findings) -> None:
    template = spec.pod_template_spec
    if template is None:
        return
    check_pod_template_spec(template, "spec.podTemplateSpec", out)
    pod_spec = template.get("spec")
    if spec.service_account is None or not isinstance(pod_spec, dict):
        return
    for field in ("serviceAccountName", "serviceAccount"):
        value = pod_spec.get(field)
        if isinstance(value, str) and value and value != spec.service_account:
            out.error(
                f"spec.podTemplateSpec.spec.{field}",
                f"{quoted(value)} contradicts spec.serviceAccount {quoted(spec.service_account)}; set one",
            )


def _check_metadata(
    labels: dict[str, str], annotations: dict[str, str], path: str, out: Findings
) -> None:
    for key, value in labels.items():
        entry = key_path(f"{path}.labels", key)
        if (why := qualified_name_problem(key) or label_value_problem(value)) is not None:
            out.error(entry, why)
        elif key in MOORAGE_LABELS:
            out.warn(entry, "Moorage sets this label itself; its value wins")
    for key in annotations:
        entry = key_path(f"{path}.annotations", key)
        if (why := qualified_name_problem(key)) is not None:
            out.error(entry, why)
        elif key.startswith(MOORAGE_ANNOTATION_PREFIX):
            out.warn(
                entry, f"{MOORAGE_ANNOTATION_PREFIX}* annotations are Moorage's; its value wins"
            )


def _check_overrides(spec: MCPServerSpec, out: Findings) -> None:
    overrides = spec.resource_overrides
    if overrides is None:
        return
    base = "spec.resourceOverrides"
    deployment = overrides.proxy_deployment
    if deployment is not None:
        _check_metadata(deployment.labels, deployment.annotations, f"{base}.proxyDeployment", out)
        pod: MetadataOverrides | None = deployment.pod_template_metadata_overrides
        if pod is not None:
            _check_metadata(
                pod.labels,
                pod.annotations,
                f"{base}.proxyDeployment.podTemplateMetadataOverrides",
                out,
            )
    if overrides.proxy_service is not None:
        _check_metadata(
            overrides.proxy_service.labels,
            overrides.proxy_service.annotations,
            f"{base}.proxyService",
            out,
        )


def _check_update(spec: MCPServerSpec, old: MCPServerSpec, out: Findings) -> None:
    if spec.transport != old.transport:
        out.warn(
            "spec.transport",
            f"changing from {old.transport} to {spec.transport} replaces the MCP server's pods "
            "and ends every client session",
        )
    elif spec.effective_proxy_mode != old.effective_proxy_mode:
        out.warn(
            "spec.proxyMode",
            f"changing from {old.effective_proxy_mode} to {spec.effective_proxy_mode} moves "
            "the endpoint clients use (status.url)",
        )
    if spec.transport == old.transport == "stdio" and spec.stdio_era != old.stdio_era:
        # A process keeps the era of its first message, so the proxy runner marks the pod
        # template and the StatefulSet replaces the pod.
        out.warn(
            "spec.stdioEra",
            f"changing from {old.stdio_era} to {spec.stdio_era} replaces the MCP server's pod "
            "and ends every client session",
        )
    check_port_change(spec.port, old.port, out)


def _check_allowed_hosts(spec: MCPServerSpec, out: Findings) -> None:
    # The schema's pattern holds the syntax; what it cannot count (the name's length before a
    # port) is checked here and by the CRD's CEL rule.
    for index, host in enumerate(spec.allowed_hosts):
        if (why := allowed_host_problem(host)) is not None:
            out.error(f"spec.allowedHosts[{index}]", why)


def mcpserver_rules(
    new: MCPServer, old: MCPServer | None, raw: dict[str, Any], out: Findings
) -> None:
    """Every MCPServer rule of this module, in field order."""
    spec = new.spec
    _check_image(spec, out)
    _check_transport(spec, out)
    _check_env(spec, out)
    check_resources(spec.resources, out)
    _check_pod_template(spec, out)
    check_oidc(spec.oidc_config, out)
    check_authz(spec.authz_config, out)
    _check_overrides(spec, out)
    _check_allowed_hosts(spec, out)
    check_rate_limits(spec.session_storage, spec.rate_limits, replicas=spec.replicas, out=out)
    if old is not None:
        _check_update(spec, old.spec, out)


def pod_security_subject(obj: dict[str, Any]) -> PodSecuritySubject:
    """What the pod security rules judge, from a raw MCPServer (types unchecked: the model's own
    errors are reported elsewhere, and a field of the wrong type refuses nothing here)."""
    metadata = dict_at(obj, "metadata")
    spec = dict_at(obj, "spec")
    template = spec.get("podTemplateSpec")
    account = spec.get("serviceAccount")
    secrets = spec.get("secrets")
    secrets = secrets if isinstance(secrets, list) else []
    return PodSecuritySubject(
        name=str(metadata.get("name") or ""),
        namespace=str(metadata.get("namespace") or ""),
        pod_template=template if isinstance(template, dict) else None,
        service_account=account if isinstance(account, str) else None,
        secrets=frozenset(
            s["name"] for s in secrets if isinstance(s, dict) and isinstance(s.get("name"), str)
        ),
    )


def validate_mcpserver(
    new: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    allowances: PodTemplateAllowances | None = NO_ALLOWANCES,
) -> Verdict:
    """Validate an MCPServer for admission; `old` is the stored object on an update, and
    `allowances` what MCPTenants allow in its namespace (None while they are not loaded)."""
    verdict = validate_object(
        new,
        old=old,
        model=MCPServer,
        rules=mcpserver_rules,
        refiners={("spec", "image"): image_message},
    )
    return with_pod_security(
        verdict, new, old, subject=pod_security_subject(new), allowances=allowances
    )
