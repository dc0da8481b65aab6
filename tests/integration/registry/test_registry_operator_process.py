"""The `moorage-operator` process (as deployed: settings from the environment, controllers from
its registration point) syncs an MCPRegistry against the real control plane."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from registry_harness import mcpregistry, registry_status, stored_servers
from testkit.registrydocs import toolhive
from testkit.waiting import eventually

from moorage_core.kube import CONFIGMAPS, MCPREGISTRIES, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("crds")
async def test_the_operator_process_syncs_a_registry(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "catalogue"},
            "data": {"registry.json": toolhive("time")},
        },
        namespace=namespace,
    )
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "moorage_operator",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={
                **os.environ,
                "KUBECONFIG": str(control_plane.kubeconfig),
                "LEADER_ELECTION": "false",
                "WATCH_NAMESPACES": namespace,
                "METRICS_BIND": "127.0.0.1:0",
                "LOG_FORMAT": "json",
                "REGISTRY_API_IMAGE": "moorage/registry-api:test",
            },
        )
    try:
        await kube.create(
            MCPREGISTRIES,
            mcpregistry("reg", source={"type": "configMap", "configMap": {"name": "catalogue"}}),
            namespace=namespace,
        )

        async def ready() -> bool:
            assert proc.returncode is None, log.read_text()
            status = await registry_status(kube, name="reg", namespace=namespace)
            return status.get("phase") == "Ready" and await stored_servers(
                kube, name="reg", namespace=namespace
            ) == ["time"]

        await eventually(ready, timeout=60, message="the operator process synced the registry")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert code == 0, log.read_text()
