"""An exec-capable fake node for the proxy runner's integration tests.

The shared control plane's kwok serves `pods/exec` and `pods/attach` for its node, but its
configuration holds no `ClusterExec`, so every exec is refused ("no exec found"). kwok runs an
exec'd command as a local process with stdin piped only when a `ClusterExec`/`Exec` with a `local`
target matches the pod (its attach merely follows a CRI log file). `start_exec_kwok` therefore
runs a second kwok for one extra node, `moorage-exec-node`, with a static configuration holding a
`ClusterExec` (any pod, any container, run locally) and a `ClusterAttach` (follow `attach.log`).
The node is tainted so that only pods tolerating `EXEC_TAINT` land on it; the apiserver reaches
the kwok server at the node's InternalIP 127.0.0.1 and `daemonEndpoints.kubeletEndpoint.Port`
(`--kubelet-preferred-address-types=InternalIP`, no kubelet CA: TLS is not verified).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage_dev.cluster import ControlPlane, free_port

EXEC_NODE = "moorage-exec-node"
EXEC_TAINT = {"key": "moorage.dev/exec-test", "value": "true", "effect": "NoSchedule"}
EXEC_POD_PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"kubernetes.io/hostname": EXEC_NODE},
    "tolerations": [{**EXEC_TAINT, "operator": "Equal"}],
}
"""Pod spec fields that put a pod on the exec-capable node."""


@dataclass(frozen=True, slots=True)
class ExecNode:
    """A fake node whose pods can be exec'd into (commands run on this machine)."""

    name: str
    attach_log: Path
    """The CRI-format log file every `pods/attach` on the node follows (from its end)."""


def write_exec_kwok_config(path: Path, *, attach_log: Path) -> None:
    """kwok configuration: default stages plus a local `ClusterExec` and a `ClusterAttach`."""
    docs = [
        {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration"},
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterExec",
            "metadata": {"name": "run-locally"},
            "spec": {"execs": [{"local": {}}]},
        },
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterAttach",
            "metadata": {"name": "follow-log"},
            "spec": {"attaches": [{"logsFile": str(attach_log)}]},
        },
    ]
    # JSON is YAML; kwok reads a multi-document stream.
    path.write_text("\n---\n".join(json.dumps(doc) for doc in docs) + "\n")


def exec_node_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": EXEC_NODE,
            "labels": {
                "kubernetes.io/hostname": EXEC_NODE,
                "kubernetes.io/os": "linux",
                "type": "kwok",
            },
        },
        "spec": {"taints": [EXEC_TAINT]},
    }


def start_exec_kwok(plane: ControlPlane, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A second kwok managing only `EXEC_NODE`, serving exec/attach on a loopback port."""
    port = free_port()
    attach_log = workdir / "attach.log"
    attach_log.touch()
    config = workdir / "kwok-exec.yaml"
    write_exec_kwok_config(config, attach_log=attach_log)
    argv = [
        str(plane.binaries["kwok"]),
        f"--kubeconfig={plane.kubeconfig}",
        f"--manage-single-node={EXEC_NODE}",
        "--node-ip=127.0.0.1",
        f"--node-port={port}",
        f"--server-address=127.0.0.1:{port}",
        "--cidr=10.245.0.1/24",
        f"--config={config}",
    ]
    log = (workdir / "kwok-exec.log").open("ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=workdir,
        )
    finally:
        log.close()
    return proc, attach_log


def is_exec_node_ready(plane: ControlPlane) -> bool:
    out = plane.kubectl("get", "node", EXEC_NODE, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    node = json.loads(out.stdout)
    port = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    return bool(port.get("Port")) and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def stop_exec_kwok(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
