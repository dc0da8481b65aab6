"""`moorage-registry-api` that cannot start says which setting to change, exits, and never
hangs."""

from __future__ import annotations

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

pytestmark = pytest.mark.e2e

API = "moorage_registryserver"


def test_a_port_in_use_names_the_listen_settings(tmp_path: Path) -> None:
    with port_in_use() as port:
        outcome = run_command(
            API, "--data-dir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)
        )
    assert_clean_failure(
        outcome,
        code=1,
        setting="REGISTRY_API_HOST / --host and REGISTRY_API_PORT / --port",
        problem=f"127.0.0.1:{port} is in use",
    )


def test_a_missing_data_directory_names_data_dir(tmp_path: Path) -> None:
    outcome = run_command(
        API, "--data-dir", str(tmp_path / "absent"), "--host", "127.0.0.1", "--port", "0"
    )
    assert_clean_failure(
        outcome,
        code=2,
        setting="REGISTRY_DATA_DIR / --data-dir",
        problem=f"{tmp_path / 'absent'} is not a directory",
    )


def _serving_args(data_dir: Path) -> list[str]:
    """Arguments that start the API on a free port with a two-second drain."""
    return [
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--drain-timeout",
        "2s",
    ]


def test_sigterm_while_serving_exits_within_the_drain_timeout(tmp_path: Path) -> None:
    outcome, waited = terminate_when(API, *_serving_args(tmp_path), ready="registry_api_started")
    assert_clean_stop(outcome, waited, within=2.0)


def test_sigterm_during_startup_exits_within_the_drain_timeout(tmp_path: Path) -> None:
    # Before the loop runs, SIGTERM's default action ends the process; after, our handler does.
    outcome, waited = terminate_when(API, *_serving_args(tmp_path), ready="")
    assert_clean_stop(outcome, waited, within=2.0, codes=(0, -signal.SIGTERM))
