"""An MCPServer applied to a real apiserver gets exactly the children of spec §3, and loses
them (garbage collection by kube-controller-manager) when it is deleted."""

from __future__ import annotations

from typing import Any

import pytest
from operator_harness import (
    PROXY_IMAGE,
    RunningOperator,
    children_of,
    example,
    get_or_none,
    server_status,
)
from testkit.waiting import eventually

from moorage_core.kube import (
    MCPSERVERS,
    KubeClient,
)

pytestmark = pytest.mark.integration

READ = ["get", "list", "watch"]
APPLY = [*READ, "create", "patch", "delete"]


def expected_rules(name: str, *, stdio: bool) -> list[dict[str, Any]]:
    """The proxy runner's Role: its own objects by name; a stdio server's one pod by name."""

    def rule(group: str, resource: str, verbs: list[str], names: list[str]) -> dict[str, Any]:
        return {
            "apiGroups": [group],
            "resources": [resource],
            "resourceNames": names,
            "verbs": verbs,
        }

    rules = [
        rule("apps", "statefulsets", APPLY, [name]),
        rule("", "services", APPLY, [f"mcp-{name}", f"mcp-{name}-headless"]),
        rule("networking.k8s.io", "networkpolicies", APPLY, [f"{name}-egress"]),
        rule("", "configmaps", READ, [f"{name}-runconfig"]),
    ]
    if stdio:
        return [
            *rules,
            rule("", "pods", READ, [f"{name}-0"]),
            rule("", "pods/attach", ["create", "get"], [f"{name}-0"]),
        ]
    return [*rules, {"apiGroups": [""], "resources": ["pods"], "verbs": READ}]


@pytest.mark.parametrize(
    ("file", "name", "url"),
    [
        ("mcpserver-stdio.yaml", "time", "mcp-time-proxy.{ns}.svc.cluster.local:8080/mcp"),
        (
            "mcpserver-sse.yaml",
            "everything-sse",
            "mcp-everything-sse-proxy.{ns}.svc.cluster.local:8080/sse",
        ),
        (
            "mcpserver-streamable-http.yaml",
            "toolbox",
            "mcp-toolbox-proxy.{ns}.svc.cluster.local:8080/mcp",
        ),
    ],
)
async def test_each_example_gets_exactly_the_children_of_the_spec(
    operator: RunningOperator,
    kube: KubeClient,
    namespace: str,
    file: str,
    name: str,
    url: str,
    kubectl_apply: Any,
) -> None:
    kubectl_apply(example("mcptoolconfig.yaml"))
    kubectl_apply(example(file))
    server = await kube.get(MCPSERVERS, name=name, namespace=namespace)
    uid = server["metadata"]["uid"]

    async def all_children() -> list[dict[str, Any]]:
        found = [
            await get_or_none(kube, kind, name=child, namespace=namespace)
            for kind, child in children_of(name)
        ]
        assert all(found), [
            c for (_, c), f in zip(children_of(name), found, strict=True) if f is None
        ]
        return [f for f in found if f]

    children = await eventually(all_children, timeout=30, message="children created")
    labels = {
        "app.kubernetes.io/name": "mcpserver",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "moorage",
        "app.kubernetes.io/part-of": "moorage",
        "moorage.dev/mcpserver": name,
    }
    for child in children:
        meta = child["metadata"]
        assert {k: meta["labels"][k] for k in labels} == labels, child["kind"]
        owners = meta["ownerReferences"]
        assert len(owners) == 1
        assert owners[0] | {} == {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPServer",
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        managers = {
            m["manager"] for m in meta.get("managedFields") or [] if m["operation"] == "Apply"
        }
        assert managers == {"moorage-operator"}, child["kind"]
    by_kind = {(c["kind"], c["metadata"]["name"]): c for c in children}
    role = by_kind[("Role", f"{name}-proxy-runner")]
    assert role["rules"] == expected_rules(name, stdio=file == "mcpserver-stdio.yaml")
    deployment = by_kind[("Deployment", name)]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["proxyrunner"]
    assert pod["containers"][0]["image"] == PROXY_IMAGE
    assert pod["serviceAccountName"] == f"{name}-proxy-runner"
    service = by_kind[("Service", f"mcp-{name}-proxy")]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["sessionAffinity"] == "ClientIP"

    async def has_status() -> dict[str, Any]:
        status = await server_status(kube, name=name, namespace=namespace)
        assert status.get("phase"), status
        return status

    status = await eventually(has_status, timeout=30, message="status written")
    assert status["url"] == "http://" + url.format(ns=namespace)
    assert status["observedGeneration"] == server["metadata"]["generation"]

    await kube.delete(MCPSERVERS, name=name, namespace=namespace)

    async def all_gone() -> bool:
        left = [
            child
            for kind, child in children_of(name)
            if await get_or_none(kube, kind, name=child, namespace=namespace) is not None
        ]
        assert not left, f"still there: {left}"
        return True

    await eventually(all_gone, timeout=60, message="children garbage-collected")
