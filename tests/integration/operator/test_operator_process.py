"""`moorage-operator`, as installed, runs the MCPServer and MCPToolConfig controllers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import PROXY_IMAGE, get_or_none, server_status, simple_server
from testkit.waiting import eventually

from moorage_core.kube import DEPLOYMENTS, MCPTOOLCONFIGS, KubeClient
from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.integration


@pytest.fixture
def operator_process(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "LEADER_ELECTION": "false",
        "WATCH_NAMESPACES": namespace,
        "METRICS_BIND": "127.0.0.1:0",
        "PROXYRUNNER_IMAGE": PROXY_IMAGE,
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "operator.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moorage_operator"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        print(log.read_text(errors="replace")[-4000:])


async def test_the_operator_process_reconciles_mcpservers_and_tool_configs(
    operator_process: subprocess.Popen[bytes],
    kube: KubeClient,
    namespace: str,
    control_plane: ControlPlane,
) -> None:
    def apply(obj: dict[str, Any]) -> None:
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))

    apply(
        {
            "apiVersion": "moorage.dev/v1alpha1",
            "kind": "MCPToolConfig",
            "metadata": {"name": "tools"},
            "spec": {"toolsFilter": ["a"]},
        }
    )
    apply(simple_server("proc", toolConfigRef={"name": "tools"}))

    async def reconciled() -> bool:
        assert operator_process.poll() is None, "the operator exited"
        status = await server_status(kube, name="proc", namespace=namespace)
        assert status.get("toolConfigHash"), status
        assert await get_or_none(kube, DEPLOYMENTS, name="proc", namespace=namespace)
        config = await kube.get(MCPTOOLCONFIGS, name="tools", namespace=namespace)
        assert (config.get("status") or {}).get("configHash") == status["toolConfigHash"]
        return True

    await eventually(reconciled, timeout=60, message="reconciled by the operator process")
    operator_process.send_signal(signal.SIGTERM)
    assert operator_process.wait(timeout=20) == 0
