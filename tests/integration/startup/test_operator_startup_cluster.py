"""`moorage-operator` against a real apiserver: failures after the apiserver answered (the
metrics address, the metrics certificate, refused credentials) name their setting and exit, and
SIGTERM once it runs exits within the drain timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.commands import assert_clean_failure, port_in_use, run_command, terminate_when

from moorage_core.tls import build_self_signed, write_pair
from moorage_dev.cluster import ControlPlane
from moorage_operator.__main__ import DRAIN_TIMEOUT

OPERATOR = "moorage_operator"


def _env(plane: ControlPlane, **extra: str) -> dict[str, str]:
    return {
        "KUBECONFIG": str(plane.kubeconfig),
        "LEADER_ELECTION": "false",
        "METRICS_BIND": "127.0.0.1:0",
        "STARTUP_TIMEOUT": "20s",
        **extra,
    }


def test_a_metrics_port_in_use_names_metrics_bind(control_plane: ControlPlane) -> None:
    with port_in_use() as port:
        outcome = run_command(
            OPERATOR, env=_env(control_plane, METRICS_BIND=f"127.0.0.1:{port}"), timeout=30
        )
    assert_clean_failure(
        outcome,
        code=1,
        setting="METRICS_BIND / --metrics-bind",
        problem=f"127.0.0.1:{port} is in use",
    )


def test_a_mismatched_metrics_certificate_names_metrics_cert_dir(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    write_pair(build_self_signed(hosts=["127.0.0.1"]), tmp_path)
    (tmp_path / "tls.key").write_bytes(build_self_signed(hosts=["127.0.0.1"]).key_pem)
    outcome = run_command(
        OPERATOR, env=_env(control_plane, METRICS_CERT_DIR=str(tmp_path)), timeout=30
    )
    assert_clean_failure(
        outcome,
        code=2,
        setting="METRICS_CERT_DIR / --metrics-cert-dir",
        problem="do not belong together",
    )


def test_refused_credentials_name_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{control_plane.server}', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: not-a-token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    outcome = run_command(OPERATOR, env=_env(control_plane, KUBECONFIG=str(kubeconfig)), timeout=30)
    assert_clean_failure(
        outcome,
        code=1,
        setting="KUBECONFIG / --kubeconfig",
        problem="refused the credentials",
    )


@pytest.mark.usefixtures("crds")
def test_sigterm_once_running_exits_within_the_drain_timeout(
    control_plane: ControlPlane,
) -> None:
    outcome, waited = terminate_when(
        OPERATOR, env=_env(control_plane), ready="https_server_started", limit=30
    )
    assert outcome.code == 0, outcome.output
    assert waited < DRAIN_TIMEOUT
    assert "Traceback" not in outcome.output
    assert "operator_exited" in outcome.output
