"""Certificates, keys and kubeconfigs for the local control plane.

One CA signs the apiserver's serving certificate and a client certificate per component (admin in
`system:masters`, the controller manager, the scheduler, kwok, and the apiserver's client to the
"kubelet" that kwok serves). Service-account tokens are signed with an RSA key of their own.
Everything is written under the cluster's state directory.

A real node adds its own credentials (`write_node_pki`): kubelet's client certificate as
`system:node:<name>` in `system:nodes` (what the Node authorizer expects), kubelet's serving
certificate for the node's address, and kube-proxy's client certificate as `system:kube-proxy`
(bound to `system:node-proxier` by the default RBAC).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from moorage_core.tls import CertificatePair, build_ca, build_leaf

APISERVER_HOSTS = [
    "127.0.0.1",
    "localhost",
    "10.96.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]

# name -> (common name, organization)
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("moorage-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kwok": ("kwok-controller", "system:masters"),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of everything `write_pki` produced."""

    directory: Path

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    @property
    def ca_cert(self) -> Path:
        return self.cert("ca")

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def kubeconfig(self, name: str) -> Path:
        return self.directory.parent / f"{name}.kubeconfig"


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write `data` with its final mode from the start: a private file is never readable by
    others, not even between its creation and a chmod (a file already there is narrowed first)."""
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(data)


def _write_pair(pki: Pki, name: str, pair: CertificatePair) -> None:
    _write(pki.cert(name), pair.cert_pem)
    _write(pki.key(name), pair.key_pem, private=True)


def write_pki(directory: Path, *, extra_apiserver_hosts: Sequence[str] = ()) -> Pki:
    """Create the CA, serving and client certificates, and the service-account key pair.

    `extra_apiserver_hosts` go into the apiserver's certificate beside APISERVER_HOSTS (a real
    node's pods reach it through the bridge address).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca = build_ca(common_name="moorage-local-ca", days=30)
    _write_pair(pki, "ca", ca)
    hosts = [*APISERVER_HOSTS, *(h for h in extra_apiserver_hosts if h not in APISERVER_HOSTS)]
    _write_pair(
        pki,
        "apiserver",
        build_leaf(ca, common_name="kube-apiserver", hosts=hosts, days=30),
    )
    for name, (common_name, organization) in CLIENTS.items():
        _write_pair(
            pki,
            name,
            build_leaf(
                ca,
                common_name=common_name,
                hosts=["127.0.0.1", "localhost"] if name == "kwok" else [],
                client=True,
                organization=organization,
                days=30,
            ),
        )
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(
        pki.sa_key,
        sa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    _write(
        pki.sa_pub,
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def build_kubeconfig(
    *, server: str, ca_file: Path, cert_file: Path, key_file: Path, user: str
) -> str:
    """A kubeconfig with one cluster, one user (client certificate) and one current context."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "moorage-local",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(cert_file), "client-key": str(key_file)},
            }
        ],
        "contexts": [
            {"name": "moorage-local", "context": {"cluster": "moorage-local", "user": user}}
        ],
        "current-context": "moorage-local",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfigs(pki: Pki, *, server: str) -> dict[str, Path]:
    """One kubeconfig per client certificate, next to the pki directory."""
    return _write_kubeconfigs(pki, CLIENTS, server=server)


def _write_kubeconfigs(pki: Pki, names: Iterable[str], *, server: str) -> dict[str, Path]:
    """A kubeconfig for each of `names`, with that name's client certificate; their paths."""
    paths: dict[str, Path] = {}
    for name in names:
        path = pki.kubeconfig(name)
        text = build_kubeconfig(
            server=server,
            ca_file=pki.ca_cert,
            cert_file=pki.cert(name),
            key_file=pki.key(name),
            user=name,
        )
        _write(path, text.encode(), private=True)
        paths[name] = path
    return paths


def node_client_identity(node_name: str) -> tuple[str, str]:
    """The (common name, organization) the Node authorizer and NodeRestriction expect."""
    return f"system:node:{node_name}", "system:nodes"


def write_node_pki(pki: Pki, *, node_name: str, node_ip: str, server: str) -> dict[str, Path]:
    """A real node's certificates and its two kubeconfigs (`kubelet`, `kube-proxy`); their paths.

    Signed by the CA `write_pki` made; `kubelet-serving` is the kubelet's serving pair.
    """
    ca = CertificatePair(pki.ca_cert.read_bytes(), pki.key("ca").read_bytes())
    common_name, organization = node_client_identity(node_name)
    _write_pair(
        pki,
        "kubelet",
        build_leaf(
            ca,
            common_name=common_name,
            hosts=[],
            client=True,
            organization=organization,
            days=30,
        ),
    )
    _write_pair(
        pki,
        "kubelet-serving",
        build_leaf(ca, common_name=common_name, hosts=[node_ip, node_name], days=30),
    )
    _write_pair(
        pki,
        "kube-proxy",
        build_leaf(ca, common_name="system:kube-proxy", hosts=[], client=True, days=30),
    )
    return _write_kubeconfigs(pki, ("kubelet", "kube-proxy"), server=server)
