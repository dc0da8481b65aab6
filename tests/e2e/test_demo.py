"""The README's demo command, end to end: it completes, prints the tool result and cleans up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moorage_dev.cluster import ControlPlane

pytestmark = pytest.mark.e2e


def test_local_demo_runs_end_to_end_and_stops_what_it_started(tmp_path: Path) -> None:
    env = {**os.environ, "MOORAGE_STATE_DIR": str(tmp_path / "state")}
    env.pop("KUBECONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "moorage_dev", "demo", "--local"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "running the local demo (--local)" in out
    for step in range(1, 8):
        assert f"[{step}/7]" in out
    assert "tool now:" in out
    assert '"timezone": "UTC"' in out
    assert "datetime" in out
    status_lines = [line for line in out.splitlines() if line.startswith("time ")]
    assert status_lines, out
    assert status_lines[0].split()[1] == "Running"
    assert "control plane stopped" in out
    plane = ControlPlane.load(tmp_path / "state")
    assert plane is not None
    assert not any(plane.running().values())


def test_demo_prints_install_instructions_for_a_real_cluster(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n"
        "    server: https://prod.example.com:6443\n"
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MOORAGE_STATE_DIR": str(tmp_path / "s")}
    proc = subprocess.run(
        [sys.executable, "-m", "moorage_dev", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert "kubectl apply --server-side -k" in proc.stdout
    assert "deploy/overlays/cluster" in proc.stdout
    assert not (tmp_path / "s").exists()
