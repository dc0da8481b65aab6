"""The real node's preflight: one line naming exactly what this machine lacks."""

from __future__ import annotations

import dataclasses

import pytest

from moorage_dev.realnode_preflight import (
    CAP_NET_ADMIN,
    CAP_SYS_ADMIN,
    CNI_PLUGINS,
    COMMAND_PACKAGES,
    HostFacts,
    find_problems,
    preflight_message,
)

READY = HostFacts(
    is_root=True,
    commands=frozenset(COMMAND_PACKAGES),
    cni_plugins=frozenset(CNI_PLUGINS),
    can_compile_pause=True,
    has_overlay=True,
    overlay_mount_error=None,
    cgroup_version=1,
    capabilities=frozenset({CAP_NET_ADMIN, CAP_SYS_ADMIN}),
    has_br_netfilter=True,
    has_dev_kmsg=True,
    socket_path="/tmp/state/node/containerd/containerd.sock",
    networks_in_use=(("192.0.2.2/24", "eth0"), ("192.0.2.0/24", "eth0"), ("127.0.0.1/8", "lo")),
)


def _problems(**changes: object) -> list[str]:
    facts = dataclasses.replace(READY, **changes)  # type: ignore[arg-type]
    return find_problems(
        facts, pod_cidr="10.250.0.0/24", service_cidr="10.96.0.0/16", bridge="moorage0"
    )


def test_a_machine_with_everything_has_no_problem() -> None:
    assert _problems() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"is_root": False}, "must run as root", id="not-root"),
        pytest.param(
            {"capabilities": frozenset({CAP_SYS_ADMIN})},
            "lacks CAP_NET_ADMIN (in a container: run it privileged)",
            id="no-net-admin",
        ),
        pytest.param(
            {"commands": frozenset(COMMAND_PACKAGES) - {"socat"}},
            "missing socat (Debian packages socat: run scripts/realnode-deps.sh as root)",
            id="no-socat",
        ),
        pytest.param(
            {"commands": frozenset(COMMAND_PACKAGES) - {"containerd", "ctr", "runc"}},
            "missing containerd, ctr, runc (Debian packages containerd runc: run "
            "scripts/realnode-deps.sh as root)",
            id="no-containerd-no-runc",
        ),
        pytest.param(
            {"cni_plugins": frozenset({"loopback"})},
            "missing /usr/lib/cni/bridge, /usr/lib/cni/host-local (Debian packages "
            "containernetworking-plugins: run scripts/realnode-deps.sh as root)",
            id="no-cni-plugins",
        ),
        pytest.param(
            {"can_compile_pause": False},
            "missing gcc with a static libc (Debian packages gcc libc6-dev",
            id="no-static-libc",
        ),
        pytest.param({"has_overlay": False}, "no overlay filesystem", id="no-overlay"),
        pytest.param(
            {"overlay_mount_error": "Invalid argument"},
            "overlayfs does not work under the state dir (Invalid argument): set MOORAGE_STATE_DIR",
            id="state-dir-on-overlay",
        ),
        pytest.param({"cgroup_version": None}, "no cgroup filesystem", id="no-cgroups"),
        pytest.param({"has_br_netfilter": False}, "modprobe br_netfilter", id="no-br-netfilter"),
        pytest.param({"has_dev_kmsg": False}, "/dev/kmsg is missing", id="no-kmsg"),
        pytest.param(
            {"socket_path": "/" + "x" * 120},
            "too deep for a unix socket",
            id="socket-path-too-long",
        ),
        pytest.param(
            {"networks_in_use": (("10.250.0.0/16", "tun0"),)},
            "10.250.0.0/24 is already in use on this machine (10.250.0.0/16 on tun0)",
            id="pod-range-taken",
        ),
        pytest.param(
            {"networks_in_use": (("10.96.3.0/24", "vpn"),)},
            "10.96.0.0/16 is already in use on this machine (10.96.3.0/24 on vpn)",
            id="service-range-taken",
        ),
    ],
)
def test_each_missing_thing_is_named_with_what_to_do(
    changes: dict[str, object], expected: str
) -> None:
    problems = _problems(**changes)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_our_own_bridge_and_a_default_route_are_no_clash() -> None:
    in_use = (("10.250.0.1/24", "moorage0"), ("10.96.0.0/16", "moorage0"), ("0.0.0.0/0", "eth0"))
    assert _problems(networks_in_use=in_use) == []


def test_several_problems_make_one_line() -> None:
    problems = _problems(is_root=False, has_dev_kmsg=False)
    message = preflight_message(problems)
    assert "\n" not in message
    assert message.startswith("cannot run a real node here: ")
    assert "root" in message
    assert "/dev/kmsg" in message
