"""A server's self-signed certificate is built by a child process; its own memory never holds
the certificate library."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from moorage_core.tls import CERT_FILE, KEY_FILE, write_self_signed_apart


def test_the_child_writes_a_pair_for_the_hosts(tmp_path: Path) -> None:
    write_self_signed_apart(tmp_path, hosts=["127.0.0.1", "op.example"], common_name="op")
    cert = x509.load_pem_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["op.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
        str(tmp_path / CERT_FILE), str(tmp_path / KEY_FILE)
    )


def test_a_failing_child_is_an_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="self-signed certificate failed"):
        write_self_signed_apart(blocker / "tls", hosts=["localhost"], common_name="op")


def test_serving_self_signed_leaves_the_library_unloaded() -> None:
    code = (
        "import sys\n"
        "from moorage_core.tls import ReloadingTLS\n"
        "import moorage_operator.__main__, moorage_operator.wiring\n"
        "tls = ReloadingTLS.from_dir(None, hosts=['localhost'], common_name='probe')\n"
        "assert tls.cert_file.exists()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
