"""cert-manager, for real, against the local control plane.

`CertManager(plane).start()` installs cert-manager's own CRDs (the module's `deploy/crds/`), starts
its controller and cainjector out of cluster as processes of their own session that talk to the
apiserver with the admin kubeconfig (leader election off: one of each per control plane), and
waits until a self-signed Certificate is issued and its CA injected into a webhook
configuration, so what follows (`kubectl apply -k deploy/overlays/...`) finds it working.

The processes are recorded in `<state dir>/cert-manager.json` and log to `<state dir>/logs/`, so
`stop()`, `moorage-dev certmanager down` and `moorage-dev cluster down` find them later. What it
does not run: cert-manager's own admission webhook (its CRDs' schemas still apply) and the ACME
HTTP-01 solver pods (no route to the internet here).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moorage_dev.binaries import Reporter
from moorage_dev.certmanager_binaries import (
    CERT_MANAGER_COMMANDS,
    CertManagerRelease,
    ensure_cert_manager_binaries,
)
from moorage_dev.cluster import ControlPlane, ControlPlaneError
from moorage_dev.processes import log_tail, pid_runs, spawn, terminate

STATE_FILE = "cert-manager.json"
# Where cert-manager keeps what it needs itself (the readiness check's objects).
NAMESPACE = "cert-manager"
READINESS_NAME = "moorage-readiness"
_READY_TIMEOUT = 180.0


class CertManagerError(ControlPlaneError):
    """cert-manager did not install, start or become ready; the message points at its logs."""


def controller_argv(release: CertManagerRelease, *, kubeconfig: Path) -> list[str]:
    return [
        str(release.binary("cert-manager-controller")),
        f"--kubeconfig={kubeconfig}",
        "--cluster-resource-namespace=" + NAMESPACE,
        # cert-manager's InfoLevel: one line per issued certificate, not per reconcile.
        "--v=2",
    ]


def cainjector_argv(release: CertManagerRelease, *, kubeconfig: Path) -> list[str]:
    return [str(release.binary("cert-manager-cainjector")), f"--kubeconfig={kubeconfig}", "--v=2"]


def build_readiness_objects(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """A self-signed Issuer and Certificate, and a webhook configuration that asks for its CA.

    The webhook matches only a group no API serves and fails open, so while it exists it can
    stand in no write's way.
    """
    labels = {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/part-of": "moorage-dev"}
    meta = {"name": READINESS_NAME, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": meta,
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": meta,
            "spec": {
                "secretName": f"{READINESS_NAME}-tls",
                "commonName": f"{READINESS_NAME}.{namespace}.svc",
                "dnsNames": [f"{READINESS_NAME}.{namespace}.svc"],
                "duration": "1h",
                "isCA": True,
                "issuerRef": {"name": READINESS_NAME, "kind": "Issuer"},
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {
                "name": READINESS_NAME,
                "labels": labels,
                "annotations": {"cert-manager.io/inject-ca-from": f"{namespace}/{READINESS_NAME}"},
            },
            "webhooks": [
                {
                    "name": "readiness.cert-manager.moorage.dev",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": 1,
                    "rules": [
                        {
                            "apiGroups": ["readiness.moorage.dev"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["nothing"],
                        }
                    ],
                    "clientConfig": {"url": "https://127.0.0.1:1/never"},
                }
            ],
        },
    ]


class CertManager:
    """Install, start, inspect and stop cert-manager for one control plane."""

    def __init__(
        self,
        plane: ControlPlane,
        *,
        release: CertManagerRelease | None = None,
        report: Reporter | None = None,
    ) -> None:
        self.plane = plane
        self.report: Reporter = report or (lambda _msg: None)
        self._release = release
        self.pids: dict[str, int] = {}
        """Command name → pid (also its process group) of what `start` spawned."""
        self.binaries: dict[str, Path] = {}
        """Command name → the binary it runs; the pid is ours only while it still runs this."""

    @property
    def release(self) -> CertManagerRelease:
        if self._release is None:
            self._release = ensure_cert_manager_binaries(self.report)
        return self._release

    @property
    def state_file(self) -> Path:
        return self.plane.state_dir / STATE_FILE

    def log_file(self, name: str) -> Path:
        return self.plane.log_file(name)

    # -- state --------------------------------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "version": self.release.version,
            "pids": self.pids,
            "binaries": {k: str(v) for k, v in self.binaries.items()},
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, plane: ControlPlane, *, report: Reporter | None = None) -> CertManager | None:
        """The cert-manager recorded for `plane`'s state directory, or None."""
        path = plane.state_dir / STATE_FILE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        manager = cls(plane, report=report)
        manager.pids = {k: int(v) for k, v in state.get("pids", {}).items()}
        manager.binaries = {k: Path(v) for k, v in state.get("binaries", {}).items()}
        return manager

    def running(self) -> dict[str, bool]:
        """Which of the recorded processes still run."""
        return {
            name: pid_runs(pid, str(self.binaries.get(name, name)))
            for name, pid in self.pids.items()
        }

    # -- start and stop -----------------------------------------------------------------------

    def install_crds(self) -> list[str]:
        """Apply cert-manager's CRDs and wait until they are Established; their names."""
        names: list[str] = []
        for path in self.release.crd_files:
            out = self.plane.kubectl("apply", "--server-side", "-f", str(path), "-o", "name")
            names.extend(line.strip() for line in out.stdout.splitlines() if line.strip())
        self.plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
        return names

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.pids[name] = spawn(argv, log_path=self.log_file(name), cwd=self.plane.state_dir)
        self.binaries[name] = Path(argv[0])

    def start(self) -> None:
        """Install the CRDs, start the controller and the cainjector, wait until they work.

        A cert-manager already recorded for this state directory is adopted while all of it runs
        and stopped otherwise, so two callers never leave a second, unrecorded pair behind.
        """
        started = time.monotonic()
        release = self.release
        if not self.pids:
            recorded = CertManager.load(self.plane, report=self.report)
            if recorded is not None:
                self.pids, self.binaries = recorded.pids, recorded.binaries
        if self.pids and all(self.running().values()):
            self.report("cert-manager already running")
            return
        self.stop()
        self.report(f"installing cert-manager v{release.version} CRDs")
        self.install_crds()
        kubeconfig = self.plane.kubeconfig
        commands = {
            "cert-manager-controller": controller_argv(release, kubeconfig=kubeconfig),
            "cert-manager-cainjector": cainjector_argv(release, kubeconfig=kubeconfig),
        }
        try:
            for name in CERT_MANAGER_COMMANDS:
                self._spawn(name, commands[name])
            self._save_state()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.report(
            f"cert-manager v{release.version} ready in {time.monotonic() - started:.1f}s "
            f"(logs in {self.log_file('cert-manager-controller').parent})"
        )

    def stop(self) -> None:
        """Stop the recorded processes (their whole process groups) and forget them."""
        for name, alive in self.running().items():
            if alive:
                terminate(self.pids[name])
        self.pids.clear()
        self.binaries.clear()
        self.state_file.unlink(missing_ok=True)

    # -- readiness ----------------------------------------------------------------------------

    def wait_ready(self, *, timeout: float = _READY_TIMEOUT) -> None:
        """Issue a self-signed Certificate and wait until its CA reaches a webhook configuration.

        That needs the controller (Issuer Ready, Certificate issued) and the cainjector; the
        objects are deleted afterwards.
        """
        objects = build_readiness_objects()
        self.plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(_as_list(objects)))
        try:
            self._wait(self._readiness_injected, timeout=timeout)
        finally:
            for obj in reversed(objects[1:]):
                kind = obj["kind"].lower()
                ns = obj["metadata"].get("namespace")
                args = ["delete", kind, obj["metadata"]["name"], "--ignore-not-found"]
                self.plane.kubectl(*args, *(["-n", ns] if ns else []), check=False)
            self.plane.kubectl(
                "delete",
                "secret",
                f"{READINESS_NAME}-tls",
                "-n",
                NAMESPACE,
                "--ignore-not-found",
                check=False,
            )

    def _readiness_injected(self) -> bool:
        secret = self.plane.kubectl(
            "get", "secret", f"{READINESS_NAME}-tls", "-n", NAMESPACE, "-o", "json", check=False
        )
        if secret.returncode != 0:
            return False
        ca = (json.loads(secret.stdout).get("data") or {}).get("ca.crt")
        hook = self.plane.kubectl(
            "get", "validatingwebhookconfiguration", READINESS_NAME, "-o", "json", check=False
        )
        if hook.returncode != 0 or not ca:
            return False
        webhooks = json.loads(hook.stdout).get("webhooks") or []
        return all(w.get("clientConfig", {}).get("caBundle") == ca for w in webhooks)

    def _wait(self, check: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, alive in self.running().items():
                if not alive:
                    raise CertManagerError(
                        f"{name} exited during start-up; see {self.log_file(name)}:\n"
                        + log_tail(self.log_file(name))
                    )
            if check():
                return
            time.sleep(0.5)
        raise CertManagerError(
            f"cert-manager did not issue and inject a test certificate within {timeout:.0f}s; "
            f"see {self.log_file('cert-manager-controller')} and "
            f"{self.log_file('cert-manager-cainjector')}:\n"
            + log_tail(self.log_file("cert-manager-controller"))
        )


def _as_list(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def stop_recorded(plane: ControlPlane, *, report: Reporter | None = None) -> bool:
    """Stop the cert-manager recorded for `plane`'s state directory; whether there was one."""
    manager = CertManager.load(plane, report=report)
    if manager is None:
        return False
    with contextlib.suppress(OSError):
        manager.stop()
    return True
