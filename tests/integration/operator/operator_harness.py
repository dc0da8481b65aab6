"""Running the operator in-process against the test control plane, and helpers to drive it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_api.constants import RUNCONFIG_KEY
from moorage_api.runconfig import load_runconfig
from moorage_core.errors import NotFound
from moorage_core.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MCPSERVERS,
    ROLEBINDINGS,
    ROLES,
    SERVICEACCOUNTS,
    SERVICES,
    KubeClient,
    ResourceKind,
)
from moorage_dev.cluster import ControlPlane
from moorage_operator.__main__ import USER_AGENT, manager_options
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.runtime.controller import Controller, Request
from moorage_operator.runtime.manager import Manager
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring import register_proxy_controllers
from moorage_proxyrunner.workload.builders import desired_workload, workload_spec_from_runconfig
from moorage_proxyrunner.workload.manager import WorkloadManager

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"
PROXY_IMAGE = "moorage/proxyrunner:test"
WRITE_VERBS = ("create", "update", "apply", "patch", "delete")


def children_of(name: str) -> list[tuple[ResourceKind, str]]:
    """The kinds and names of the children of spec §3 for MCPServer `name`."""
    return [
        (SERVICEACCOUNTS, f"{name}-proxy-runner"),
        (ROLES, f"{name}-proxy-runner"),
        (ROLEBINDINGS, f"{name}-proxy-runner"),
        (SERVICEACCOUNTS, f"{name}-sa"),
        (CONFIGMAPS, f"{name}-runconfig"),
        (DEPLOYMENTS, name),
        (SERVICES, f"mcp-{name}-proxy"),
    ]


def example(name: str) -> dict[str, Any]:
    """One object from deploy/examples."""
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


@dataclass
class RunningOperator:
    """An operator manager running in a task, with its metrics."""

    manager: Manager
    metrics: OperatorMetrics
    controllers: list[Controller]

    def sample(self, metric: str, /, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels`."""
        total = 0.0
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == metric and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def requests(self, verbs: Iterable[str] = WRITE_VERBS) -> dict[str, float]:
        """API requests made so far, by verb (from moorage_rest_client_requests_total)."""
        return {v: self.sample("moorage_rest_client_requests_total", verb=v) for v in verbs}

    def controller(self, name: str) -> Controller:
        return next(c for c in self.controllers if c.name == name)

    def reconciles(self, controller: str) -> float:
        return self.sample("moorage_controller_reconcile_total", controller=controller)

    def is_idle(self) -> bool:
        """No key queued, delayed or being reconciled by any controller."""
        return all(
            len(c.queue) == 0 and not c.queue.processing and c.queue.delayed == 0
            for c in self.controllers
        )

    async def resync(self) -> None:
        """Enqueue every cached primary of every controller (as a periodic resync does), and
        wait until each has been reconciled and the controllers are idle again."""
        targets: dict[str, float] = {}
        for controller in self.controllers:
            keys = controller.primary.cache.keys()
            targets[controller.name] = self.reconciles(controller.name) + len(keys)
            for namespace, name in keys:
                controller.enqueue(Request(namespace, name))

        def done() -> bool:
            return self.is_idle() and all(
                self.reconciles(name) >= target for name, target in targets.items()
            )

        await eventually(done, timeout=60, message="resync finished")


def operator_settings(namespaces: tuple[str, ...]) -> OperatorSettings:
    return OperatorSettings(
        watch_namespaces=namespaces,
        leader_election=False,
        reconcile_concurrency=4,
        proxyrunner_image=PROXY_IMAGE,
        metrics_bind=("127.0.0.1", 0),
        pod_name="moorage-operator-test",
    )


@contextlib.asynccontextmanager
async def run_operator(
    control_plane: ControlPlane, *, namespaces: tuple[str, ...]
) -> AsyncIterator[RunningOperator]:
    """The operator's manager with the controllers of MCPServers, MCPRemoteProxies and what they
    reference, running until the block ends."""
    settings = operator_settings(namespaces)
    metrics = OperatorMetrics(CollectorRegistry())
    kube = await KubeClient.connect(
        kubeconfig=str(control_plane.kubeconfig),
        user_agent=USER_AGENT,
        observer=metrics.observe_request,
    )
    manager = Manager(
        kube, options=manager_options(settings), metrics=metrics, event_instance=settings.pod_name
    )
    controllers = register_proxy_controllers(manager, settings)
    task = asyncio.create_task(manager.run(), name="operator manager")
    try:
        await eventually(
            lambda: task.done() or manager.has_synced(), timeout=60, message="caches synced"
        )
        if task.done():
            task.result()
        yield RunningOperator(manager=manager, metrics=metrics, controllers=controllers)
    finally:
        manager.stop()
        try:
            await asyncio.wait_for(task, timeout=30)
        finally:
            await kube.close()


async def get_or_none(kube: KubeClient, kind: Any, *, name: str, namespace: str) -> Any:
    try:
        return await kube.get(kind, name=name, namespace=namespace)
    except NotFound:
        return None


async def server_status(
    kube: KubeClient, *, name: str, namespace: str, kind: ResourceKind = MCPSERVERS
) -> dict[str, Any]:
    """The status of MCPServer `name` (or of another kind's object)."""
    obj = await kube.get(kind, name=name, namespace=namespace)
    status: dict[str, Any] = obj.get("status") or {}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in status.get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    raise AssertionError(f"no {type_} condition in {status}")


def simple_server(name: str, **spec: Any) -> dict[str, Any]:
    """A stdio MCPServer with nothing but an image (and `spec`)."""
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/mcp-echo:1.0.0", **spec},
    }


def mcp_statefulset(server: dict[str, Any], *, replicas: int = 1) -> dict[str, Any]:
    """The StatefulSet `<name>` as the proxy runner creates it: our labels and selector,
    container `mcp`, owned by the MCPServer. kwok makes its pods Ready."""
    meta = server["metadata"]
    name = meta["name"]
    selector = {"moorage.dev/mcpserver": name, "app.kubernetes.io/component": "mcp-server"}
    labels = {
        "app.kubernetes.io/name": "mcpserver",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "moorage",
        "app.kubernetes.io/part-of": "moorage",
        **selector,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "moorage.dev/v1alpha1",
                    "kind": "MCPServer",
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "serviceName": f"mcp-{name}-headless",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": f"{name}-sa",
                    "containers": [
                        {"name": "mcp", "image": server["spec"]["image"], "stdin": True}
                    ],
                },
            },
        },
    }


async def apply_workload_as_the_proxy_runner(
    kube: KubeClient, *, name: str, namespace: str
) -> None:
    """What the proxy runner does at start-up: read its RunConfig, apply the StatefulSet (and
    Services, NetworkPolicy)."""

    async def runconfig() -> str:
        configmap = await get_or_none(
            kube, CONFIGMAPS, name=f"{name}-runconfig", namespace=namespace
        )
        assert configmap is not None
        return str(configmap["data"][RUNCONFIG_KEY])

    text = await eventually(runconfig, timeout=60, message="RunConfig ConfigMap")
    spec = workload_spec_from_runconfig(load_runconfig(text))
    await WorkloadManager(kube, spec=spec, desired=desired_workload(spec)).apply_all()


async def wait_for_phase(
    kube: KubeClient,
    *,
    name: str,
    namespace: str,
    phase: str,
    timeout: float = 90,
    kind: ResourceKind = MCPSERVERS,
) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        status = await server_status(kube, name=name, namespace=namespace, kind=kind)
        assert status.get("phase") == phase, status.get("message")
        return status

    return await eventually(reached, timeout=timeout, message=f"phase {phase}")
