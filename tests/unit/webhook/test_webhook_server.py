"""The webhook served over TLS on loopback: both ports, certificate rotation, settings, command."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from testkit.waiting import eventually
from webhook_samples import mcpserver, review, review_bytes

from moorage_core.settings import SettingError
from moorage_core.tls import CertificatePair, build_ca, build_leaf, write_pair
from moorage_webhook.__main__ import main
from moorage_webhook.server import WebhookServer
from moorage_webhook.settings import WebhookSettings


def _serving_pair(ca: CertificatePair) -> CertificatePair:
    return build_leaf(ca, common_name="moorage-webhook", hosts=["127.0.0.1", "localhost"])


def _client_context(ca: CertificatePair) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.cert_pem.decode())


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[WebhookServer, CertificatePair, Path]]:
    ca = build_ca(common_name="test-ca")
    write_pair(_serving_pair(ca), tmp_path)
    settings = WebhookSettings(
        cert_dir=tmp_path,
        bind=("127.0.0.1", 0),
        metrics_bind=("127.0.0.1", 0),
        tls_poll_interval=0.05,
    )
    server = WebhookServer(settings)
    await server.start()
    try:
        yield server, ca, tmp_path
    finally:
        await server.stop()


async def _post(port: int, ca: CertificatePair) -> int:
    connector = aiohttp.TCPConnector(ssl=_client_context(ca), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            f"https://127.0.0.1:{port}/validate/mcpserver",
            data=review_bytes(review(mcpserver())),
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        return resp.status


async def test_serves_admission_and_metrics_over_tls(
    served: tuple[WebhookServer, CertificatePair, Path],
) -> None:
    server, ca, _ = served
    assert await _post(server.port, ca) == 200
    connector = aiohttp.TCPConnector(ssl=_client_context(ca))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"https://127.0.0.1:{server.metrics_port}/metrics") as resp:
            text = await resp.text()
        assert 'moorage_webhook_requests_total{allowed="true",code="200",kind="MCPServer"' in text
        for port in (server.port, server.metrics_port):
            async with session.get(f"https://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_refuses_tls_older_than_1_2(
    served: tuple[WebhookServer, CertificatePair, Path],
) -> None:
    server, ca, _ = served
    assert server.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2

    async def handshake(version: ssl.TLSVersion) -> None:
        context = _client_context(ca)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = version
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
            session.get(f"https://127.0.0.1:{server.port}/healthz") as resp,
        ):
            assert resp.status == 200

    await handshake(ssl.TLSVersion.TLSv1_2)
    with pytest.raises(aiohttp.ClientError):
        await handshake(ssl.TLSVersion.TLSv1_1)


async def test_rotated_certificate_files_are_served_without_a_restart(
    served: tuple[WebhookServer, CertificatePair, Path],
) -> None:
    server, old_ca, cert_dir = served
    new_ca = build_ca(common_name="rotated-ca")
    write_pair(_serving_pair(new_ca), cert_dir)

    async def trusted_by_new_ca() -> bool:
        try:
            return await _post(server.port, new_ca) == 200
        except aiohttp.ClientError:
            return False

    await eventually(trusted_by_new_ca, timeout=10, message="new certificate not served")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _post(server.port, old_ca)


async def test_certificates_are_reloaded_until_both_ports_have_drained(
    served: tuple[WebhookServer, CertificatePair, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _, cert_dir = served
    drained = asyncio.Event()
    stop_monitoring = server.monitoring.stop

    async def slow_monitoring_stop() -> None:
        await drained.wait()
        await stop_monitoring()

    monkeypatch.setattr(server.monitoring, "stop", slow_monitoring_stop)
    stopping = asyncio.create_task(server.stop())
    try:
        # The admission port has stopped; the metrics port is still draining.
        await eventually(lambda: server.admission._runner is None, timeout=10)
        reloads = server.tls.reloads
        write_pair(_serving_pair(build_ca(common_name="rotated-ca")), cert_dir)
        await eventually(
            lambda: server.tls.reloads > reloads,
            timeout=10,
            message="the certificate was not reloaded while the metrics port drained",
        )
    finally:
        drained.set()
        await stopping


async def test_readiness_fails_once_the_certificate_has_expired(
    served: tuple[WebhookServer, CertificatePair, Path],
) -> None:
    server, ca, cert_dir = served
    await server.check_certificate()
    # Valid for zero days: its notAfter is the moment it was made, already past when checked.
    write_pair(build_leaf(ca, common_name="x", hosts=["127.0.0.1"], days=0), cert_dir)
    with pytest.raises(RuntimeError, match="certificate expired"):
        await server.check_certificate()


# -- settings and the command -----------------------------------------------------------------


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    settings = WebhookSettings.from_env_and_args(
        ["--cert-dir", str(tmp_path), "--bind", "127.0.0.1:9000"],
        environ={"BIND": ":1", "METRICS_BIND": ":9100", "LOG_LEVEL": "DEBUG", "CERT_DIR": "/no"},
    )
    assert settings.cert_dir == tmp_path
    assert settings.bind == ("127.0.0.1", 9000)
    assert settings.metrics_bind == ("0.0.0.0", 9100)
    assert settings.log_level == "debug"


def test_defaults_match_the_spec() -> None:
    settings = WebhookSettings.from_env_and_args([], environ={})
    assert settings.bind == ("0.0.0.0", 9443)
    assert settings.metrics_bind == ("0.0.0.0", 8443)
    assert settings.cert_dir is None


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--cert-dir", "/does/not/exist"], "CERT_DIR (--cert-dir)"),
        (["--bind", "nope"], "BIND (--bind)"),
        (["--max-request-bytes", "10"], "out of range"),
        (["--tls-poll-interval", "0s"], "longer than zero"),
        (["--log-format", "xml"], "LOG_FORMAT"),
    ],
)
def test_bad_settings_name_the_flag(argv: list[str], fragment: str) -> None:
    with pytest.raises(SettingError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        WebhookSettings.from_env_and_args(argv, environ={})


def test_the_command_refuses_to_start_without_a_certificate_directory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERT_DIR", raising=False)
    assert main([]) == 2
    assert "--cert-dir (CERT_DIR) is required" in capsys.readouterr().err
    assert main(["--bind", "x"]) == 2
