"""`spec.podTemplateSpec` of an MCPServer or MCPRemoteProxy: a PodTemplateSpec the apiserver takes?

Pure: no I/O. The CRD keeps `podTemplateSpec` open (`x-kubernetes-preserve-unknown-fields`), so a
typo or a wrong type would only surface when the proxy runner applies the StatefulSet, as a failed
pod in someone else's logs. This module describes the shape of `core/v1` PodTemplateSpec (metadata;
the pod spec with containers, init containers, volumes, tolerations, security contexts, probes and
the rest; `affinity` terms are taken as opaque objects) and the rules the apiserver applies to pod
templates, plus what matters because Moorage merges its own settings on top:

- container `mcp` gets image, args, stdin and env from the MCPServer: an image set here is ignored
  (for an MCPRemoteProxy's proxy pod, container `proxyrunner` gets Moorage's image and args);
- every other container needs its own image;
- a StatefulSet pod template only takes `restartPolicy: Always` and no ephemeral containers;
- the labels Moorage selects its pods by are Moorage's to set.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from moorage_api import podfields
from moorage_api.constants import (
    CONTAINER_MCP,
    CONTAINER_PROXYRUNNER,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_MCPSERVER,
    LABEL_NAME,
    LABEL_PART_OF,
)
from moorage_webhook.validation.names import (
    config_key_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    env_name_problem,
    label_value_problem,
    port_name_problem,
    qualified_name_problem,
)
from moorage_webhook.validation.quantities import QuantityError, parse_quantity
from moorage_webhook.validation.shapes import Rule, shape_of
from moorage_webhook.validation.verdict import Findings, Problem, key_path, quoted

MOORAGE_LABELS: Final = frozenset(
    {
        LABEL_NAME,
        LABEL_INSTANCE,
        LABEL_MANAGED_BY,
        LABEL_PART_OF,
        LABEL_COMPONENT,
        LABEL_MCPSERVER,
    }
)
"""Labels Moorage puts on what it creates; the StatefulSet selects the MCP pods by some of them."""


# -- rules ------------------------------------------------------------------------------------


def _name_rule(problem: Callable[[str], str | None], field_name: str = "name") -> Rule:
    def rule(obj: dict[str, Any], path: str, out: Findings) -> None:
        value = obj.get(field_name)
        if isinstance(value, str) and (why := problem(value)) is not None:
            out.error(f"{path}.{field_name}", why)

    return rule


def _check_labels(obj: dict[str, Any], path: str, out: Findings) -> None:
    labels = obj.get("labels") or {}
    for key, value in labels.items():
        entry = key_path(f"{path}.labels", key)
        if (why := qualified_name_problem(key) or label_value_problem(value)) is not None:
            out.error(entry, why)
        elif key in MOORAGE_LABELS:
            out.warn(entry, "Moorage sets this label on the MCP server's pods; its value wins")
    for key in obj.get("annotations") or {}:
        if (why := qualified_name_problem(key)) is not None:
            out.error(key_path(f"{path}.annotations", key), why)


def _check_template_metadata(obj: dict[str, Any], path: str, out: Findings) -> None:
    for key, value in obj.items():
        if value is not None and key not in podfields.TEMPLATE_METADATA_FIELDS:
            out.error(
                f"{path}.{key}",
                "only 'labels' and 'annotations' may be set in a pod template's metadata (the "
                "StatefulSet controller names and places the pods)",
            )


def _check_env_list(obj: dict[str, Any], path: str, out: Findings) -> None:
    seen: set[str] = set()
    for index, var in enumerate(obj.get("env") or []):
        name = var.get("name")
        if not isinstance(name, str):
            continue
        entry = f"{path}.env[{index}].name"
        if (why := env_name_problem(name)) is not None:
            out.error(entry, why)
        elif name in seen:
            out.warn(entry, f"{quoted(name)} is set more than once; the last value wins")
        seen.add(name)


def _check_env_var(obj: dict[str, Any], path: str, out: Findings) -> None:
    if obj.get("value") and obj.get("valueFrom") is not None:
        out.error(f"{path}.valueFrom", "may not be set when value is not empty")


def _check_ports(obj: dict[str, Any], path: str, out: Findings) -> None:
    names: set[str] = set()
    for index, port in enumerate(obj.get("ports") or []):
        name = port.get("name")
        if not isinstance(name, str) or not name:
            continue
        entry = f"{path}.ports[{index}].name"
        if (why := port_name_problem(name)) is not None:
            out.error(entry, why)
        elif name in names:
            out.error(entry, f"port name {quoted(name)} is used twice in this container")
        names.add(name)


def _check_requests_within_limits(obj: dict[str, Any], path: str, out: Findings) -> None:
    limits = obj.get("limits") or {}
    requests = obj.get("requests") or {}
    for resource, request in requests.items():
        if resource not in limits:
            continue
        try:
            wanted: Decimal = parse_quantity(request)
            limit: Decimal = parse_quantity(limits[resource])
        except QuantityError:
            continue  # reported by the field's own shape
        if wanted > limit:
            out.error(
                key_path(f"{path}.requests", resource),
                f"request {request} must be less than or equal to the limit {limits[resource]}",
            )
    for part in ("limits", "requests"):
        for resource, value in (obj.get(part) or {}).items():
            try:
                negative = parse_quantity(value) < 0
            except QuantityError:
                continue
            if negative:
                out.error(key_path(f"{path}.{part}", resource), "must not be negative")


def _check_security_context(obj: dict[str, Any], path: str, out: Findings) -> None:
    # Privileged, capabilities and the other pod security settings are judged by
    # `moorage_api.podsecurity` (refused unless an MCPTenant allows them); this is only the
    # apiserver's own consistency rule.
    if obj.get("privileged") is True and obj.get("allowPrivilegeEscalation") is False:
        out.error(
            f"{path}.allowPrivilegeEscalation",
            "cannot be false when privileged is true",
        )


def _check_probe(obj: dict[str, Any], path: str, out: Findings) -> None:
    for field_name in ("periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"):
        value = obj.get(field_name)
        if isinstance(value, int) and value < 1:
            out.error(f"{path}.{field_name}", f"must be at least 1, not {value}")


def _check_toleration(obj: dict[str, Any], path: str, out: Findings) -> None:
    operator = obj.get("operator") or "Equal"
    if operator == "Exists" and obj.get("value"):
        out.error(f"{path}.value", "must be empty when operator is Exists")
    if not obj.get("key") and operator != "Exists":
        out.error(f"{path}.operator", "must be Exists when key is empty")
    if obj.get("tolerationSeconds") is not None and obj.get("effect") != "NoExecute":
        out.error(f"{path}.tolerationSeconds", "may only be set when effect is NoExecute")
    key = obj.get("key")
    if key and (why := qualified_name_problem(key)) is not None:
        out.error(f"{path}.key", why)


def _check_volume_mounts(obj: dict[str, Any], path: str, out: Findings) -> None:
    paths: set[str] = set()
    for index, mount in enumerate(obj.get("volumeMounts") or []):
        mount_path = mount.get("mountPath")
        entry = f"{path}.volumeMounts[{index}].mountPath"
        if isinstance(mount_path, str):
            if not mount_path:
                out.error(entry, "must not be empty")
            elif mount_path in paths:
                out.error(entry, f"{quoted(mount_path)} is mounted twice in this container")
            paths.add(mount_path)
        sub_path = mount.get("subPath")
        if isinstance(sub_path, str) and (sub_path.startswith("/") or ".." in sub_path.split("/")):
            out.error(
                f"{path}.volumeMounts[{index}].subPath",
                "must be a relative path without '..'",
            )


@dataclass(frozen=True, slots=True)
class MainContainer:
    """The container Moorage fills in a pod template, and where its settings come from."""

    name: str
    image_from: str
    args_from: str
    workload: str
    """Why `restartPolicy` must be Always: what runs the pod."""


MCP_CONTAINER: Final = MainContainer(
    name=CONTAINER_MCP,
    image_from="spec.image",
    args_from="spec.args",
    workload="the MCP server runs in a StatefulSet",
)
"""An MCPServer's template: the MCP server's pod."""
PROXY_CONTAINER: Final = MainContainer(
    name=CONTAINER_PROXYRUNNER,
    image_from="the operator's proxy runner image",
    args_from="the proxy runner's arguments",
    workload="the proxy runs in a Deployment",
)
"""An MCPRemoteProxy's template: the proxy's pod."""


def _pod_spec_rule(main: MainContainer) -> Rule:
    def rule(obj: dict[str, Any], path: str, out: Findings) -> None:
        _check_pod_spec(obj, path, out, main=main)

    return rule


def _check_pod_spec(obj: dict[str, Any], path: str, out: Findings, *, main: MainContainer) -> None:
    containers = obj.get("containers") or []
    init_containers = obj.get("initContainers") or []
    seen: set[str] = set()
    for group, items in (("containers", containers), ("initContainers", init_containers)):
        for index, container in enumerate(items):
            name = container.get("name")
            entry = f"{path}.{group}[{index}]"
            if isinstance(name, str) and name in seen:
                out.error(f"{entry}.name", f"container name {quoted(name)} is used twice")
            seen.add(name)
            is_main = group == "containers" and name == main.name
            if is_main and container.get("image"):
                out.warn(
                    f"{entry}.image",
                    f"ignored: container {quoted(main.name)} always runs {main.image_from}",
                )
            if is_main and container.get("args") is not None:
                out.warn(
                    f"{entry}.args",
                    f"ignored: container {quoted(main.name)} always gets {main.args_from}",
                )
            if not is_main and not container.get("image"):
                out.error(
                    f"{entry}.image",
                    f"required: only container {quoted(main.name)} takes its image from "
                    f"{main.image_from}",
                )
    volumes: set[str] = set()
    for index, volume in enumerate(obj.get("volumes") or []):
        name = volume.get("name")
        if name in volumes:
            out.error(f"{path}.volumes[{index}].name", f"volume name {quoted(name)} is used twice")
        volumes.add(name)
    for group, items in (("containers", containers), ("initContainers", init_containers)):
        for index, container in enumerate(items):
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                name = mount.get("name")
                if isinstance(name, str) and name not in volumes:
                    out.error(
                        f"{path}.{group}[{index}].volumeMounts[{mount_index}].name",
                        f"no volume named {quoted(name)} in {path}.volumes",
                    )
    restart = obj.get("restartPolicy")
    if restart is not None and restart != "Always":
        out.error(
            f"{path}.restartPolicy",
            f"{quoted(restart)} is not allowed: {main.workload}, which only takes Always",
        )
    if obj.get("ephemeralContainers"):
        out.error(f"{path}.ephemeralContainers", "not allowed in a pod template")
    if obj.get("nodeName"):
        out.warn(f"{path}.nodeName", "bypasses the scheduler; use nodeSelector or affinity")
    for field_name in ("serviceAccountName", "serviceAccount"):
        value = obj.get(field_name)
        if isinstance(value, str) and value and (why := dns1123_subdomain_problem(value)):
            out.error(f"{path}.{field_name}", why)
    for index, secret in enumerate(obj.get("imagePullSecrets") or []):
        name = secret.get("name")
        if isinstance(name, str) and name and (why := dns1123_subdomain_problem(name)):
            out.error(f"{path}.imagePullSecrets[{index}].name", why)
    for key, value in (obj.get("nodeSelector") or {}).items():
        entry = key_path(f"{path}.nodeSelector", key)
        if (why := qualified_name_problem(key) or label_value_problem(value)) is not None:
            out.error(entry, why)


# -- the shape ----------------------------------------------------------------------------------

_CONTAINER_RULES: Final = (
    _name_rule(dns1123_label_problem),
    _check_env_list,
    _check_ports,
    _check_volume_mounts,
)


def _rules(main: MainContainer) -> Mapping[str, tuple[Rule, ...]]:
    """The cross-field rules of each type of `moorage_api.podfields`, by the type's name."""
    return {
        "ObjectMeta": (_check_template_metadata, _check_labels),
        "KeySelector": (_name_rule(config_key_problem, "key"),),
        "EnvVar": (_check_env_var,),
        "ResourceRequirements": (_check_requests_within_limits,),
        "SecurityContext": (_check_security_context,),
        "Probe": (_check_probe,),
        "Container": _CONTAINER_RULES,
        "Volume": (_name_rule(dns1123_label_problem),),
        "Toleration": (_check_toleration,),
        "PodSpec": (_pod_spec_rule(main),),
    }


POD_TEMPLATE_SPECS: Final = {
    main: shape_of(podfields.POD_TEMPLATE_SPEC, rules=_rules(main))
    for main in (MCP_CONTAINER, PROXY_CONTAINER)
}
"""The shape of `core/v1` PodTemplateSpec with the rules above, by the container Moorage fills."""


MEMO_MAX_TEXT: Final = 16 * 1024
"""Templates up to this size (as canonical JSON) have their findings memoised."""


def check_pod_template_spec(
    value: object, path: str, out: Findings, *, main: MainContainer = MCP_CONTAINER
) -> None:
    """Report every problem of a `podTemplateSpec` value at `path` (errors in document order);
    `main` is the container Moorage fills (an MCPServer's `mcp`, a remote proxy's
    `proxyrunner`)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if len(text) > MEMO_MAX_TEXT:
        POD_TEMPLATE_SPECS[main].check(value, path, out)
        return
    errors, warnings = _findings_of(text, path, main)
    for problem in errors:
        out.error(problem.path, problem.message)
    for problem in warnings:
        out.warn(problem.path, problem.message)


@functools.lru_cache(maxsize=256)
def _findings_of(
    text: str, path: str, main: MainContainer
) -> tuple[tuple[Problem, ...], tuple[Problem, ...]]:
    # Memoised by canonical text: the servers of one platform share their pod template (the
    # same tolerations, node selector, security context), and the check is a pure function of it.
    out = Findings(limit=None)
    POD_TEMPLATE_SPECS[main].check(json.loads(text), path, out)
    return tuple(out.errors), tuple(out.warnings)
