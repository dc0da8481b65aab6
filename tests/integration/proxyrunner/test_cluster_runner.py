"""The proxy runner's cluster start-up against the real control plane.

It creates the StatefulSet (and for HTTP the headless Service, for restrictive profiles the egress
NetworkPolicy) from a RunConfig, re-creates and repairs them, exits non-zero when the pods never
become ready, and serves a stdio MCP server in a pod to a real MCP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from kwok_exec_node import EXEC_POD_PLACEMENT, ExecNode
from mcp import Client
from runconfig_files import write_runconfig
from testkit.waiting import eventually

from moorage_core.errors import NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    NETWORKPOLICIES,
    PODS,
    SERVICES,
    STATEFULSETS,
    KubeClient,
)
from moorage_dev.cluster import ControlPlane
from moorage_proxyrunner.backends.stdio.attach import open_exec_channel
from moorage_proxyrunner.startup.cluster import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    ClusterOptions,
    run_cluster,
)

pytestmark = pytest.mark.integration

MCP_SERVER_TIME = str(Path(sys.executable).with_name("mcp-server-time"))
SELECTOR = {"moorage.dev/mcpserver": "time", "app.kubernetes.io/component": "mcp-server"}


@dataclass
class RunningProxy:
    task: asyncio.Task[int]
    stop: asyncio.Event
    listening: asyncio.Future[int] = field(default_factory=asyncio.Future)

    async def port(self) -> int:
        """The proxy's port once it serves (it serves only after the workload is ready)."""
        done, _ = await asyncio.wait(
            {self.listening, self.task}, timeout=120, return_when=asyncio.FIRST_COMPLETED
        )
        assert self.listening in done, f"the proxy ended first: {self.task}"
        return self.listening.result()


@contextlib.asynccontextmanager
async def running_proxy(options: ClusterOptions, **kwargs: Any) -> AsyncIterator[RunningProxy]:
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_listening(port: int) -> None:
        listening.set_result(port)

    task = asyncio.create_task(
        run_cluster(options, stop=stop, on_listening=on_listening, **kwargs), name="proxyrunner"
    )
    proxy = RunningProxy(task=task, stop=stop, listening=listening)
    try:
        yield proxy
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=60)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


Options = Callable[..., ClusterOptions]


@pytest.fixture
def options(control_plane: ControlPlane) -> Options:
    """`options(config, **changes)`: loopback, any free port, the test cluster's credentials."""

    def make(config: Path, **changes: Any) -> ClusterOptions:
        defaults: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "kubeconfig": str(control_plane.kubeconfig),
            "readiness_timeout": 90,
            "drain_timeout": 2,
        }
        return ClusterOptions(config=config, **{**defaults, **changes})

    return make


async def get_or_none(kube: KubeClient, kind: Any, *, name: str, namespace: str) -> Any:
    try:
        return await kube.get(kind, name=name, namespace=namespace)
    except NotFound:
        return None


def mcp_container(sts: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "mcp")


async def test_creates_heals_and_restores_the_stdio_statefulset(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(
        tmp_path,
        namespace=namespace,
        owner=owner,
        args=["--local-timezone", "UTC"],
        env=[{"name": "A", "value": "1"}],
        secret_env=[{"name": "TOKEN", "secret_key_ref": {"name": "creds", "key": "token"}}],
        resources={"limits": {"memory": "128Mi"}},
        pod_template_spec={
            "metadata": {"annotations": {"team": "tools"}},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {"name": "mcp", "image": "overridden:0", "workingDir": "/srv"},
                    {"name": "sidecar", "image": "example/sidecar:1"},
                ],
            },
        },
    )
    async with running_proxy(options(config)) as proxy:
        await proxy.port()
        sts = await kube.get(STATEFULSETS, name="time", namespace=namespace)
        assert sts["metadata"]["labels"]["app.kubernetes.io/component"] == "mcp-server"
        assert sts["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "moorage"
        [ref] = sts["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "MCPServer",
            "time",
            owner["metadata"]["uid"],
            True,
        )
        managers = {
            m["manager"] for m in sts["metadata"]["managedFields"] if m["operation"] == "Apply"
        }
        assert managers == {"moorage-proxyrunner"}
        assert sts["spec"]["replicas"] == 1
        assert sts["spec"]["selector"] == {"matchLabels": SELECTOR}
        template = sts["spec"]["template"]
        assert template["metadata"]["annotations"] == {"team": "tools"}
        assert template["spec"]["terminationGracePeriodSeconds"] == 5
        assert [c["name"] for c in template["spec"]["containers"]] == ["mcp", "sidecar"]
        mcp = mcp_container(sts)
        assert mcp["image"] == "ghcr.io/example/mcp-time:1.0"
        assert mcp["workingDir"] == "/srv"
        assert mcp["args"] == ["--local-timezone", "UTC"]
        assert mcp["stdin"] is True
        # The apiserver omits false booleans: absent means false.
        assert (mcp.get("stdinOnce", False), mcp.get("tty", False)) == (False, False)
        assert mcp["env"] == [
            {"name": "A", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ]
        assert mcp["resources"] == {"limits": {"memory": "128Mi"}}
        # stdio with the default `network` profile: no Service, no NetworkPolicy.
        assert (
            await get_or_none(kube, SERVICES, name="mcp-time-headless", namespace=namespace) is None
        )
        assert (
            await get_or_none(kube, NETWORKPOLICIES, name="time-egress", namespace=namespace)
            is None
        )

        # Deleted → created again.
        await kube.delete(STATEFULSETS, name="time", namespace=namespace)

        async def recreated() -> bool:
            again = await get_or_none(kube, STATEFULSETS, name="time", namespace=namespace)
            return again is not None and again["metadata"]["uid"] != sts["metadata"]["uid"]

        await eventually(recreated, timeout=30, message="StatefulSet re-created")

        # Edited by someone else → put back.
        await kube.patch(
            STATEFULSETS,
            {"spec": {"template": {"spec": {"containers": [{"name": "mcp", "image": "evil:1"}]}}}},
            name="time",
            namespace=namespace,
            content_type="application/strategic-merge-patch+json",
            field_manager="someone-else",
        )

        async def restored() -> bool:
            live = await kube.get(STATEFULSETS, name="time", namespace=namespace)
            return bool(mcp_container(live)["image"] == "ghcr.io/example/mcp-time:1.0")

        await eventually(restored, timeout=30, message="image restored")
        proxy.stop.set()
        assert await proxy.task == EXIT_OK


async def test_http_transport_gets_a_headless_service_and_profile_none_denies_egress(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(
        tmp_path,
        namespace=namespace,
        owner=owner,
        transport="streamable-http",
        proxy_mode="streamable-http",
        target_port=9000,
        backend_replicas=2,
        permission_profile={"type": "builtin", "name": "none"},
    )
    async with running_proxy(options(config)) as proxy:
        await proxy.port()
        sts = await kube.get(STATEFULSETS, name="time", namespace=namespace)
        assert sts["spec"]["replicas"] == 2
        assert sts["spec"]["serviceName"] == "mcp-time-headless"
        assert mcp_container(sts)["ports"] == [
            {"name": "http", "containerPort": 9000, "protocol": "TCP"}
        ]
        assert "stdin" not in mcp_container(sts)
        svc = await kube.get(SERVICES, name="mcp-time-headless", namespace=namespace)
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["selector"] == SELECTOR
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(9000, 9000)]
        assert svc["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        policy = await kube.get(NETWORKPOLICIES, name="time-egress", namespace=namespace)
        assert policy["spec"]["podSelector"] == {"matchLabels": SELECTOR}
        assert policy["spec"]["policyTypes"] == ["Egress"]
        assert policy["spec"].get("egress", []) == []

        await kube.delete(SERVICES, name="mcp-time-headless", namespace=namespace)
        await kube.delete(NETWORKPOLICIES, name="time-egress", namespace=namespace)

        async def both_back() -> bool:
            return (
                await get_or_none(kube, SERVICES, name="mcp-time-headless", namespace=namespace)
                is not None
                and await get_or_none(
                    kube, NETWORKPOLICIES, name="time-egress", namespace=namespace
                )
                is not None
            )

        await eventually(both_back, timeout=30, message="Service and NetworkPolicy re-created")


async def test_a_configmap_profile_becomes_egress_rules(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    profile = {"network": {"outbound": {"allow_port": [443], "allow_cidr": ["10.0.0.0/8"]}}}
    await kube.create(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "egress-profile", "namespace": namespace},
            "data": {"profile.json": json.dumps(profile)},
        },
        namespace=namespace,
    )
    config = write_runconfig(
        tmp_path,
        namespace=namespace,
        owner=owner,
        permission_profile={"type": "configMap", "name": "egress-profile"},
    )
    async with running_proxy(options(config)) as proxy:
        await proxy.port()
        policy = await kube.get(NETWORKPOLICIES, name="time-egress", namespace=namespace)
        assert policy["spec"]["egress"] == [
            {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 443}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        ]


async def test_a_missing_profile_configmap_exits_1_before_applying(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(
        tmp_path,
        namespace=namespace,
        owner=owner,
        permission_profile={"type": "configMap", "name": "absent", "key": "p.json"},
    )
    with structlog.testing.capture_logs() as logs:
        assert await run_cluster(options(config)) == EXIT_FAILED
    [failure] = [e for e in logs if e["event"] == "startup_failed"]
    assert "permission profile ConfigMap 'absent' not found" in failure["error"]
    assert await get_or_none(kube, STATEFULSETS, name="time", namespace=namespace) is None


async def test_exits_non_zero_with_the_reason_when_pods_never_become_ready(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(
        tmp_path,
        namespace=namespace,
        owner=owner,
        pod_template_spec={"spec": {"nodeSelector": {"moorage.dev/no-such-node": "true"}}},
    )
    with structlog.testing.capture_logs() as logs:
        code = await run_cluster(options(config, readiness_timeout=3))
    assert code == EXIT_FAILED
    [failure] = [e for e in logs if e["event"] == "workload_not_ready"]
    assert "was not ready after 3s" in failure["error"]
    assert any(
        p.startswith("pod time-0: not scheduled:") and "node affinity/selector" in p
        for p in failure["problems"]
    ), failure["problems"]
    # What it applied stays for the next attempt (and for the operator to report).
    assert await get_or_none(kube, STATEFULSETS, name="time", namespace=namespace) is not None


async def test_an_invalid_pod_patch_applies_nothing(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(tmp_path, namespace=namespace, owner=owner)
    code = await run_cluster(options(config, pod_patch='{"spec": {"containers": {"name": "mcp"}}}'))
    assert code == EXIT_CONFIG
    assert await get_or_none(kube, STATEFULSETS, name="time", namespace=namespace) is None


async def test_the_pod_patch_is_merged_into_the_pod_template(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(
        tmp_path,
        namespace=namespace,
        owner=owner,
        pod_template_spec={
            "spec": {"priority": 0, "containers": [{"name": "mcp", "workingDir": "/a"}]}
        },
    )
    patch = {
        "metadata": {"labels": {"patched": "yes"}},
        "spec": {"containers": [{"name": "mcp", "workingDir": "/b", "image": "not-this:1"}]},
    }
    async with running_proxy(options(config, pod_patch=json.dumps(patch))) as proxy:
        await proxy.port()
        sts = await kube.get(STATEFULSETS, name="time", namespace=namespace)
        assert sts["spec"]["template"]["metadata"]["labels"]["patched"] == "yes"
        assert mcp_container(sts)["workingDir"] == "/b"
        assert mcp_container(sts)["image"] == "ghcr.io/example/mcp-time:1.0"


def exec_opener(kube: KubeClient, namespace: str) -> Callable[[str], Any]:
    """Stands in for pods/attach, which kwok cannot do with stdin: run the server by exec."""

    async def open_channel(pod: str) -> Any:
        return await open_exec_channel(
            kube, namespace=namespace, pod=pod, command=[MCP_SERVER_TIME]
        )

    return open_channel


async def backend_ready(port: int) -> bool:
    """The proxy's /health: 200 only once the stdio backend is connected (spec §4.1)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False


async def test_serves_a_stdio_server_in_a_pod_to_an_mcp_client_and_follows_pod_replacement(
    kube: KubeClient,
    namespace: str,
    owner: dict[str, Any],
    exec_node: ExecNode,
    tmp_path: Path,
    options: Options,
) -> None:
    config = write_runconfig(
        tmp_path, namespace=namespace, owner=owner, pod_template_spec={"spec": EXEC_POD_PLACEMENT}
    )
    async with running_proxy(options(config), open_channel=exec_opener(kube, namespace)) as proxy:
        port = await proxy.port()
        url = f"http://127.0.0.1:{port}/mcp"
        await eventually(
            lambda: backend_ready(port), timeout=60, message="/health once the backend is attached"
        )
        async with Client(url, mode="legacy") as client:
            tools = await client.list_tools()
            assert "get_current_time" in {t.name for t in tools.tools}
            first = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert not first.is_error

        pod = await kube.get(PODS, name="time-0", namespace=namespace)
        await kube.delete(PODS, name="time-0", namespace=namespace)

        async def replaced_and_served() -> bool:
            live = await get_or_none(kube, PODS, name="time-0", namespace=namespace)
            if live is None or live["metadata"]["uid"] == pod["metadata"]["uid"]:
                return False
            try:
                async with Client(url, mode="legacy") as client:
                    again = await client.call_tool("get_current_time", {"timezone": "UTC"})
            except Exception as exc:  # the bridge is re-connecting: errors are expected a while
                raise AssertionError(f"not served yet: {exc!r}") from exc
            return not again.is_error

        await eventually(
            replaced_and_served, timeout=90, interval=1, message="served by the new pod"
        )
