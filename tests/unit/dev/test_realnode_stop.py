"""Stopping a real node: only the holder of the machine's claim undoes the machine-wide parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_dev import realnode
from moorage_dev.realnode import RealNode
from moorage_dev.realnode_host import IP_FORWARD_SYSCTL, claim_machine, claim_owner, release_machine

MACHINE_WIDE = (
    "kill_pod_processes",
    "remove_iptables_rules",
    "delete_bridge",
    "restore_sysctls",
    "remove_pod_cgroups",
    "remove_host_files",
)


@pytest.fixture
def machine_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The machine-wide steps stop() ran, in order; the claim lives in a folder of the test."""
    claims = tmp_path / "claims"
    ran: list[str] = []
    for name in MACHINE_WIDE:
        monkeypatch.setattr(realnode, name, lambda *_a, name=name, **_k: ran.append(name))
    monkeypatch.setattr(realnode, "unmount_all_under", lambda _root: [])
    monkeypatch.setattr(realnode, "claim_owner", lambda: claim_owner(claims))
    monkeypatch.setattr(
        realnode, "release_machine", lambda state_dir: release_machine(state_dir, directory=claims)
    )
    claim_machine(tmp_path / "owner", is_live=lambda _p: False, directory=claims)
    return ran


def _node(state_dir: Path) -> RealNode:
    node = RealNode(state_dir, service_cidr="10.96.0.0/16")
    node.saved_sysctls = {IP_FORWARD_SYSCTL: "0"}
    node.created_dirs = ["/var/lib/kubelet"]
    return node


def test_a_second_stop_runs_no_machine_wide_step(machine_steps: list[str], tmp_path: Path) -> None:
    node = _node(tmp_path / "owner")
    node.stop()
    assert machine_steps == ["kill_pod_processes", "kill_pod_processes", *MACHINE_WIDE[1:]]
    state = node.to_state()
    assert (state["saved_sysctls"], state["created_dirs"]) == ({}, [])
    machine_steps.clear()
    RealNode.from_state(tmp_path / "owner", state).stop()
    assert machine_steps == []


def test_a_node_without_the_claim_leaves_the_machine_alone(
    machine_steps: list[str], tmp_path: Path
) -> None:
    node = _node(tmp_path / "other")
    node.stop()
    assert machine_steps == []
    assert node.saved_sysctls == {IP_FORWARD_SYSCTL: "0"}
    assert claim_owner(tmp_path / "claims") == tmp_path / "owner"
