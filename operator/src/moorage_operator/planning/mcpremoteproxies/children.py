"""The objects the operator creates for an MCPRemoteProxy, as pure functions of it.

For MCPRemoteProxy `<name>`: ServiceAccount, Role, RoleBinding and Deployment
`<name>-remote-proxy`, ConfigMap `<name>-remote-runconfig` holding the RunConfig, and Service
`mcp-<name>-remote-proxy` (the `remote-` infix keeps them apart from an MCPServer of the same
name). No StatefulSet and no MCP pods: the proxy runner forwards to the remote endpoint. Each
child carries the MCPRemoteProxy's labels, one controller ownerReference to it, and the
`moorage.dev/applied-hash` annotation the reconciler compares before applying. The proxy's pod
takes `spec.podTemplateSpec` with Moorage's own settings merged on top of it.

The proxy runner's Role allows exactly what it does: read its RunConfig (it watches it by name)
and the Redis CA ConfigMap `sessionStorage` names, and patch `status.remoteCheck` of its own
MCPRemoteProxy. With more than one replica a PodDisruptionBudget `<name>-remote-proxy` lets one
proxy pod go at a time.

Pure: no I/O. `plan_mcpremoteproxy` is the reconciler's entry point (children, or the problems
that prevent building them).
"""

from __future__ import annotations

from typing import Any, Final

from moorage_api.constants import (
    COMPONENT_PROXY_RUNNER,
    GROUP,
    LABEL_COMPONENT,
    LABEL_MCPREMOTEPROXY,
    PLURAL_MCPREMOTEPROXY,
)
from moorage_api.mcpremoteproxy import MCPRemoteProxy
from moorage_api.naming import (
    mcpremoteproxy_labels,
    remote_proxy_name,
    remote_proxy_service_name,
    remote_runconfig_configmap_name,
)
from moorage_api.runconfig import RunConfig
from moorage_operator.planning import proxies
from moorage_operator.planning.comparing import stamp_applied_hash
from moorage_operator.planning.externalauth import outgoing_secret_env, remote_secret_env
from moorage_operator.planning.mcpremoteproxies.runconfigs import (
    desired_remote_runconfig,
    proxy_name,
    proxy_namespace,
)
from moorage_operator.planning.mcpservers.children import PlanningSettings
from moorage_operator.planning.mcpservers.podtemplates import pod_template_problems
from moorage_operator.planning.mcpservers.references import (
    References,
    resolve_client_inputs,
    resolved_inputs,
)
from moorage_operator.planning.problems import by_condition
from moorage_operator.planning.proxies import (
    READ,
    ChildOwner,
    OwnerPlan,
    rule,
    session_storage_config_maps,
)

JsonObject = dict[str, Any]

STATUS_PATCH: Final = ("patch",)
"""The proxy runner merge-patches `status.remoteCheck`; it never reads through this rule."""


RemoteProxyPlan = OwnerPlan
"""What a reconcile of one MCPRemoteProxy should converge to."""


def remote_proxy_selector(proxy: str) -> dict[str, str]:
    """Selector of the proxy Deployment's pods (and of its Service)."""
    return {LABEL_MCPREMOTEPROXY: proxy, LABEL_COMPONENT: COMPONENT_PROXY_RUNNER}


def proxy_owner(proxy: MCPRemoteProxy) -> ChildOwner:
    """`proxy` as the owner of its children."""
    name = proxy_name(proxy)
    return ChildOwner(
        api_version=proxy.api_version,
        kind=proxy.kind,
        name=name,
        namespace=proxy_namespace(proxy),
        uid=proxy.metadata.uid or "",
        labels=mcpremoteproxy_labels(name),
        selector=remote_proxy_selector(name),
    )


def desired_remote_proxy_rules(proxy: MCPRemoteProxy) -> list[JsonObject]:
    """Exactly what the remote proxy runner needs, limited to its own objects by name."""
    name = proxy_name(proxy)
    configmaps = [
        remote_runconfig_configmap_name(name),
        *session_storage_config_maps(proxy.spec.session_storage),
    ]
    return [
        rule("", "configmaps", READ, configmaps),
        rule(GROUP, f"{PLURAL_MCPREMOTEPROXY}/status", STATUS_PATCH, [name]),
    ]


def desired_remote_children(
    proxy: MCPRemoteProxy, *, runconfig: RunConfig, image: str
) -> list[JsonObject]:
    """The children of `proxy` for `runconfig`, in apply order."""
    owner = proxy_owner(proxy)
    spec = proxy.spec
    standalone = proxies.StandaloneProxy(
        name=remote_proxy_name(owner.name),
        runconfig_configmap=remote_runconfig_configmap_name(owner.name),
        service=remote_proxy_service_name(owner.name),
        port=spec.port,
        replicas=spec.replicas,
        session_affinity=spec.session_affinity,
        rules=desired_remote_proxy_rules(proxy),
        env=[*remote_secret_env(runconfig.remote), *outgoing_secret_env(runconfig.outgoing_auth)],
        resources=spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
        if spec.resources
        else None,
        pod_template_spec=spec.pod_template_spec,
    )
    return proxies.desired_standalone_proxy_children(
        owner, standalone, runconfig=runconfig, image=image
    )


def plan_mcpremoteproxy(
    proxy: MCPRemoteProxy, *, settings: PlanningSettings, references: References
) -> RemoteProxyPlan:
    """The children of `proxy`, or the problems that prevent building them."""
    problems = pod_template_problems(proxy.spec.pod_template_spec)
    client, client_problems = resolve_client_inputs(proxy.spec, references=references)
    problems.extend(client_problems)
    group_found = proxy.spec.group_ref is None or references.group is not None
    if problems:
        return RemoteProxyPlan(
            problems=tuple(problems),
            condition_problems=by_condition(problems),
            group_found=group_found,
        )
    inputs = resolved_inputs(client)
    runconfig = desired_remote_runconfig(
        proxy, inputs=inputs, cluster_domain=settings.cluster_domain
    )
    children = desired_remote_children(proxy, runconfig=runconfig, image=settings.proxyrunner_image)
    return RemoteProxyPlan(
        children=tuple(stamp_applied_hash(child) for child in children),
        runconfig=runconfig,
        tool_config_hash=inputs.tool_config_hash,
        group_found=group_found,
    )
