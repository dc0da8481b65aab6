"""The local control plane itself: scheduling, kwok readiness, garbage collection, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testkit.waiting import eventually, eventually_sync

from moorage_core.kube import CONFIGMAPS, DEPLOYMENTS, NODES, PODS, KubeClient
from moorage_dev.cluster import ControlPlane, is_port_open

pytestmark = pytest.mark.integration


async def test_the_fake_node_is_ready(kube: KubeClient) -> None:
    nodes = await kube.list(NODES)
    assert [n["metadata"]["name"] for n in nodes.items] == ["kwok-node-0"]
    conditions = {c["type"]: c["status"] for c in nodes.items[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"


async def test_a_deployment_gets_pods_that_kwok_marks_ready(
    kube: KubeClient, namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }
    await kube.create(DEPLOYMENTS, deployment, namespace=namespace)

    async def two_ready_pods() -> bool:
        pods = await kube.list(PODS, namespace=namespace, label_selector="app=web")
        ready = [
            p
            for p in pods.items
            for c in p.get("status", {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        return len(ready) == 2

    await eventually(two_ready_pods, timeout=60, message="kwok makes the pods Ready")

    async def deployment_available() -> bool:
        got = await kube.get(DEPLOYMENTS, namespace=namespace, name="web")
        return bool(got.get("status", {}).get("readyReplicas") == 2)

    await eventually(deployment_available, timeout=30)


async def test_garbage_collection_removes_owned_objects(kube: KubeClient, namespace: str) -> None:
    owner = await kube.create(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
        namespace=namespace,
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    await kube.create(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "child", "ownerReferences": [ref]},
        },
        namespace=namespace,
    )
    await kube.delete(CONFIGMAPS, namespace=namespace, name="owner")

    async def child_gone() -> bool:
        items = await kube.list(CONFIGMAPS, namespace=namespace)
        return "child" not in {i["metadata"]["name"] for i in items.items}

    await eventually(child_gone, timeout=60, message="the garbage collector deletes the child")


def test_kubectl_reports_the_built_server_version(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("version", "-o", "json")
    version = json.loads(out.stdout)["serverVersion"]["gitVersion"]
    assert version.startswith("v1.")
    assert version != "v0.0.0-master"


def _dev(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOORAGE_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "moorage_dev", "cluster", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_cluster_cli_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _dev(state, "up")
    try:
        assert first.returncode == 0, first.stderr
        last = first.stdout.strip().splitlines()[-1]
        assert last.startswith("KUBECONFIG=")
        kubeconfig = Path(last.removeprefix("KUBECONFIG="))
        assert kubeconfig.is_file()

        second = _dev(state, "up")
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip().splitlines()[-1] == last
        assert "already running" in second.stderr

        status = _dev(state, "status")
        assert status.returncode == 0
        assert "ready" in status.stdout

        plane = ControlPlane.load(state)
        assert plane is not None
        assert plane.ports is not None
        ports = [plane.ports.etcd_client, plane.ports.apiserver, plane.ports.kwok]
        pids = dict(plane.pids)
    finally:
        down = _dev(state, "down")
    assert down.returncode == 0, down.stderr

    def all_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in pids.values())

    eventually_sync(all_gone, timeout=30, message="no stray processes")
    assert not any(is_port_open(p) for p in ports), "a port is still bound"
    assert _dev(state, "status").returncode == 1
