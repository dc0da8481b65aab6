"""The README's demo command on the real node: everything in pods, a tool called through the
Service. It reuses the suite's running real-node cluster (as it reuses one `cluster up
--real-node` started), so it installs over what the earlier steps left and removes only its own
namespace at the end."""

from __future__ import annotations

import os
import subprocess
import sys

from realkit import items

from moorage_dev.cluster import ControlPlane


def test_demo_runs_in_pods_and_calls_a_tool_through_the_service(
    plane: ControlPlane, images: dict[str, str]
) -> None:
    env = {**os.environ, "MOORAGE_STATE_DIR": str(plane.state_dir)}
    env.pop("KUBECONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "moorage_dev", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "cannot run a real node" not in out
    for step in range(1, 8):
        assert f"[{step}/7]" in out
    assert "reusing the control plane" in out
    assert "MCP endpoint http://10.96." in out
    assert "call now(timezone=UTC) ->" in out
    assert '"timezone": "UTC"' in out
    status_lines = [line for line in out.splitlines() if line.startswith("time ")]
    assert status_lines, out
    assert status_lines[0].split()[1] == "Running"
    assert "demo namespace removed" in out
    # Its namespace goes; the cluster it did not start keeps running.
    assert plane.is_healthy()
    left = [n for n in items(plane, "namespaces") if n["metadata"]["name"] == "moorage-demo"]
    assert all(n["status"]["phase"] == "Terminating" for n in left)
