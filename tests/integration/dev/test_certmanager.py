"""cert-manager, for real, issuing our webhook's certificate on the local control plane.

The controller and cainjector built from cert-manager's Go module run against the session's
control plane; the Issuer, Certificate and ValidatingWebhookConfiguration are applied exactly as
`deploy/base/webhook` declares them. The webhook configuration is fail-closed and nothing serves
it here, so while it exists writes of our kinds are refused: each test deletes it in a `finally`.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from testkit.waiting import eventually_sync

from moorage_dev.certmanager import NAMESPACE, CertManager
from moorage_dev.certmanager_binaries import ensure_cert_manager_binaries
from moorage_dev.cluster import ControlPlane
from moorage_dev.processes import pid_alive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
WEBHOOK = REPO / "deploy" / "base" / "webhook"
SYSTEM = "moorage-system"
Obj = dict[str, Any]


def load(name: str) -> Obj:
    obj: Obj = yaml.safe_load((WEBHOOK / name).read_text())
    return obj


def exists(plane: ControlPlane, *args: str) -> bool:
    return plane.kubectl("get", *args, "-o", "name", check=False).returncode == 0


def gone(plane: ControlPlane, *args: str) -> bool:
    out = plane.kubectl("get", *args, "-o", "name", check=False)
    return out.returncode != 0 and "NotFound" in out.stderr


def get(plane: ControlPlane, *args: str) -> Obj:
    obj: Obj = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return obj


def condition(obj: Obj, kind: str) -> Obj | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return None


@pytest.fixture(scope="module")
def cert_manager(control_plane: ControlPlane) -> Iterator[CertManager]:
    """cert-manager's CRDs installed and its controller and cainjector running; the CRDs and
    namespaces this fixture created are deleted afterwards."""
    release = ensure_cert_manager_binaries(report=print)
    crds = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in release.crd_files]
    new_crds = [name for name in crds if not exists(control_plane, "crd", name)]
    new_namespaces = [n for n in (NAMESPACE, SYSTEM) if not exists(control_plane, "namespace", n)]
    manager = CertManager(control_plane, release=release, report=print)
    try:
        manager.start()
        yield manager
    finally:
        manager.stop()
        for name in new_namespaces:
            control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
        for name in new_crds:
            control_plane.kubectl("delete", "crd", name, "--ignore-not-found", check=False)
        for name in new_namespaces:
            # Later tests may create the same namespace: do not leave it Terminating.
            eventually_sync(
                functools.partial(gone, control_plane, "namespace", name),
                timeout=120,
                message=f"namespace {name} deleted",
            )


@pytest.fixture
def webhook_objects(control_plane: ControlPlane, cert_manager: CertManager) -> Iterator[None]:
    """deploy/base/webhook's Issuer, Certificate and ValidatingWebhookConfiguration, applied as
    declared and deleted afterwards (the fail-closed webhook first)."""
    if not exists(control_plane, "namespace", SYSTEM):
        control_plane.kubectl("create", "namespace", SYSTEM)
    try:
        for name in ("issuer.yaml", "certificate.yaml", "validatingwebhookconfiguration.yaml"):
            control_plane.kubectl("apply", "--server-side", "-f", str(WEBHOOK / name))
        yield
    finally:
        hook = load("validatingwebhookconfiguration.yaml")["metadata"]["name"]
        control_plane.kubectl("delete", "validatingwebhookconfiguration", hook, check=False)
        for kind, name in (
            ("certificate", load("certificate.yaml")["metadata"]["name"]),
            ("issuer", load("issuer.yaml")["metadata"]["name"]),
            ("secret", load("certificate.yaml")["spec"]["secretName"]),
        ):
            control_plane.kubectl("delete", kind, name, "-n", SYSTEM, check=False)


def service_dns_names() -> set[str]:
    service = load("service.yaml")["metadata"]
    base = f"{service['name']}.{service['namespace']}.svc"
    return {base, f"{base}.cluster.local"}


def issued(plane: ControlPlane) -> tuple[x509.Certificate, bytes]:
    """The certificate in the webhook's Secret and the Secret's ca.crt (PEM)."""
    secret_name = load("certificate.yaml")["spec"]["secretName"]
    data = get(plane, "secret", secret_name, "-n", SYSTEM)["data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])), base64.b64decode(
        data["ca.crt"]
    )


def injected_bundles(plane: ControlPlane) -> list[bytes]:
    hook = get(plane, "validatingwebhookconfiguration", "moorage-webhook")
    return [base64.b64decode(w["clientConfig"].get("caBundle", "")) for w in hook["webhooks"]]


def serials(bundle: bytes) -> set[int]:
    return {c.serial_number for c in x509.load_pem_x509_certificates(bundle)} if bundle else set()


def webhook_count() -> int:
    return len(load("validatingwebhookconfiguration.yaml")["webhooks"])


def is_ready(plane: ControlPlane) -> bool:
    certificate = get(plane, "certificate", "moorage-webhook", "-n", SYSTEM)
    ready = condition(certificate, "Ready")
    return ready is not None and ready["status"] == "True"


def assert_signed_by_bundle(certificate: x509.Certificate, bundle: bytes) -> None:
    """`certificate` verifies against one of the bundle's CAs, as the apiserver would check."""
    for ca in x509.load_pem_x509_certificates(bundle):
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return
    raise AssertionError(f"no CA in the bundle signed certificate {certificate.serial_number:x}")


@pytest.mark.usefixtures("webhook_objects")
def test_the_webhook_certificate_is_issued_injected_and_renewed(
    control_plane: ControlPlane,
) -> None:
    eventually_sync(
        functools.partial(is_ready, control_plane), timeout=60, message="Certificate Ready"
    )
    first, first_ca = issued(control_plane)
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == service_dns_names()
    assert_signed_by_bundle(first, first_ca)

    eventually_sync(
        lambda: injected_bundles(control_plane) == [first_ca] * webhook_count(),
        timeout=60,
        message="cainjector copies ca.crt into every webhook",
    )
    for bundle in injected_bundles(control_plane):
        assert_signed_by_bundle(first, bundle)

    # What `cmctl renew` does: mark the Certificate Issuing through the status subresource.
    certificate = get(control_plane, "certificate", "moorage-webhook", "-n", SYSTEM)
    assert condition(certificate, "Issuing") is None
    issuing = {
        "type": "Issuing",
        "status": "True",
        "reason": "ManuallyTriggered",
        "message": "Certificate re-issuance manually triggered",
        "observedGeneration": certificate["metadata"]["generation"],
    }
    control_plane.kubectl(
        "patch",
        "certificate",
        "moorage-webhook",
        "-n",
        SYSTEM,
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps([{"op": "add", "path": "/status/conditions/-", "value": issuing}]),
    )

    def renewed() -> tuple[x509.Certificate, bytes]:
        current, ca = issued(control_plane)
        assert current.serial_number != first.serial_number
        return current, ca

    second, second_ca = eventually_sync(renewed, timeout=60, message="a new certificate")
    sans = second.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == service_dns_names()
    # rotationPolicy: Always: the renewal brings a new key, not just a new signature.
    assert second.public_key() != first.public_key()
    assert_signed_by_bundle(second, second_ca)
    # cert-manager's cainjector merges (CAInjectorMerging, on by default): the new CA joins the
    # bundle and the old one stays until it expires, so a webhook still serving the old
    # certificate keeps being trusted during the rotation.
    both = {first.serial_number, second.serial_number}
    eventually_sync(
        lambda: [serials(b) for b in injected_bundles(control_plane)] == [both] * webhook_count(),
        timeout=60,
        message="cainjector adds the renewed ca.crt to every webhook's bundle",
    )
    for bundle in injected_bundles(control_plane):
        assert second_ca in bundle
        assert_signed_by_bundle(second, bundle)
        assert_signed_by_bundle(first, bundle)
    eventually_sync(
        lambda: (
            is_ready(control_plane)
            and condition(
                get(control_plane, "certificate", "moorage-webhook", "-n", SYSTEM), "Issuing"
            )
            is None
        ),
        timeout=60,
        message="Certificate Ready and no longer Issuing",
    )


def test_the_processes_run_from_the_cache_and_log_in_the_state_dir(
    control_plane: ControlPlane, cert_manager: CertManager
) -> None:
    assert cert_manager.running() == {
        "cert-manager-controller": True,
        "cert-manager-cainjector": True,
    }
    for name, binary in cert_manager.binaries.items():
        assert binary.is_relative_to(cert_manager.release.directory)
        assert cert_manager.log_file(name).is_relative_to(control_plane.state_dir)
        assert cert_manager.log_file(name).stat().st_size > 0
        version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert f"v{cert_manager.release.version}" in version
    loaded = CertManager.load(control_plane)
    assert loaded is not None
    assert loaded.pids == cert_manager.pids


def _dev(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOORAGE_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "moorage_dev", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_certmanager_up_down_and_cluster_down_stop_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    try:
        refused = _dev(state, "certmanager", "up")
        assert refused.returncode == 1
        assert "cluster up" in refused.stderr

        assert _dev(state, "cluster", "up").returncode == 0
        up = _dev(state, "certmanager", "up")
        assert up.returncode == 0, up.stderr
        assert "ready in" in up.stderr
        again = _dev(state, "certmanager", "up")
        assert "already running" in again.stderr
        status = _dev(state, "certmanager", "status")
        assert status.returncode == 0, status.stdout
        pids = json.loads((state / "cert-manager.json").read_text())["pids"]
        assert sorted(pids) == ["cert-manager-cainjector", "cert-manager-controller"]

        down = _dev(state, "certmanager", "down")
        assert down.returncode == 0
        assert not any(pid_alive(pid) for pid in pids.values())
        assert _dev(state, "certmanager", "status").returncode == 1

        assert _dev(state, "certmanager", "up").returncode == 0
        pids = json.loads((state / "cert-manager.json").read_text())["pids"]
        cluster_down = _dev(state, "cluster", "down")
        assert cluster_down.returncode == 0
        assert "cert-manager stopped" in cluster_down.stderr
        assert not any(pid_alive(pid) for pid in pids.values())
    finally:
        _dev(state, "cluster", "down")
