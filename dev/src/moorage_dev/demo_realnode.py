"""The demo on a real node: Moorage installed and used the way a platform team does it.

1. bring up the local control plane with a real node (or reuse one `cluster up --real-node`
   started);
2. build Moorage's images from docker/Dockerfile and the example server's image, import them into
   the node's containerd;
3. start cert-manager against the control plane;
4. install Moorage: `kubectl apply --server-side -k deploy/overlays/cluster`, wait for the webhook
   and operator Deployments;
5. apply the example stdio MCPServer `time` and its MCPToolConfig; the operator creates the proxy
   runner, which creates the MCP server's StatefulSet, all on real pods;
6. a real MCP client on this machine lists the tools and calls one through the Service;
7. show `kubectl get mcps` with phase Running;
then stop what it started (also on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from moorage_dev.certmanager import CertManager, stop_recorded
from moorage_dev.cluster import ControlPlane, is_port_open
from moorage_dev.demo_steps import (
    NAMESPACE,
    REPO,
    SERVER,
    DemoError,
    detail,
    say,
    use_client,
    wait_for,
)
from moorage_dev.images import build_images, import_images

SYSTEM = "moorage-system"
EXAMPLE_IMAGES = ["operator", "webhook", "proxyrunner", "mcp-server-time"]


def admits(plane: ControlPlane) -> bool:
    """Whether the apiserver admits a write of our resources: a server-side dry run of the
    example MCPToolConfig. Ready webhook pods are not yet a reachable Service (kube-proxy programs
    new endpoints a moment later), and until it is the fail-closed webhook refuses every write."""
    example = str(REPO / "deploy" / "examples" / "mcptoolconfig.yaml")
    out = plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", "default", "-f", example, check=False
    )
    return out.returncode == 0


@dataclass
class RealNodeDemo:
    """What the demo started on the real node, so that `cleanup` stops exactly that."""

    state_dir: Path
    plane: ControlPlane | None = None
    started_plane: bool = False
    cert_manager: CertManager | None = None
    applied: list[str] = field(default_factory=list)

    def kubectl(self, *args: str, input_text: str | None = None, timeout: float = 120) -> str:
        assert self.plane is not None
        try:
            return self.plane.kubectl(*args, input=input_text, timeout=timeout).stdout
        except subprocess.CalledProcessError as exc:
            raise DemoError(f"kubectl {' '.join(args)}: {exc.stderr.strip()}") from None

    def control_plane(self) -> None:
        say(1, "local control plane with a real node (containerd, kubelet, kube-proxy, CoreDNS)")
        plane = ControlPlane.load(self.state_dir, report=detail)
        if plane is not None and plane.real_node is not None and plane.is_healthy():
            detail(f"reusing the control plane at {plane.server}")
        else:
            if plane is not None:
                stop_recorded(plane, report=detail)
                plane.stop()
            plane = ControlPlane(self.state_dir, real_node=True, report=detail)
            self.plane = plane
            self.started_plane = True
            plane.start()
        self.plane = plane
        assert plane.real_node is not None
        detail(f"node {plane.real_node.name} at {plane.real_node.bridge_ip}")
        detail(f"KUBECONFIG={plane.kubeconfig}")

    def images(self) -> None:
        say(2, "images from docker/Dockerfile (buildah, no Docker daemon), imported into the node")
        assert self.plane is not None
        built = build_images(detail, only=EXAMPLE_IMAGES)
        for image in built.values():
            detail(f"{image.reference}{' (cached)' if image.cached else ''}")
        import_images(self.plane, built, report=detail)

    def certificates(self) -> None:
        say(3, "cert-manager (it issues the webhook's certificate)")
        assert self.plane is not None
        manager = CertManager.load(self.plane, report=detail)
        if manager is None or not all(manager.running().values()):
            manager = CertManager(self.plane, report=detail)
            self.cert_manager = manager
            manager.start()
        else:
            detail("reusing the running cert-manager")

    def install(self) -> None:
        say(4, "install Moorage: kubectl apply --server-side -k deploy/overlays/cluster")
        out = self.kubectl(
            "apply", "--server-side", "-k", str(REPO / "deploy" / "overlays" / "cluster")
        )
        detail(f"{len(out.splitlines())} objects applied")
        for deployment in ("moorage-webhook", "moorage-operator"):
            self.kubectl(
                "rollout",
                "status",
                "-n",
                SYSTEM,
                f"deployment/{deployment}",
                "--timeout=240s",
                timeout=250,
            )
            detail(f"deployment/{deployment} rolled out")
        print(self.kubectl("get", "pods", "-n", SYSTEM, "-o", "wide"), flush=True)
        assert self.plane is not None
        plane = self.plane
        wait_for("the webhook to answer through its Service", lambda: admits(plane), timeout=60)
        detail("the webhook answers the apiserver through its Service")

    def apply_server(self) -> None:
        say(5, f"apply the example stdio MCPServer {SERVER!r} and its MCPToolConfig")
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(namespace))
        self.applied.append(NAMESPACE)
        for name in ("mcptoolconfig.yaml", "mcpserver-stdio.yaml"):
            path = REPO / "deploy" / "examples" / name
            self.kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", str(path))
            detail(f"applied deploy/examples/{name}")

        def running() -> bool:
            phase = self.kubectl(
                "get", "mcps", SERVER, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}"
            )
            return phase == "Running"

        wait_for("the MCPServer to be Running", running, timeout=240)
        print(self.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide"), flush=True)

    def client(self) -> None:
        say(6, "a real MCP client through the MCPServer's Service: list the tools and call one")
        ip = self.kubectl(
            "get",
            "service",
            f"mcp-{SERVER}-proxy",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.spec.clusterIP}",
        )
        url = f"http://{ip}:8080/mcp"
        detail(f"MCP endpoint {url}")
        # A Ready pod is not yet a routed Service: the EndpointSlice and kube-proxy's rules
        # follow it, and until then the node refuses connections to the ClusterIP.
        wait_for("the Service to accept connections", lambda: is_port_open(8080, ip), timeout=60)
        asyncio.run(use_client(url))

    def status(self) -> None:
        say(7, "kubectl get mcps")
        print(self.kubectl("get", "mcps", "-n", NAMESPACE), flush=True)

    def run(self) -> None:
        self.control_plane()
        self.images()
        self.certificates()
        self.install()
        self.apply_server()
        self.client()
        self.status()

    def cleanup(self) -> None:
        print("\ncleaning up", flush=True)
        if self.plane is None:
            return
        if self.started_plane:
            if self.cert_manager is not None:
                self.cert_manager.stop()
                detail("cert-manager stopped")
            self.plane.stop()
            detail("control plane and real node stopped")
            return
        for namespace in self.applied:
            self.plane.kubectl(
                "delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False
            )
        if self.cert_manager is not None:
            self.cert_manager.stop()
            detail("cert-manager stopped")
        detail("demo namespace removed; Moorage stays installed on the cluster you started")
