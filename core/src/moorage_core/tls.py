"""TLS for our HTTPS servers: self-signed certificates, and contexts that follow rotated files.

cert-manager rewrites `tls.crt`/`tls.key` in a mounted Secret when it renews a certificate. A
`ReloadingTLS` keeps one `ssl.SSLContext` for the server socket and loads the new pair into it
when the files change, so new handshakes get the new certificate while open connections go on.

The certificate library (`cryptography`, about 8 MiB resident once loaded) is imported only by
the functions that build certificates. A server without a mounted pair builds its self-signed
one in a short-lived child process (`moorage_core.selfsigned`), so the library never stays in the
memory of a long-running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from moorage_core.supervising import TaskSupervisor

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

log = structlog.get_logger(__name__)

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


@dataclass(frozen=True, slots=True)
class CertificatePair:
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def build_ca(*, common_name: str = "moorage-ca", days: int = 365) -> CertificatePair:
    """A new self-signed CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificatePair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def build_leaf(
    ca: CertificatePair,
    *,
    common_name: str,
    hosts: list[str],
    client: bool = False,
    organization: str | None = None,
    days: int = 365,
) -> CertificatePair:
    """A certificate signed by `ca`, for serving `hosts` (and client auth when `client`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertificatePair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def build_self_signed(*, hosts: list[str], common_name: str = "moorage") -> CertificatePair:
    """A serving certificate signed by a throw-away CA (for when none is mounted)."""
    return build_leaf(
        build_ca(common_name=f"{common_name}-ca"), common_name=common_name, hosts=hosts
    )


def write_pair(pair: CertificatePair, directory: Path) -> tuple[Path, Path]:
    """Write `tls.crt`/`tls.key` into `directory` (key mode 0600); return their paths.

    Written to temporary names and renamed, so a reader never sees half a file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    for path, data, mode in ((key_path, pair.key_pem, 0o600), (cert_path, pair.cert_pem, 0o644)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(path)
    return cert_path, key_path


def write_self_signed_apart(directory: Path, *, hosts: list[str], common_name: str) -> None:
    """`write_pair(build_self_signed(...), directory)` run by a child Python process."""
    argv = [sys.executable, "-m", "moorage_core.selfsigned", str(directory), common_name, *hosts]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # Raised as OSError: the callers report a pair they cannot write or read as such.
        raise OSError(f"building a self-signed certificate failed: {done.stderr.strip()[-500:]}")


def _fingerprint(paths: tuple[Path, Path]) -> tuple[float, ...] | None:
    try:
        return tuple(p.stat().st_mtime_ns for p in paths) + tuple(p.stat().st_size for p in paths)
    except FileNotFoundError:
        return None


class ReloadingTLS:
    """A server `SSLContext` (TLS 1.2+) that reloads its certificate when the files change.

    Kubernetes updates Secret volumes by swapping a symlink, so we compare stat results of the
    resolved files rather than rely on inotify.
    """

    def __init__(self, cert_file: Path, key_file: Path, *, poll_interval: float = 2.0) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.poll_interval = poll_interval
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.reloads = 0
        self._seen = _fingerprint((cert_file, key_file))
        self.context.load_cert_chain(str(cert_file), str(key_file))
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_dir(
        cls,
        cert_dir: Path | None,
        *,
        hosts: list[str],
        common_name: str,
        poll_interval: float = 2.0,
    ) -> ReloadingTLS:
        """Serve the pair in `cert_dir`, or a self-signed pair when `cert_dir` is None."""
        if cert_dir is None:
            import tempfile

            cert_dir = Path(tempfile.mkdtemp(prefix=f"{common_name}-tls-"))
            write_self_signed_apart(cert_dir, hosts=hosts, common_name=common_name)
            log.info("tls_self_signed", directory=str(cert_dir))
        return cls(cert_dir / CERT_FILE, cert_dir / KEY_FILE, poll_interval=poll_interval)

    def reload_if_changed(self) -> bool:
        """Load the pair again if the files changed; True when a new pair was loaded.

        A half-written or mismatched pair keeps the old certificate and is tried again later.
        """
        seen = _fingerprint((self.cert_file, self.key_file))
        if seen is None or seen == self._seen:
            return False
        try:
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ssl.SSLError, OSError) as exc:
            log.warning("tls_reload_failed", error=str(exc), cert_file=str(self.cert_file))
            return False
        self._seen = seen
        self.reloads += 1
        log.info("tls_reloaded", cert_file=str(self.cert_file), reloads=self.reloads)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.reload_if_changed()

    def start(self, supervisor: TaskSupervisor | None = None) -> None:
        """Follow the files; under `supervisor` when given, so that a loop that dies is noticed."""
        if self._task is None:
            if supervisor is not None:
                self._task = supervisor.spawn("tls-reload", self._watch())
            else:
                self._task = asyncio.create_task(self._watch(), name="tls-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
