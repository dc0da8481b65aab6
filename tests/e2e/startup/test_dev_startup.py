"""`moorage-dev` failures are one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.commands import run_command

from moorage_dev.binaries import ALL_BINARIES, env_var_for

pytestmark = pytest.mark.e2e

DEV = "moorage_dev"


def test_demo_with_a_kubeconfig_that_does_not_exist_names_kubeconfig(tmp_path: Path) -> None:
    outcome = run_command(DEV, "demo", env={"KUBECONFIG": str(tmp_path / "absent")})
    assert outcome.code == 2, outcome.output
    assert "Traceback" not in outcome.output
    assert outcome.stderr.strip().splitlines() == [
        f"moorage-dev: KUBECONFIG: {tmp_path / 'absent'} does not exist; unset it to run the "
        "demo on the local control plane, or point it at your cluster's kubeconfig"
    ]


def test_a_state_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    # Stand-ins for the binaries, so that nothing is built and nothing starts.
    stand_ins = {env_var_for(name): "/bin/true" for name in ALL_BINARIES}
    outcome = run_command(
        DEV, "--state-dir", str(blocker / "state"), "cluster", "up", env=stand_ins
    )
    assert outcome.code == 1, outcome.output
    assert "Traceback" not in outcome.output
    assert outcome.stderr.strip().splitlines()[-1] == (
        f"moorage-dev: Not a directory: {blocker / 'state'}"
    )
