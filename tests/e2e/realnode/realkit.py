"""What the real-node end-to-end tests do to a cluster, the way a platform engineer does it.

Everything goes through the kubectl built for the local control plane with admin credentials:
`kubectl apply --server-side -k` of an overlay (plus components and an `images:` list, the only
change a test makes to the manifests), waits on what the apiserver reports, and the ClusterIPs of
Services, which the host reaches through the real node's kube-proxy rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from testkit.kustomize import Install, kustomization

from moorage_dev.cluster import ControlPlane, is_port_open
from moorage_dev.demo_realnode import admits

SYSTEM = "moorage-system"
EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"
T = TypeVar("T")
Obj = dict[str, Any]


def images_block(images: Mapping[str, str]) -> str:
    """A kustomize `images:` list that pins each manifest image name to a built reference."""
    lines = ["images:"]
    for name, ref in sorted(images.items()):
        repository, _, tag = ref.rpartition(":")
        lines += [f"  - name: {name}", f"    newName: {repository}", f'    newTag: "{tag}"']
    return "\n".join(lines) + "\n"


@contextmanager
def install_folder(install: Install, images: Mapping[str, str]) -> Iterator[Path]:
    """A kustomization naming the overlay, its components and the images: what a user writes."""
    with tempfile.TemporaryDirectory(prefix="moorage-install-") as tmp:
        directory = Path(tmp)
        text = kustomization(install, directory=directory, extra=images_block(images))
        (directory / "kustomization.yaml").write_text(text)
        yield directory


def apply_install(plane: ControlPlane, install: Install, images: Mapping[str, str]) -> str:
    """`kubectl apply --server-side -k` of `install`; kubectl's output."""
    with install_folder(install, images) as directory:
        out = plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-k", str(directory), timeout=120
        )
    return out.stdout


def install_ready(plane: ControlPlane, install: Install, images: Mapping[str, str]) -> None:
    """`apply_install`, then the operator and webhook rolled out and admitting."""
    apply_install(plane, install, images)
    try:
        for name in ("deployment/moorage-webhook", "deployment/moorage-operator"):
            rollout(plane, SYSTEM, name, timeout=240)
        # Ready pods are not yet a reachable Service (kube-proxy programs the endpoints a moment
        # later); the steps after this one assume that admission works.
        wait("the webhook to admit through its Service", lambda: admits(plane), timeout=60)
    except Exception:
        print(dump(plane, SYSTEM))
        raise


def delete_install(plane: ControlPlane, install: Install, images: Mapping[str, str]) -> None:
    """`kubectl delete -k` of `install`, waiting until what it made is gone."""
    with install_folder(install, images) as directory:
        plane.kubectl(
            "delete", "-k", str(directory), "--ignore-not-found", "--wait=true", timeout=180
        )


def get(plane: ControlPlane, *args: str) -> Obj:
    out = plane.kubectl("get", *args, "-o", "json")
    loaded: Obj = json.loads(out.stdout)
    return loaded


def items(plane: ControlPlane, *args: str) -> list[Obj]:
    found: list[Obj] = get(plane, *args)["items"]
    return found


def wait(what: str, check: Callable[[], T | None], *, timeout: float, interval: float = 0.5) -> T:
    """Call `check` until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            result = check()
        except (subprocess.CalledProcessError, AssertionError, KeyError, ValueError) as exc:
            last = getattr(exc, "stderr", None) or str(exc)
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}. {last}")
        time.sleep(interval)


def rollout(plane: ControlPlane, namespace: str, kind_name: str, *, timeout: int = 180) -> None:
    """`kubectl rollout status`: every replica of the new revision is updated and available."""
    plane.kubectl(
        "rollout",
        "status",
        "-n",
        namespace,
        kind_name,
        f"--timeout={timeout}s",
        timeout=timeout + 10,
    )


def pods(plane: ControlPlane, namespace: str, selector: str = "") -> list[Obj]:
    return items(plane, "pods", "-n", namespace, *(["-l", selector] if selector else []))


def ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod.get("metadata", {}).get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def ready_pods(plane: ControlPlane, namespace: str, selector: str) -> list[Obj]:
    return [p for p in pods(plane, namespace, selector) if ready(p)]


def wait_ready_pods(
    plane: ControlPlane, namespace: str, selector: str, count: int, *, timeout: float = 180
) -> list[Obj]:
    """Exactly `count` Ready pods match `selector` (and none is terminating)."""

    def settled() -> list[Obj] | None:
        found = ready_pods(plane, namespace, selector)
        return (
            found
            if len(found) == count and len(pods(plane, namespace, selector)) == count
            else None
        )

    return wait(f"{count} Ready pods {selector} in {namespace}", settled, timeout=timeout)


def cluster_ip(plane: ControlPlane, namespace: str, service: str, port: int | None = None) -> str:
    """The Service's ClusterIP; with `port`, once the node accepts connections there.

    A Ready pod is not yet a routed Service: the EndpointSlice and kube-proxy's rules follow
    it, and until then the node refuses connections to the ClusterIP.
    """
    ip: str = get(plane, "service", "-n", namespace, service)["spec"]["clusterIP"]
    if port is not None:
        wait(
            f"Service {namespace}/{service} to accept connections on {port}",
            lambda: is_port_open(port, ip),
            timeout=60,
        )
    return ip


def condition(obj: Obj, type_: str) -> Obj | None:
    """The object's condition of type `type_`, if it has one."""
    found = [c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else None


@contextmanager
def host_process(argv: list[str], out: Path) -> Iterator[None]:
    """A Python script of the tests running on the host, its output in `out`."""
    with out.open("w") as handle:
        process = subprocess.Popen([sys.executable, *argv], stdout=handle)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def example_server_in_group(group: str) -> list[Obj]:
    """The stdio example MCPServer `time` (and its MCPToolConfig), joined to `group`."""
    tool_config = yaml.safe_load((EXAMPLES / "mcptoolconfig.yaml").read_text())
    server = yaml.safe_load((EXAMPLES / "mcpserver-stdio.yaml").read_text())
    server["spec"]["groupRef"] = {"name": group}
    return [tool_config, server]


def apply_text(plane: ControlPlane, namespace: str, text: str) -> None:
    """`kubectl apply --server-side` of YAML or JSON `text` in `namespace`."""
    out = plane.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=text, check=False
    )
    assert out.returncode == 0, out.stderr


@contextmanager
def remote_and_time_server_in_group(
    plane: ControlPlane,
    install: Install,
    images: Mapping[str, str],
    namespace: str,
    *,
    group: str,
    proxy: str,
    secret: tuple[str, str, str],
    manifests: str,
) -> Iterator[None]:
    """In a new `namespace`: the Secret (name, key, value), `manifests` (an MCPRemoteProxy `proxy`
    among them) and the stdio example joined to `group`; the proxy and the example Running.

    The install is applied again first: the Helm step uninstalls at its end. The namespace is
    deleted afterwards.
    """
    install_ready(plane, install, images)
    create_namespace(plane, namespace)
    try:
        name, key, value = secret
        plane.kubectl(
            "create", "secret", "generic", name, "-n", namespace, f"--from-literal={key}={value}"
        )
        apply_text(plane, namespace, manifests)
        for obj in example_server_in_group(group):
            apply_text(plane, namespace, json.dumps(obj))
        wait_phase(plane, namespace, proxy, "Running", timeout=240, kind="mcpremoteproxy")
        wait_phase(plane, namespace, "time", "Running", timeout=240)
    except AssertionError:
        print(dump(plane, namespace))
        raise
    try:
        yield
    finally:
        plane.kubectl(
            "delete", "namespace", namespace, "--wait=true", "--timeout=180s", timeout=200
        )


def phase(plane: ControlPlane, namespace: str, server: str) -> str:
    status = get(plane, "mcpserver", "-n", namespace, server).get("status") or {}
    return str(status.get("phase", ""))


def wait_phase(
    plane: ControlPlane,
    namespace: str,
    server: str,
    want: str,
    *,
    timeout: float = 180,
    kind: str = "mcpserver",
) -> Obj:
    """The object once its `status.phase` is `want` (an MCPServer unless `kind` says else)."""

    def reached() -> Obj | None:
        obj = get(plane, kind, "-n", namespace, server)
        return obj if (obj.get("status") or {}).get("phase") == want else None

    try:
        return wait(f"{kind} {namespace}/{server} phase {want}", reached, timeout=timeout)
    except AssertionError as exc:
        obj = get(plane, kind, "-n", namespace, server)
        events = plane.kubectl("get", "events", "-n", namespace, check=False).stdout
        raise AssertionError(f"{exc}\nstatus: {obj.get('status')}\nevents:\n{events}") from None


def create_namespace(plane: ControlPlane, name: str, labels: Mapping[str, str] = {}) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels)},
    }
    plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body))
    wait(
        f"ServiceAccount default in {name}",
        lambda: plane.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
    )


def token(plane: ControlPlane, namespace: str, service_account: str, audience: str) -> str:
    """A TokenRequest token for `namespace/service_account` with `audience`."""
    out = plane.kubectl(
        "create", "token", service_account, "-n", namespace, f"--audience={audience}"
    )
    return out.stdout.strip()


def renew_certificate(plane: ControlPlane, namespace: str, name: str) -> None:
    """Ask cert-manager to re-issue a Certificate now, as `cmctl renew` does: an `Issuing`
    condition set through the status subresource."""
    certificate = get(plane, "certificate", "-n", namespace, name)
    conditions = [
        c for c in (certificate.get("status") or {}).get("conditions", []) if c["type"] != "Issuing"
    ]
    conditions.append(
        {
            "type": "Issuing",
            "status": "True",
            "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "observedGeneration": certificate["metadata"]["generation"],
        }
    )
    plane.kubectl(
        "patch",
        "certificate",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": conditions}}),
    )


def lease_holder(plane: ControlPlane, name: str = "moorage-operator") -> str:
    lease = get(plane, "lease", "-n", SYSTEM, name)
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def dump(plane: ControlPlane, namespace: str) -> str:
    """What a person reads when an e2e step fails: pods, events and the recent logs."""
    parts = [
        plane.kubectl("get", "all,mcpserver", "-n", namespace, "-o", "wide", check=False).stdout
    ]
    parts.append(plane.kubectl("get", "events", "-n", namespace, check=False).stdout)
    for pod in pods(plane, namespace):
        name = pod["metadata"]["name"]
        logs = plane.kubectl(
            "logs", "-n", namespace, name, "--all-containers", "--tail=40", check=False
        )
        parts.append(f"--- logs {name}\n{logs.stdout}{logs.stderr}")
    return "\n".join(parts)
