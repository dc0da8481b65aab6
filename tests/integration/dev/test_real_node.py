"""The real node: real containers from a locally made image, the apiserver, DNS and Services seen
from inside a pod, kubelet's streaming (exec, attach, logs, port-forward), and a teardown that
leaves nothing behind.

The image holds one static Go program (tests/fixtures/realnode/probe.go) built here with
CGO_ENABLED=0 and packed with moorage_dev.ociarchive, so no registry or base image is involved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.waiting import eventually_sync

from moorage_dev.binaries import go_binary
from moorage_dev.cluster import ControlPlane
from moorage_dev.mounts import mounts_under
from moorage_dev.ociarchive import ImageSpec, LayerFile, write_oci_archive
from moorage_dev.processes import pid_alive
from moorage_dev.realnode import RealNode

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

PROBE_SOURCE = Path(__file__).resolve().parents[2] / "fixtures" / "realnode" / "probe.go"


@pytest.fixture(scope="session")
def probe_image(real_node_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The probe program built, packed as an OCI archive and imported into the real node."""
    node = real_node_plane.real_node
    assert node is not None
    work = tmp_path_factory.mktemp("probe")
    (work / "go.mod").write_text("module moorage.dev/probe\n\ngo 1.24\n")
    (work / "main.go").write_text(PROBE_SOURCE.read_text())
    subprocess.run(
        [go_binary(), "build", "-trimpath", "-ldflags", "-s -w", "-o", "probe", "."],
        cwd=work,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=True,
        capture_output=True,
    )
    binary = (work / "probe").read_bytes()
    name = f"moorage.dev/probe:{hashlib.sha256(binary).hexdigest()[:12]}"
    spec = ImageSpec(
        name=name,
        files=[LayerFile("/probe", binary)],
        entrypoint=["/probe"],
        cmd=["serve"],
        user="65534",
    )
    node.import_image(write_oci_archive(spec, work / "probe.oci.tar"))
    return name


def _kubectl(plane: ControlPlane, *args: str, input: str | None = None) -> str:
    out = plane.kubectl(*args, input=input, check=False)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def _apply(plane: ControlPlane, namespace: str, *docs: dict[str, Any]) -> None:
    _kubectl(plane, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


@pytest.fixture
def ns(real_node_plane: ControlPlane) -> Iterator[str]:
    name = f"rn-{secrets.token_hex(3)}"
    _kubectl(real_node_plane, "create", "namespace", name)
    eventually_sync(
        lambda: (
            real_node_plane.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
        ),
        timeout=30,
        message="default ServiceAccount",
    )
    yield name
    real_node_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(name: str, image: str, *args: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "probe",
        "image": image,
        "imagePullPolicy": "Never",
        "args": list(args) or ["serve"],
    }
    if not args or args == ("serve",):
        container["readinessProbe"] = {
            "httpGet": {"path": "/", "port": 8080},
            "periodSeconds": 1,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
    }


def _service(name: str, *, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app": name},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def _ready(plane: ControlPlane, namespace: str, *pods: str) -> None:
    _kubectl(
        plane,
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "--timeout=90s",
        *(f"pod/{p}" for p in pods),
    )


def _exec(plane: ControlPlane, namespace: str, pod: str, *args: str) -> str:
    return _kubectl(plane, "exec", "-n", namespace, pod, "--", "/probe", *args)


@pytest.fixture
def server(real_node_plane: ControlPlane, probe_image: str, ns: str) -> str:
    """A Ready pod `web` serving HTTP on 8080 behind the Service `web`; its namespace."""
    _apply(real_node_plane, ns, _pod("web", probe_image), _service("web"))
    _ready(real_node_plane, ns, "web")
    return ns


def test_the_real_node_is_ready_and_labelled_and_kwok_is_tainted(
    real_node_plane: ControlPlane,
) -> None:
    nodes = json.loads(_kubectl(real_node_plane, "get", "nodes", "-o", "json"))["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    node = real_node_plane.real_node
    assert node is not None
    real = by_name[node.name]
    assert real["metadata"]["labels"]["moorage.dev/node"] == "real"
    assert {a["type"]: a["address"] for a in real["status"]["addresses"]}["InternalIP"] == (
        node.bridge_ip
    )
    conditions = {c["type"]: c["status"] for c in real["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    taints = by_name["kwok-node-0"]["spec"]["taints"]
    assert {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"} in taints


def test_a_pod_from_a_local_image_runs_and_is_ready_on_the_real_node(
    real_node_plane: ControlPlane, server: str
) -> None:
    pod = json.loads(_kubectl(real_node_plane, "get", "pod", "web", "-n", server, "-o", "json"))
    node = real_node_plane.real_node
    assert node is not None
    assert pod["spec"]["nodeName"] == node.name
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"].startswith(node.bridge_ip.rsplit(".", 1)[0] + ".")


@pytest.mark.parametrize("host", ["kubernetes.default.svc", "10.96.0.1"])
def test_a_pod_reaches_the_apiserver_with_its_token(
    real_node_plane: ControlPlane, server: str, host: str
) -> None:
    out = _exec(real_node_plane, server, "web", "get", f"https://{host}/version")
    status, body = out.split(" ", 1)
    assert status == "200", out
    assert json.loads(body)["gitVersion"].startswith("v1.")


def test_pods_resolve_services_and_statefulset_pods_by_name(
    real_node_plane: ControlPlane, probe_image: str, server: str
) -> None:
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": _pod("db", probe_image)["spec"],
            },
        },
    }
    _apply(real_node_plane, server, _service("db", headless=True), statefulset)
    eventually_sync(
        lambda: (
            real_node_plane.kubectl("get", "pod", "db-0", "-n", server, check=False).returncode == 0
        ),
        timeout=30,
    )
    _ready(real_node_plane, server, "db-0")
    cluster_ip = _kubectl(
        real_node_plane, "get", "svc", "web", "-n", server, "-o", "jsonpath={.spec.clusterIP}"
    )
    pod_ip = _kubectl(
        real_node_plane, "get", "pod", "db-0", "-n", server, "-o", "jsonpath={.status.podIP}"
    )

    def resolves(name: str, address: str) -> bool:
        out = real_node_plane.kubectl(
            "exec", "-n", server, "web", "--", "/probe", "lookup", name, check=False
        )
        return out.returncode == 0 and out.stdout.split() == [address]

    eventually_sync(lambda: resolves(f"web.{server}.svc.cluster.local", cluster_ip), timeout=30)
    eventually_sync(lambda: resolves(f"db-0.db.{server}.svc.cluster.local", pod_ip), timeout=30)
    # The search path of the pod's resolv.conf completes a short name ("web" alone would be the
    # pod's own name, which /etc/hosts answers).
    assert resolves(f"web.{server}", cluster_ip)


def test_exec_logs_and_port_forward_go_through_the_kubelet(
    real_node_plane: ControlPlane, server: str
) -> None:
    assert _exec(real_node_plane, server, "web", "say", "hello", "node") == "hello node\n"
    assert "serving on :8080" in _kubectl(real_node_plane, "logs", "-n", server, "web")
    forward = subprocess.Popen(
        [
            str(real_node_plane.binaries["kubectl"]),
            f"--kubeconfig={real_node_plane.kubeconfig}",
            "port-forward",
            "-n",
            server,
            "pod/web",
            ":8080",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert match, line + (forward.stderr.read() if forward.poll() is not None else "")  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/", timeout=10) as resp:
            assert resp.read() == b"web"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_attach_sends_stdin_to_the_container(
    real_node_plane: ControlPlane, probe_image: str, ns: str
) -> None:
    pod = _pod("echo", probe_image, "echo")
    pod["spec"]["restartPolicy"] = "Never"
    pod["spec"]["containers"][0].update({"stdin": True, "stdinOnce": True})
    _apply(real_node_plane, ns, pod)
    _ready(real_node_plane, ns, "echo")
    out = _kubectl(real_node_plane, "attach", "-i", "-n", ns, "echo", input="hello\nthere\n")
    assert "echo: hello\necho: there\n" in out


def test_the_host_reaches_a_cluster_ip(real_node_plane: ControlPlane, server: str) -> None:
    cluster_ip = _kubectl(
        real_node_plane, "get", "svc", "web", "-n", server, "-o", "jsonpath={.spec.clusterIP}"
    )

    def answers() -> bool:
        # Refused until kube-proxy has the Service's endpoints.
        try:
            with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=5) as resp:
                return bool(resp.read() == b"web")
        except OSError:
            return False

    eventually_sync(answers, timeout=30, message="kube-proxy programs the Service")


def test_pods_have_no_default_route(real_node_plane: ControlPlane, server: str) -> None:
    table = _exec(real_node_plane, server, "web", "routes").splitlines()[1:]
    destinations = {line.split()[1] for line in table if line.strip()}
    assert destinations
    assert "00000000" not in destinations, table


# -- teardown: these stop the shared node, check, and start it again for whatever runs later ---


def _assert_nothing_left(node: RealNode, pids: list[int], *, ip_forward_before: str) -> None:
    assert node.find_leftovers() == []
    assert not [p for p in pids if pid_alive(p)], "a process of the node is still running"
    assert mounts_under(node.state_dir) == []
    for save in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([save], capture_output=True, text=True, check=True).stdout
        assert "KUBE-" not in rules, save
        assert "moorage-dev" not in rules, save
    assert not Path("/sys/class/net", node.network.bridge).exists()
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert node.network.service_cidr not in routes
    assert node.network.bridge not in routes
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == ip_forward_before
    cgroups = Path("/sys/fs/cgroup")
    assert not [*cgroups.glob("kubepods*"), *cgroups.glob("*/kubepods*")]


def test_stop_leaves_nothing_behind(
    real_node_plane: ControlPlane, server: str, host_ip_forward: str
) -> None:
    node = real_node_plane.real_node
    assert node is not None
    pids = list(real_node_plane.all_pids().values())
    assert mounts_under(node.state_dir), "a running pod has mounts to take away"
    real_node_plane.stop()
    try:
        _assert_nothing_left(node, pids, ip_forward_before=host_ip_forward)
    finally:
        real_node_plane.start()


def _dev(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moorage_dev", "--state-dir", str(state_dir), "cluster", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_up_refuses_a_second_real_node_and_down_leaves_nothing_behind(
    real_node_plane: ControlPlane,
) -> None:
    real_node_plane.stop()
    # Read before this test's own node starts: what its `down` must leave.
    ip_forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    try:
        with tempfile.TemporaryDirectory(prefix="moorage-rn-cli-") as tmp:
            first, second = Path(tmp) / "first", Path(tmp) / "second"
            up = _dev(first, "up", "--real-node")
            try:
                assert up.returncode == 0, up.stderr
                refused = _dev(second, "up", "--real-node")
                assert refused.returncode != 0
                assert f"already running on this machine (state dir {first})" in refused.stderr
                plane = ControlPlane.load(first)
                assert plane is not None
                assert plane.real_node is not None
                assert plane.is_healthy()
                pids = list(plane.all_pids().values())
            finally:
                down = _dev(first, "down")
            assert down.returncode == 0, down.stderr
            node = ControlPlane.load(first).real_node  # type: ignore[union-attr]
            assert node is not None
            _assert_nothing_left(node, pids, ip_forward_before=ip_forward_before)
    finally:
        real_node_plane.start()
