"""`moorage-webhook` that cannot start says which setting to change, exits, and never hangs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from testkit.commands import (
    assert_clean_failure,
    assert_clean_stop,
    free_port,
    port_in_use,
    run_command,
    terminate_when,
)

from moorage_core.tls import build_self_signed, write_pair

pytestmark = pytest.mark.e2e

WEBHOOK = "moorage_webhook"


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    write_pair(build_self_signed(hosts=["127.0.0.1"]), tmp_path)
    return tmp_path


def _args(cert_dir: Path, *, bind: str | None = None, metrics: str | None = None) -> list[str]:
    return [
        "--cert-dir",
        str(cert_dir),
        "--bind",
        bind or f"127.0.0.1:{free_port()}",
        "--metrics-bind",
        metrics or f"127.0.0.1:{free_port()}",
        # No cluster here: MCPTenants are not followed (their absence only refuses more).
        "--mcptenants",
        "false",
    ]


def test_an_admission_port_in_use_names_bind(cert_dir: Path) -> None:
    with port_in_use() as port:
        outcome = run_command(WEBHOOK, *_args(cert_dir, bind=f"127.0.0.1:{port}"))
    assert_clean_failure(
        outcome, code=1, setting="BIND / --bind", problem=f"127.0.0.1:{port} is in use"
    )


def test_a_metrics_port_in_use_names_metrics_bind(cert_dir: Path) -> None:
    with port_in_use() as port:
        outcome = run_command(WEBHOOK, *_args(cert_dir, metrics=f"127.0.0.1:{port}"))
    assert_clean_failure(
        outcome,
        code=1,
        setting="METRICS_BIND / --metrics-bind",
        problem=f"127.0.0.1:{port} is in use",
    )


def test_an_address_not_of_this_machine_names_bind(cert_dir: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine.
    outcome = run_command(WEBHOOK, *_args(cert_dir, bind="192.0.2.1:9443"))
    assert_clean_failure(
        outcome,
        code=2,
        setting="BIND / --bind",
        problem="192.0.2.1 is not an address of this machine",
    )


def test_a_missing_certificate_directory_names_cert_dir(tmp_path: Path) -> None:
    outcome = run_command(WEBHOOK, *_args(tmp_path / "absent"))
    assert_clean_failure(
        outcome, code=2, setting="CERT_DIR (--cert-dir)", problem="is not a directory"
    )


def test_a_directory_without_a_key_names_cert_dir(cert_dir: Path) -> None:
    (cert_dir / "tls.key").unlink()
    outcome = run_command(WEBHOOK, *_args(cert_dir))
    assert_clean_failure(
        outcome, code=2, setting="CERT_DIR / --cert-dir", problem=f"{cert_dir} has no tls.key"
    )


def test_a_certificate_and_a_foreign_key_name_cert_dir(cert_dir: Path) -> None:
    (cert_dir / "tls.key").write_bytes(build_self_signed(hosts=["127.0.0.1"]).key_pem)
    outcome = run_command(WEBHOOK, *_args(cert_dir))
    assert_clean_failure(
        outcome,
        code=2,
        setting="CERT_DIR / --cert-dir",
        problem="tls.crt and tls.key in",
    )
    assert "do not belong together" in outcome.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_names_cert_dir(cert_dir: Path) -> None:
    (cert_dir / "tls.key").chmod(0)
    outcome = run_command(WEBHOOK, *_args(cert_dir))
    assert_clean_failure(outcome, code=2, setting="CERT_DIR / --cert-dir", problem="cannot be read")


def test_sigterm_while_serving_exits_within_the_drain_timeout(cert_dir: Path) -> None:
    outcome, waited = terminate_when(
        WEBHOOK, *_args(cert_dir), "--drain-timeout", "2s", ready="webhook_started"
    )
    assert_clean_stop(outcome, waited, within=2.0)


def test_sigterm_during_startup_exits_within_the_drain_timeout(cert_dir: Path) -> None:
    # Before the loop runs, SIGTERM's default action ends the process; after, our handler does.
    outcome, waited = terminate_when(WEBHOOK, *_args(cert_dir), "--drain-timeout", "2s", ready="")
    assert_clean_stop(outcome, waited, within=2.0, codes=(0, -signal.SIGTERM))


def test_without_credentials_for_mcptenants_it_names_kubeconfig(
    cert_dir: Path, tmp_path: Path
) -> None:
    absent = tmp_path / "no-kubeconfig"
    args = [a for a in _args(cert_dir) if a not in ("--mcptenants", "false")]
    outcome = run_command(WEBHOOK, *args, "--kubeconfig", str(absent))
    assert_clean_failure(
        outcome,
        code=2,
        setting="KUBECONFIG / --kubeconfig",
        problem="cannot load Kubernetes credentials",
    )
