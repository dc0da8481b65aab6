"""The machine-wide side of a real node: one claim per machine, and finding its mounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_dev.mounts import mount_points
from moorage_dev.realnode_host import (
    HostError,
    claim_machine,
    claim_owner,
    release_machine,
    restore_sysctls,
    write_sysctl,
)


def test_a_second_node_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert claim_machine(first, is_live=lambda _p: True, directory=tmp_path) is None
    with pytest.raises(HostError, match=f"already running on this machine \\(state dir {first}\\)"):
        claim_machine(second, is_live=lambda p: p == first, directory=tmp_path)
    assert claim_owner(tmp_path) == first


def test_a_dead_owner_is_handed_back_for_cleaning_up(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    claim_machine(first, is_live=lambda _p: False, directory=tmp_path)
    assert claim_machine(second, is_live=lambda _p: False, directory=tmp_path) == first
    assert claim_owner(tmp_path) == second


def test_the_same_state_dir_claims_again_and_only_the_owner_releases(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    claim_machine(first, is_live=lambda _p: True, directory=tmp_path)
    assert claim_machine(first, is_live=lambda _p: True, directory=tmp_path) is None
    release_machine(second, directory=tmp_path)
    assert claim_owner(tmp_path) == first
    release_machine(first, directory=tmp_path)
    assert claim_owner(tmp_path) is None


def test_mount_points_are_read_from_mountinfo_with_escapes_undone() -> None:
    text = (
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "300 22 0:55 / /tmp/s/node/kubelet/pods/x/volumes/a\\040b rw - tmpfs tmpfs rw\n"
        "301 22 0:4 net:[4026532] /tmp/s/node/containerd/state/netns/cni-1 rw - nsfs nsfs rw\n"
    )
    assert mount_points(text) == [
        "/",
        "/tmp/s/node/kubelet/pods/x/volumes/a b",
        "/tmp/s/node/containerd/state/netns/cni-1",
    ]


def test_a_sysctl_that_cannot_be_set_is_an_error_naming_it() -> None:
    with pytest.raises(HostError, match="cannot set the sysctl net/moorage/absent to 1"):
        write_sysctl("net/moorage/absent", "1")


def test_restoring_a_sysctl_that_cannot_be_written_goes_on_quietly() -> None:
    restore_sysctls({"net/moorage/absent": "0"})
