"""Running the MCPRegistry controller in-process against the test control plane."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from testkit.waiting import eventually

from moorage_api.sources import SourcePolicy
from moorage_core.backoff import Backoff
from moorage_core.errors import NotFound
from moorage_core.kube import CONFIGMAPS, MCPREGISTRIES, KubeClient, ResourceKind
from moorage_dev.cluster import ControlPlane
from moorage_operator.metrics import OperatorMetrics
from moorage_operator.registrysettings import RegistrySettings
from moorage_operator.runtime.controller import Request
from moorage_operator.runtime.manager import Manager, ManagerOptions
from moorage_operator.settings import OperatorSettings
from moorage_operator.wiring.mcpregistries import (
    MCPREGISTRY_CONTROLLER,
    register_mcpregistry_controller,
)

API_IMAGE = "moorage/registry-api:test"
SYNC_INTERVAL = 2.0
"""The test-only interval override (the CRD's floor is 1m)."""


@dataclass
class RunningOperator:
    manager: Manager
    metrics: OperatorMetrics

    def reconciles(self) -> float:
        """Reconciles of the mcpregistry controller so far."""
        return sum(
            sample.value
            for family in self.metrics.registry.collect()
            for sample in family.samples
            if sample.name == "moorage_controller_reconcile_total"
            and sample.labels.get("controller") == MCPREGISTRY_CONTROLLER
        )

    async def reconcile_now(self, *, namespace: str, name: str) -> None:
        """Enqueue a registry (as a resync would) and wait until that reconcile finished."""
        (controller,) = self.manager.controllers
        target = self.reconciles() + 1
        controller.enqueue(Request(namespace, name))

        def finished() -> bool:
            return self.reconciles() >= target and not controller.queue.processing

        await eventually(finished, message=f"reconcile of {namespace}/{name}")

    def requests(self, verb: str) -> float:
        """API requests of `verb` made so far (moorage_rest_client_requests_total)."""
        return sum(
            sample.value
            for family in self.metrics.registry.collect()
            for sample in family.samples
            if sample.name == "moorage_rest_client_requests_total"
            and sample.labels.get("verb") == verb
        )


@contextlib.asynccontextmanager
async def run_registry_operator(
    control_plane: ControlPlane, *, namespace: str, allow_local_sources: bool = True
) -> AsyncIterator[RunningOperator]:
    """The manager with the MCPRegistry controller, watching `namespace`, until the block ends.

    Local git sources are allowed by default (REGISTRY_ALLOW_LOCAL_SOURCES): the tests' git
    repositories are `file://` paths."""
    metrics = OperatorMetrics(CollectorRegistry())
    kube = await KubeClient.connect(
        kubeconfig=str(control_plane.kubeconfig),
        user_agent="moorage-operator",
        observer=metrics.observe_request,
    )
    settings = OperatorSettings(
        watch_namespaces=(namespace,),
        leader_election=False,
        registry_api_image=API_IMAGE,
        metrics_bind=("127.0.0.1", 0),
        pod_name="moorage-operator-registry-test",
    )
    manager = Manager(
        kube,
        options=ManagerOptions(
            namespaces=(namespace,), metrics_host="127.0.0.1", metrics_port=0, concurrency=2
        ),
        metrics=metrics,
        event_instance=settings.pod_name,
    )
    register_mcpregistry_controller(
        manager,
        settings,
        registry_settings=RegistrySettings(
            api_image=API_IMAGE,
            git_timeout=30.0,
            sync_interval_override=SYNC_INTERVAL,
            backoff=Backoff(base=1.0, cap=5.0),
            source_policy=SourcePolicy(allow_local=allow_local_sources),
        ),
    )
    task = asyncio.create_task(manager.run(), name="registry operator")
    try:
        await eventually(
            lambda: task.done() or manager.has_synced(), timeout=60, message="caches synced"
        )
        if task.done():
            task.result()
        yield RunningOperator(manager=manager, metrics=metrics)
    finally:
        manager.stop()
        try:
            await asyncio.wait_for(task, timeout=30)
        finally:
            await kube.close()


async def get_or_none(
    kube: KubeClient, kind: ResourceKind, *, name: str, namespace: str
) -> dict[str, Any] | None:
    try:
        return await kube.get(kind, name=name, namespace=namespace)
    except NotFound:
        return None


async def registry_status(kube: KubeClient, *, name: str, namespace: str) -> dict[str, Any]:
    obj = await kube.get(MCPREGISTRIES, name=name, namespace=namespace)
    status: dict[str, Any] = obj.get("status") or {}
    return status


async def stored_servers(kube: KubeClient, *, name: str, namespace: str) -> list[str] | None:
    """Names in the storage ConfigMap's registry.json (None: no storage yet)."""
    storage = await get_or_none(
        kube, CONFIGMAPS, name=f"{name}-registry-storage", namespace=namespace
    )
    if storage is None:
        return None
    doc = json.loads(storage["data"]["registry.json"])
    return [str(server["name"]) for server in doc["servers"]]


def mcpregistry(name: str, *, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRegistry",
        "metadata": {"name": name},
        "spec": {"source": source, **spec},
    }
