"""Certificates and the reloading TLS context."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from cryptography import x509

from moorage_core.tls import ReloadingTLS, build_ca, build_leaf, build_self_signed, write_pair


def _serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def test_leaf_is_signed_by_its_ca_and_names_its_hosts() -> None:
    ca = build_ca()
    leaf = build_leaf(ca, common_name="svc", hosts=["127.0.0.1", "svc.ns.svc"])
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_written_key_is_private(tmp_path: Path) -> None:
    cert, key = write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_context_requires_tls_1_2(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_reloads_only_when_the_files_change(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert tls.reload_if_changed() is False
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    assert tls.reload_if_changed() is True
    assert tls.reloads == 1
    assert tls.reload_if_changed() is False


def test_a_broken_pair_keeps_the_old_certificate(tmp_path: Path) -> None:
    write_pair(build_self_signed(hosts=["localhost"]), tmp_path)
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "tls.key").write_bytes(b"not a key, and a different size")
    assert tls.reload_if_changed() is False
    assert tls.reloads == 0


async def test_served_certificate_changes_after_rotation(tmp_path: Path) -> None:
    first = build_self_signed(hosts=["127.0.0.1"])
    write_pair(first, tmp_path)
    tls = ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key", poll_interval=0.05)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE

    async def served_serial() -> int:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return x509.load_der_x509_certificate(der).serial_number

    tls.start()
    try:
        assert await served_serial() == _serial(first.cert_pem)
        second = build_self_signed(hosts=["127.0.0.1"])
        write_pair(second, tmp_path)
        for _ in range(100):
            if await served_serial() == _serial(second.cert_pem):
                break
            await asyncio.sleep(0.05)
        assert await served_serial() == _serial(second.cert_pem)
    finally:
        await tls.stop()
        server.close()
        await server.wait_closed()
