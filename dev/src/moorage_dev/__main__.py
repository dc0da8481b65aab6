"""`moorage-dev`: the local control plane and the demo, for people working on Moorage.

moorage-dev cluster up       start (or find running) etcd, kube-apiserver, controller manager,
                             scheduler and kwok on 127.0.0.1; last line KUBECONFIG=<path>
moorage-dev cluster up --real-node
                             the same and a real node (kubelet, containerd, kube-proxy, CoreDNS)
                             that runs the pods; docs/real-node.md
moorage-dev cluster down     stop everything `up` started
moorage-dev cluster status   say what runs, exit 1 when the control plane is not healthy
moorage-dev build            build (or find) the control plane binaries and print their paths
                             (--real-node: kubelet, kube-proxy, CoreDNS, cert-manager and
                             Prometheus too)
moorage-dev images build     build Moorage's and the examples' images with buildah (no Docker)
moorage-dev images import    build them and import them into the local cluster's real node
moorage-dev certmanager up   install and start cert-manager against the running control plane
moorage-dev certmanager down stop it (`cluster down` stops it too)
moorage-dev convert -f their.yaml
                             rewrite ToolHive operator resources into Moorage's, reporting every
                             field not carried over (docs/migrating.md)
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

from moorage_core.errors import KubeError
from moorage_dev.binaries import BinaryError, ensure_binaries
from moorage_dev.certmanager import CertManager, stop_recorded
from moorage_dev.certmanager_binaries import ensure_cert_manager_binaries
from moorage_dev.cluster import ControlPlane, ControlPlaneError, default_state_dir
from moorage_dev.convertcommands import add_convert_command, run_convert_command
from moorage_dev.demo import run_demo
from moorage_dev.dns import ensure_coredns
from moorage_dev.imagecommands import add_images_command, run_images_command
from moorage_dev.prometheus import ensure_prometheus_with_kubernetes_discovery


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def cluster_up(state_dir: Path, *, real_node: bool = False) -> int:
    existing = ControlPlane.load(state_dir, report=_say)
    if (
        existing is not None
        and existing.is_healthy()
        and (existing.real_node is not None or not real_node)
    ):
        _say(f"control plane already running at {existing.server}")
        print(f"KUBECONFIG={existing.kubeconfig}")
        return 0
    if existing is not None:
        stop_recorded(existing, report=_say)
        existing.stop()
    plane = ControlPlane(state_dir, report=_say, real_node=real_node)
    plane.start()
    _say(f"logs in {state_dir / 'logs'}; stop it with: moorage-dev cluster down")
    print(f"KUBECONFIG={plane.kubeconfig}")
    return 0


def cluster_down(state_dir: Path) -> int:
    plane = ControlPlane.load(state_dir, report=_say)
    if plane is None:
        _say("no control plane recorded; nothing to stop")
        return 0
    if stop_recorded(plane, report=_say):
        _say("cert-manager stopped")
    node = plane.real_node
    plane.stop()
    leftovers = node.find_leftovers() if node is not None else []
    if leftovers:
        _say("the real node left behind: " + "; ".join(leftovers))
        return 1
    _say("control plane stopped")
    return 0


def cluster_status(state_dir: Path) -> int:
    plane = ControlPlane.load(state_dir, report=_say)
    if plane is None:
        print("control plane: not started")
        return 1
    pids = plane.all_pids()
    for name, alive in plane.running().items():
        print(f"{name:<26} {'running' if alive else 'stopped'} (pid {pids[name]})")
    if plane.real_node is not None:
        node = plane.real_node
        print(
            f"real node {node.name}: {node.bridge_ip} on {node.network.bridge}, pods {node.pod_cidr}"
        )
    healthy = plane.is_healthy()
    print(
        f"apiserver {plane.server if plane.ports else '-'}: {'ready' if healthy else 'not ready'}"
    )
    if healthy:
        print(f"KUBECONFIG={plane.kubeconfig}")
    return 0 if healthy else 1


def certmanager(state_dir: Path, action: str) -> int:
    plane = ControlPlane.load(state_dir, report=_say)
    if action == "down":
        stopped = plane is not None and stop_recorded(plane, report=_say)
        _say("cert-manager stopped" if stopped else "no cert-manager recorded; nothing to stop")
        return 0
    if plane is None or not plane.is_healthy():
        _say("the control plane is not running: start it with `moorage-dev cluster up`")
        return 1
    manager = CertManager.load(plane, report=_say) or CertManager(plane, report=_say)
    if action == "status":
        if not manager.pids:
            print("cert-manager: not started")
            return 1
        for name, alive in manager.running().items():
            print(f"{name:<26} {'running' if alive else 'stopped'} (pid {manager.pids[name]})")
        return 0 if manager.pids and all(manager.running().values()) else 1
    manager.start()
    _say(f"logs in {state_dir / 'logs'}; stop it with: moorage-dev certmanager down")
    return 0


def build(*, real_node: bool = False) -> int:
    for name, path in ensure_binaries(report=_say, node=real_node).items():
        print(f"{name}={path}")
    if real_node:
        # What runs beside a real node in the tests and the demo, built now rather than on
        # first use so that a test run starts with everything in the cache.
        print(f"coredns={ensure_coredns(_say)}")
        print(f"cert-manager={ensure_cert_manager_binaries(_say).bin_dir}")
        print(f"prometheus={ensure_prometheus_with_kubernetes_discovery(_say)}")
    return 0


def describe_failure(exc: OSError | subprocess.CalledProcessError | KubeError) -> str:
    """One line saying what failed and, where we can tell, what to do."""
    if isinstance(exc, subprocess.CalledProcessError):
        command = " ".join(str(part) for part in exc.cmd)
        stderr = (
            exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        )
        last = (stderr or "").strip().splitlines()[-1:] or ["no output"]
        return f"`{command}` failed with exit code {exc.returncode}: {last[0]}"
    if isinstance(exc, KubeError):
        return f"the Kubernetes API said: {exc}"
    if exc.errno == errno.EADDRINUSE:
        return f"an address is in use ({exc.strerror}): stop what listens there and try again"
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moorage-dev", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the control plane keeps its state (default: $MOORAGE_STATE_DIR or ~/.cache/moorage/cluster)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cluster = sub.add_parser("cluster", help="the local control plane")
    cluster.add_argument("action", choices=["up", "down", "status"])
    cluster.add_argument(
        "--real-node",
        action="store_true",
        help="up: also start a real node (kubelet, containerd) that runs the pods; needs root",
    )
    build_parser = sub.add_parser("build", help="build or find the control plane binaries")
    build_parser.add_argument(
        "--real-node", action="store_true", help="also kubelet and kube-proxy"
    )
    cert_manager = sub.add_parser("certmanager", help="cert-manager on the local control plane")
    cert_manager.add_argument("certmanager_action", choices=["up", "down", "status"])
    demo = sub.add_parser("demo", help="run Moorage end to end on the local control plane")
    demo.add_argument(
        "--local",
        action="store_true",
        help="kwok's fake node and the proxy runner on this machine, even where a real node could run",
    )
    add_images_command(sub)
    add_convert_command(sub)
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir or default_state_dir()
    try:
        if args.command == "build":
            return build(real_node=args.real_node)
        if args.command == "demo":
            kubeconfig = os.environ.get("KUBECONFIG", "")
            if kubeconfig and not Path(kubeconfig).is_file():
                print(
                    f"moorage-dev: KUBECONFIG: {kubeconfig} does not exist; unset it to run the "
                    "demo on the local control plane, or point it at your cluster's kubeconfig",
                    file=sys.stderr,
                )
                return 2
            return run_demo(state_dir=state_dir, local=args.local)
        if args.command == "convert":
            return run_convert_command(args)
        if args.command == "images":
            return run_images_command(args, state_dir=state_dir, say=_say)
        if args.command == "certmanager":
            return certmanager(state_dir, args.certmanager_action)
        if args.action == "up":
            return cluster_up(state_dir, real_node=args.real_node)
        actions = {"down": cluster_down, "status": cluster_status}
        return actions[args.action](state_dir)
    except (BinaryError, ControlPlaneError) as exc:
        print(f"moorage-dev: {exc}", file=sys.stderr)
        return 2
    except (OSError, subprocess.CalledProcessError, KubeError) as exc:
        print(f"moorage-dev: {describe_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
