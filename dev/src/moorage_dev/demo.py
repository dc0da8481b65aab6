"""The one-command demo: Moorage end to end on a local control plane.

Where the machine can run a real node (`realnode`), the demo installs Moorage the way a platform
team does and everything runs in pods (`demo_realnode`). Elsewhere, or with `--local`, it says why
and runs the local variant below, with kwok's fake node:

1. bring up the local control plane (or reuse the one `moorage-dev cluster up` started);
2. install the CRDs; start the admission webhook (with a CA made here) and register it;
3. start the operator against the control plane;
4. apply the example stdio MCPServer `time` and its MCPToolConfig;
5. run its proxy runner locally from the RunConfig the operator wrote, with `mcp-server-time`
   as the MCP server next to it (the StatefulSet is still applied, and kwok makes it Ready);
6. connect a real MCP client, list the tools and call one;
7. show `kubectl get mcps` with phase Running;
then stop everything it started (also on Ctrl-C).

With KUBECONFIG pointing at another cluster it starts nothing and prints how to install there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moorage_core.tls import build_ca, build_leaf, write_pair
from moorage_dev.binaries import BinaryError
from moorage_dev.cluster import (
    ControlPlane,
    ControlPlaneError,
    default_state_dir,
    free_port,
    real_node_problems,
)
from moorage_dev.demo_realnode import RealNodeDemo
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
from moorage_dev.images import ImageError

WEBHOOK_CONFIG = "moorage-demo-webhook"


def _bin(name: str) -> str:
    """A console script of this environment (the venv's bin folder comes first)."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class Demo:
    """What the demo started, so that `cleanup` can stop exactly that."""

    state_dir: Path
    plane: ControlPlane | None = None
    started_plane: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work = self.state_dir / "demo"

    # -- helpers ----------------------------------------------------------------------------

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        assert self.plane is not None
        return self.plane.kubectl(*args, input=input_text).stdout

    def spawn(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.work / f"{name}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.processes[name] = proc
        detail(f"{name} started (pid {proc.pid}, log {log})")
        return proc

    def check_alive(self, name: str) -> bool:
        """False while `name` runs; a `DemoError` with its log's tail once it has exited."""
        proc = self.processes[name]
        if proc.poll() is not None:
            tail = (self.work / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
            raise DemoError(f"{name} exited with {proc.returncode}:\n" + "\n".join(tail))
        return False

    # -- steps ------------------------------------------------------------------------------

    def control_plane(self) -> None:
        say(1, "local control plane: etcd, kube-apiserver, controller manager, scheduler, kwok")
        plane = ControlPlane.load(self.state_dir, report=detail)
        if plane is not None and plane.is_healthy():
            detail(f"reusing the control plane at {plane.server}")
        else:
            if plane is not None:
                plane.stop()
            plane = ControlPlane(self.state_dir, report=detail)
            plane.start()
            self.started_plane = True
        self.plane = plane
        self.work.mkdir(parents=True, exist_ok=True)
        detail(f"KUBECONFIG={plane.kubeconfig}")

    def webhook(self) -> None:
        say(2, "CRDs and the admission webhook")
        self.kubectl("apply", "--server-side", "-k", str(REPO / "crds" / "manifests"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mcpservers.moorage.dev",
            "crd/mcptoolconfigs.moorage.dev",
            "crd/mcpregistries.moorage.dev",
            "crd/mcptenants.moorage.dev",
        )
        detail("CRDs installed and Established")
        assert self.plane is not None
        ca = build_ca(common_name="moorage-demo-webhook-ca", days=1)
        cert_dir = self.work / "webhook-tls"
        write_pair(
            build_leaf(ca, common_name="moorage-webhook", hosts=["127.0.0.1"], days=1), cert_dir
        )
        port, metrics = free_port(), free_port()
        self.spawn(
            "webhook",
            [
                _bin("moorage-webhook"),
                f"--cert-dir={cert_dir}",
                f"--bind=127.0.0.1:{port}",
                f"--metrics-bind=127.0.0.1:{metrics}",
                # It follows the demo cluster's MCPTenants, like a deployed webhook.
                f"--kubeconfig={self.plane.kubeconfig}",
            ],
            env={"LOG_FORMAT": "json"},
        )
        wait_for(
            "the webhook to listen",
            lambda: self._tcp_open(port) or self.check_alive("webhook"),
            timeout=30,
        )
        bundle = base64.b64encode(ca.cert_pem).decode()
        webhooks = []
        for plural, path in (
            ("mcpservers", "mcpserver"),
            ("mcptoolconfigs", "mcptoolconfig"),
            ("mcpregistries", "mcpregistry"),
        ):
            webhooks.append(
                {
                    "name": f"{path}.moorage.dev",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                    "matchPolicy": "Equivalent",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/validate/{path}",
                        "caBundle": bundle,
                    },
                    "rules": [
                        {
                            "apiGroups": ["moorage.dev"],
                            "apiVersions": ["v1alpha1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": [plural],
                            "scope": "Namespaced",
                        }
                    ],
                }
            )
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIG},
            "webhooks": webhooks,
        }
        self.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(config))
        detail(f"webhook on https://127.0.0.1:{port} registered (fail-closed)")

    @staticmethod
    def _tcp_open(port: int) -> bool:
        from moorage_dev.cluster import is_port_open

        return is_port_open(port)

    def operator(self) -> None:
        say(3, "the operator")
        assert self.plane is not None
        for ns in ("moorage-system", NAMESPACE):
            self.kubectl(
                "apply",
                "--server-side",
                "-f",
                "-",
                input_text=json.dumps(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                ),
            )
        metrics = free_port()
        self.spawn(
            "operator",
            [_bin("moorage-operator")],
            env={
                "KUBECONFIG": str(self.plane.kubeconfig),
                "POD_NAMESPACE": "moorage-system",
                "POD_NAME": "moorage-demo-operator",
                "WATCH_NAMESPACES": NAMESPACE,
                "METRICS_BIND": f"127.0.0.1:{metrics}",
                "PROXYRUNNER_IMAGE": "ghcr.io/moorage-dev/proxyrunner:0.1.0",
                "LOG_FORMAT": "json",
            },
        )
        wait_for(
            "the operator to be ready",
            lambda: self._https_ok(metrics, "/readyz") or self.check_alive("operator"),
            timeout=60,
        )
        detail(f"operator ready (metrics and probes on https://127.0.0.1:{metrics})")

    @staticmethod
    def _https_ok(port: int, path: str) -> bool:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=ctx, timeout=2
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def apply_server(self) -> dict[str, Any]:
        say(4, f"apply the example stdio MCPServer {SERVER!r} and its MCPToolConfig")
        for name in ("mcptoolconfig.yaml", "mcpserver-stdio.yaml"):
            self.kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "deploy" / "examples" / name))
            detail(f"applied deploy/examples/{name}")

        def runconfig() -> dict[str, Any] | None:
            out = self.kubectl(
                "get", "configmap", f"{SERVER}-runconfig", "-n", NAMESPACE, "-o", "json"
            )
            data = json.loads(out).get("data") or {}
            return json.loads(data["runconfig.json"]) if "runconfig.json" in data else None

        config: dict[str, Any] = wait_for(
            "the operator to write the RunConfig", runconfig, timeout=60
        )
        children = self.kubectl(
            "get",
            "sa,role,rolebinding,configmap,deployment,service",
            "-n",
            NAMESPACE,
            "-l",
            f"moorage.dev/mcpserver={SERVER}",
            "-o",
            "name",
        )
        for line in children.split():
            detail(f"created {line}")
        return config

    def proxy(self, config: dict[str, Any]) -> str:
        say(5, "run the proxy runner locally with mcp-server-time as the MCP server")
        assert self.plane is not None
        port = free_port()
        config = {**config, "port": port}
        path = self.work / "runconfig.json"
        path.write_text(json.dumps(config, indent=2, sort_keys=True))
        self.spawn(
            "proxyrunner",
            [
                _bin("moorage-proxyrunner"),
                "run",
                f"--config={path}",
                "--host=127.0.0.1",
                f"--kubeconfig={self.plane.kubeconfig}",
                "--",
                _bin("mcp-server-time"),
                *config.get("args", []),
            ],
            env={"LOG_FORMAT": "json"},
        )
        url = f"http://127.0.0.1:{port}/mcp"
        wait_for(
            "the proxy runner to be healthy",
            lambda: self._http_ok(port, "/health") or self.check_alive("proxyrunner"),
            timeout=120,
        )
        detail(f"StatefulSet {SERVER} applied and Ready; MCP endpoint {url}")
        return url

    @staticmethod
    def _http_ok(port: int, path: str) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def client(self, url: str) -> None:
        say(6, "a real MCP client: list the tools and call one")
        asyncio.run(use_client(url))

    def status(self) -> None:
        say(7, "kubectl get mcps")

        def running() -> bool:
            phase = self.kubectl(
                "get", "mcps", SERVER, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}"
            )
            return phase == "Running"

        wait_for("the MCPServer to be Running", running, timeout=60)
        print(self.kubectl("get", "mcps", "-n", NAMESPACE), flush=True)

    def cleanup(self) -> None:
        print("\ncleaning up", flush=True)
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            detail(f"{name} stopped")
        if self.plane is not None:
            if self.started_plane:
                self.plane.stop()
                detail("control plane stopped")
            else:
                with contextlib.suppress(subprocess.CalledProcessError, OSError):
                    self.plane.kubectl(
                        "delete",
                        "validatingwebhookconfiguration",
                        WEBHOOK_CONFIG,
                        "--ignore-not-found",
                    )
                    self.plane.kubectl(
                        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false"
                    )
                detail("demo objects removed; the control plane you started keeps running")


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so both clean up the same way."""

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def foreign_cluster() -> str | None:
    """The KUBECONFIG the user points at, when it is not our local control plane."""
    path = os.environ.get("KUBECONFIG")
    if not path:
        return None
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return path
    servers = [c.get("cluster", {}).get("server", "") for c in (doc or {}).get("clusters", [])]
    if servers and all(s.startswith("https://127.0.0.1:") for s in servers) and "moorage" in path:
        return None
    return path


def print_install_instructions(kubeconfig: str) -> None:
    print(
        f"KUBECONFIG points at a cluster ({kubeconfig}); the demo runs only on its local control plane.\n"
        "To install Moorage on that cluster (cert-manager first; images pushed where it pulls\n"
        "from: README.md, 'Install on a real cluster'):\n\n"
        f"  kubectl apply --server-side -k {REPO / 'deploy' / 'overlays' / 'cluster'}\n"
        f"  kubectl apply --server-side -n default -f {REPO / 'deploy' / 'examples' / 'mcptoolconfig.yaml'} \\\n"
        f"    -f {REPO / 'deploy' / 'examples' / 'mcpserver-stdio.yaml'}\n\n"
        "Unset KUBECONFIG to run the local demo instead.",
        flush=True,
    )


def _run_local(demo: Demo) -> None:
    demo.control_plane()
    demo.webhook()
    demo.operator()
    config = demo.apply_server()
    url = demo.proxy(config)
    demo.client(url)
    demo.status()


def choose_real_node(state_dir: Path, *, local: bool) -> bool:
    """Whether the demo runs on a real node; says why not when the machine does not allow it."""
    if local:
        print(
            "running the local demo (--local): kwok's fake node, the proxy runner on this machine"
        )
        return False
    recorded = ControlPlane.load(state_dir)
    if recorded is not None and recorded.real_node is not None and recorded.is_healthy():
        return True
    problems = real_node_problems(state_dir)
    if not problems:
        return True
    print(
        "this machine cannot run a real node, so the demo runs locally instead "
        "(kwok's fake node, the proxy runner on this machine):",
        flush=True,
    )
    for problem in problems:
        print(f"  - {problem}", flush=True)
    return False


def run_demo(*, state_dir: Path | None = None, local: bool = False) -> int:
    kubeconfig = foreign_cluster()
    if kubeconfig is not None:
        print_install_instructions(kubeconfig)
        return 0
    directory = state_dir or default_state_dir()
    real = choose_real_node(directory, local=local)
    demo: Demo | RealNodeDemo = RealNodeDemo(directory) if real else Demo(directory)
    started = time.monotonic()
    try:
        with _interruptible():
            if isinstance(demo, RealNodeDemo):
                demo.run()
            else:
                _run_local(demo)
            print(f"\ndemo finished in {time.monotonic() - started:.0f}s", flush=True)
            return 0
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        return 130
    except (DemoError, ControlPlaneError, ImageError, BinaryError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        demo.cleanup()
