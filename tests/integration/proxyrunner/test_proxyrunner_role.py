"""The proxy runner's Role, as the operator builds it, against the real apiserver's RBAC.

Two MCPServers share a namespace. With a TokenRequest token of `time-proxy-runner` (bound to the
Role the operator plans for `time`), the proxy runner's own code applies, watches and heals its
workload and reads its ConfigMaps; the same token is refused every read, write and attach on
`other`'s StatefulSet, pods, Services and ConfigMaps, and every namespace-wide list the Role does
not need. Attach is judged with SubjectAccessReview (the fake node runs no container to attach to).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from testkit.waiting import eventually

from moorage_api.mcpserver import parse_mcpserver
from moorage_api.runconfig import RunConfig
from moorage_core import errors
from moorage_core.kube import (
    CONFIGMAPS,
    MCPSERVERS,
    NETWORKPOLICIES,
    PODS,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    KubeClient,
    ResourceKind,
)
from moorage_core.startup import StartupFailure
from moorage_dev.cluster import ControlPlane
from moorage_operator.planning.mcpservers.children import (
    desired_proxy_service_account,
    desired_role,
    desired_role_binding,
)
from moorage_proxyrunner.startup.cluster import Prepared, check_pod_security_of
from moorage_proxyrunner.workload.builders import desired_workload, workload_spec_from_runconfig
from moorage_proxyrunner.workload.manager import WorkloadManager, fetch_egress

pytestmark = pytest.mark.integration

SAR = ResourceKind(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
PROFILE = {"type": "configMap", "name": "time-egress-profile", "key": "profile.json"}


def mcpserver(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "ghcr.io/example/mcp-time:1.0", **spec},
    }


def configmap(name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {}}


async def grant_proxy_runner(kube: KubeClient, stored: dict[str, Any]) -> None:
    """The ServiceAccount, Role and RoleBinding the operator plans for `stored`."""
    server = parse_mcpserver(stored)
    namespace = stored["metadata"]["namespace"]
    for kind, body in (
        (SERVICEACCOUNTS, desired_proxy_service_account(server)),
        (ROLES, desired_role(server)),
        (ROLEBINDINGS, desired_role_binding(server)),
    ):
        await kube.create(kind, body, namespace=namespace)


async def token_of(kube: KubeClient, *, namespace: str, account: str) -> str:
    answer = await kube.request(
        "POST",
        SERVICEACCOUNTS.path(namespace=namespace, name=account, subresource="token"),
        verb="create",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    return str(answer["status"]["token"])


@pytest_asyncio.fixture
async def servers(kube: KubeClient, namespace: str, crds: list[str]) -> dict[str, Any]:
    """MCPServers `time` (stdio, configMap profile) and `other` (stdio) with their RBAC."""
    stored = {
        "time": await kube.create(
            MCPSERVERS, mcpserver("time", namespace, permissionProfile=PROFILE), namespace=namespace
        ),
        "other": await kube.create(MCPSERVERS, mcpserver("other", namespace), namespace=namespace),
    }
    for server in stored.values():
        await grant_proxy_runner(kube, server)
    await kube.create(CONFIGMAPS, configmap("time-runconfig"), namespace=namespace)
    await kube.create(CONFIGMAPS, configmap("other-runconfig"), namespace=namespace)
    await kube.create(
        CONFIGMAPS,
        configmap("time-egress-profile", {"profile.json": '{"network": {"outbound": {}}}'}),
        namespace=namespace,
    )
    return stored


@pytest_asyncio.fixture
async def as_time_proxy(
    kube: KubeClient, namespace: str, servers: dict[str, Any], control_plane: ControlPlane
) -> AsyncIterator[KubeClient]:
    token = await token_of(kube, namespace=namespace, account="time-proxy-runner")
    client = KubeClient.for_token(
        host=control_plane.server, token=token, ca_file=str(control_plane.ca_file)
    )
    try:
        yield client
    finally:
        await client.close()


def runconfig_of(stored: dict[str, Any]) -> RunConfig:
    meta = stored["metadata"]
    return RunConfig.model_validate(
        {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "owner": {
                "apiVersion": stored["apiVersion"],
                "kind": stored["kind"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "image": "ghcr.io/example/mcp-time:1.0",
            "permission_profile": PROFILE,
        }
    )


async def test_the_proxy_runner_does_all_it_needs_for_its_own_server(
    as_time_proxy: KubeClient, kube: KubeClient, namespace: str, servers: dict[str, Any]
) -> None:
    spec = workload_spec_from_runconfig(runconfig_of(servers["time"]))
    # Its permission profile ConfigMap by name; the StatefulSet and the NetworkPolicy created by
    # server-side apply (a PATCH: the Role has no `create`).
    egress = await fetch_egress(as_time_proxy, spec)
    desired = desired_workload(spec, egress=egress)
    assert desired.network_policy is not None
    manager = WorkloadManager(as_time_proxy, spec=spec, desired=desired)
    await manager.apply_all()
    assert await kube.get(STATEFULSETS, name="time", namespace=namespace)
    assert await kube.get(NETWORKPOLICIES, name="time-egress", namespace=namespace)
    # Every watch (by name, and the stdio pod by name) lists and watches, and healing re-applies
    # a deleted StatefulSet.
    task = asyncio.create_task(manager.run())
    try:
        await eventually(
            lambda: manager.pods.synced and manager.statefulsets.synced,
            timeout=30,
            message="the proxy runner's watches listed",
        )
        await kube.delete(STATEFULSETS, name="time", namespace=namespace)

        async def restored() -> bool:
            with contextlib.suppress(errors.NotFound):
                live = await kube.get(STATEFULSETS, name="time", namespace=namespace)
                return live["metadata"].get("deletionTimestamp") is None
            return False

        await eventually(restored, timeout=30, message="StatefulSet re-applied by the healer")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Its RunConfig is read and watched by name.
    await as_time_proxy.get(CONFIGMAPS, name="time-runconfig", namespace=namespace)
    listed = await as_time_proxy.list(
        CONFIGMAPS, namespace=namespace, field_selector="metadata.name=time-runconfig"
    )
    assert [c["metadata"]["name"] for c in listed.items] == ["time-runconfig"]
    # Deleting what it no longer wants.
    await as_time_proxy.delete(NETWORKPOLICIES, name="time-egress", namespace=namespace)


async def access_review(kube: KubeClient, *, user: str, **attributes: str) -> bool:
    review = await kube.create(
        SAR,
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts"],
                "resourceAttributes": attributes,
            },
        },
    )
    return bool(review["status"].get("allowed"))


async def test_attach_is_allowed_to_its_own_pod_only(
    kube: KubeClient, namespace: str, servers: dict[str, Any]
) -> None:
    user = f"system:serviceaccount:{namespace}:time-proxy-runner"

    async def may(verb: str, resource: str, name: str, subresource: str = "") -> bool:
        return await access_review(
            kube,
            user=user,
            namespace=namespace,
            verb=verb,
            resource=resource,
            subresource=subresource,
            name=name,
        )

    assert await may("create", "pods", "time-0", "attach")
    assert await may("get", "pods", "time-0", "attach")
    assert not await may("create", "pods", "other-0", "attach")
    assert not await may("get", "pods", "other-0", "log")
    assert not await may("get", "pods", "time-0", "log")
    assert not await may("create", "pods", "time-0", "exec")


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (STATEFULSETS, "other"),
        (PODS, "other-0"),
        (SERVICES, "mcp-other-headless"),
        (SERVICES, "mcp-other-proxy"),
        (NETWORKPOLICIES, "other-egress"),
        (CONFIGMAPS, "other-runconfig"),
    ],
    ids=lambda v: v.plural if isinstance(v, ResourceKind) else v,
)
async def test_another_servers_objects_are_refused(
    as_time_proxy: KubeClient, namespace: str, kind: ResourceKind, name: str
) -> None:
    with pytest.raises(errors.Forbidden):
        await as_time_proxy.get(kind, name=name, namespace=namespace)
    with pytest.raises(errors.Forbidden):
        await as_time_proxy.list(kind, namespace=namespace, field_selector=f"metadata.name={name}")
    body = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": name}}
    with pytest.raises(errors.Forbidden):
        await as_time_proxy.apply(
            kind, body, field_manager="moorage-proxyrunner", namespace=namespace
        )
    with pytest.raises(errors.Forbidden):
        await as_time_proxy.delete(kind, name=name, namespace=namespace)


@pytest.mark.parametrize(
    "kind",
    [STATEFULSETS, SERVICES, NETWORKPOLICIES, CONFIGMAPS, PODS, SERVICEACCOUNTS],
    ids=lambda k: k.plural,
)
async def test_nothing_is_listed_namespace_wide(
    as_time_proxy: KubeClient, namespace: str, kind: ResourceKind
) -> None:
    with pytest.raises(errors.Forbidden):
        await as_time_proxy.list(kind, namespace=namespace)
    with pytest.raises(errors.Forbidden):
        await as_time_proxy.create(
            kind,
            {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": "x"}},
            namespace=namespace,
        )


async def test_without_the_mcptenant_binding_a_pod_needing_an_allowance_names_it(
    as_time_proxy: KubeClient, servers: dict[str, Any]
) -> None:
    # This cluster binds no MCPTenant reader: the Role alone cannot list them.
    runconfig = runconfig_of(servers["time"]).model_copy(
        update={"pod_template_spec": {"spec": {"hostPID": True}}}
    )
    prepared = Prepared(
        runconfig=runconfig, spec=workload_spec_from_runconfig(runconfig), pod_patch=None
    )
    with pytest.raises(StartupFailure) as failure:
        await check_pod_security_of(as_time_proxy, prepared)
    assert "cannot list the MCPTenants" in failure.value.problem
    assert "moorage-proxyrunner-mcptenants" in failure.value.hint


async def test_a_change_of_stdio_era_replaces_the_servers_pod_template(
    as_time_proxy: KubeClient, kube: KubeClient, namespace: str, servers: dict[str, Any]
) -> None:
    # A running stdio process stays in the era it locked to: the next proxy runner's apply must
    # change the pod template, both ways, so that the StatefulSet starts a fresh process.
    base = runconfig_of(servers["time"])
    templates = []
    for era in ("auto", "handshake"):
        spec = workload_spec_from_runconfig(base.model_copy(update={"stdio_era": era}))
        egress = await fetch_egress(as_time_proxy, spec)
        desired = desired_workload(spec, egress=egress)
        await WorkloadManager(as_time_proxy, spec=spec, desired=desired).apply_all()
        live = await kube.get(STATEFULSETS, name="time", namespace=namespace)
        templates.append(live["spec"]["template"]["metadata"].get("annotations") or {})
    assert templates[0].get("moorage.dev/stdio-era") == "auto"
    assert "moorage.dev/stdio-era" not in templates[1]
