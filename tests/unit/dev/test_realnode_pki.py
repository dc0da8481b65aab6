"""A real node's credentials: the names the apiserver's Node authorizer and the pods expect."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from moorage_dev.pki import write_node_pki, write_pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> set[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in names.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_the_apiserver_certificate_names_the_bridge_and_the_service_addresses(
    tmp_path: Path,
) -> None:
    pki = write_pki(tmp_path / "pki", extra_apiserver_hosts=["10.250.0.1"])
    sans = _sans(_cert(pki.cert("apiserver")))
    assert {"10.250.0.1", "10.96.0.1", "127.0.0.1", "kubernetes.default.svc"} <= sans
    assert "kubernetes.default.svc.cluster.local" in sans


def test_the_node_gets_a_node_identity_a_serving_certificate_and_kubeconfigs(
    tmp_path: Path,
) -> None:
    pki = write_pki(tmp_path / "pki")
    paths = write_node_pki(
        pki, node_name="real-node-0", node_ip="10.250.0.1", server="https://127.0.0.1:6443"
    )
    client = _cert(pki.cert("kubelet"))
    assert _subject(client, NameOID.COMMON_NAME) == ["system:node:real-node-0"]
    assert _subject(client, NameOID.ORGANIZATION_NAME) == ["system:nodes"]
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    serving = _cert(pki.cert("kubelet-serving"))
    addresses = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.250.0.1") in addresses.get_values_for_type(x509.IPAddress)
    proxy = _cert(pki.cert("kube-proxy"))
    assert _subject(proxy, NameOID.COMMON_NAME) == ["system:kube-proxy"]
    ca = _cert(pki.ca_cert)
    for cert in (client, serving, proxy):
        assert cert.issuer == ca.subject
    assert set(paths) == {"kubelet", "kube-proxy"}
    config = yaml.safe_load(paths["kubelet"].read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["user"]["client-certificate"] == str(pki.cert("kubelet"))
    assert paths["kubelet"].stat().st_mode & 0o077 == 0


def test_keys_and_kubeconfigs_are_private_even_when_written_over_open_files(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "pki"
    directory.mkdir()
    (directory / "admin.key").write_bytes(b"old")
    (directory / "admin.key").chmod(0o644)
    pki = write_pki(directory)
    kubeconfigs = write_node_pki(pki, node_name="n", node_ip="10.250.0.1", server="https://x")
    private = [pki.key("admin"), pki.key("ca"), pki.sa_key, *kubeconfigs.values()]
    assert {path.stat().st_mode & 0o777 for path in private} == {0o600}
    assert pki.ca_cert.stat().st_mode & 0o777 == 0o644
