"""cert-manager for the local control plane: the pure parts, the cache and the process record."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest

from moorage_dev import certmanager_binaries
from moorage_dev.binaries import BinaryError
from moorage_dev.certmanager import (
    READINESS_NAME,
    CertManager,
    build_readiness_objects,
    cainjector_argv,
    controller_argv,
    stop_recorded,
)
from moorage_dev.certmanager_binaries import (
    CERT_MANAGER_COMMANDS,
    CERT_MANAGER_CRD_FILES,
    CERT_MANAGER_VERSION,
    CertManagerRelease,
    cert_manager_ldflags,
    ensure_cert_manager_binaries,
    release_dir,
    wrapper_go_mod,
)
from moorage_dev.cluster import ControlPlane


def _fake_release(directory: Path, version: str = CERT_MANAGER_VERSION) -> CertManagerRelease:
    release = CertManagerRelease(version=version, directory=directory)
    release.bin_dir.mkdir(parents=True)
    release.crd_dir.mkdir(parents=True)
    for name in CERT_MANAGER_COMMANDS:
        (release.bin_dir / name).write_text("#!/bin/sh\n")
    for path in release.crd_files:
        path.write_text("kind: CustomResourceDefinition\n")
    return release


def _exec_done(proc: subprocess.Popen[bytes], program: str) -> subprocess.Popen[bytes]:
    """`proc` once it runs `program`: right after Popen the child may still be the forked Python,
    and the code under test tells a recorded process by its command line."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            argv0 = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            if Path(argv0).name == program:
                return proc
        time.sleep(0.01)
    raise AssertionError(f"pid {proc.pid} never ran {program}")


def test_wrapper_module_requires_only_the_root_module_at_the_pinned_version() -> None:
    text = wrapper_go_mod("1.21.2")
    assert "require github.com/cert-manager/cert-manager v1.21.2\n" in text
    assert "replace" not in text


def test_ldflags_stamp_the_version_that_version_flags_report() -> None:
    flags = cert_manager_ldflags("1.21.2")
    assert "-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v1.21.2" in flags


@pytest.mark.parametrize("command", CERT_MANAGER_COMMANDS)
def test_every_command_has_a_main_package_in_the_wrapper_sources(command: str) -> None:
    main = resources.files("moorage_dev") / "certmanager_go" / command / "main.go"
    text = main.read_text()
    assert text.startswith("// Command " + command)
    assert "package main" in text
    assert '"github.com/cert-manager/cert-manager/pkg/' in text


def test_releases_are_cached_beside_the_control_plane_and_keyed_by_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    assert release_dir("1.21.2") == tmp_path / "controlplane" / "cert-manager-v1.21.2"
    assert release_dir("1.21.2") != release_dir("1.21.1")


def test_a_release_missing_a_crd_is_not_complete(tmp_path: Path) -> None:
    release = _fake_release(tmp_path / "r")
    assert release.is_complete()
    (release.crd_dir / CERT_MANAGER_CRD_FILES[0]).unlink()
    assert not release.is_complete()


def test_a_complete_release_is_used_without_go(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    _fake_release(release_dir())

    def no_go() -> str:
        raise AssertionError("nothing should be built")

    monkeypatch.setattr(certmanager_binaries, "go_binary", no_go)
    release = ensure_cert_manager_binaries()
    assert release.binary("cert-manager-controller").is_file()


def test_an_incomplete_release_is_built_and_a_missing_go_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("moorage_dev.binaries._DEFAULT_GO", str(tmp_path / "no-go"))
    with pytest.raises(BinaryError, match="Go toolchain"):
        ensure_cert_manager_binaries()
    leftovers = [p.name for p in release_dir().iterdir() if p.name != ".lock"]
    assert leftovers == []


def test_processes_talk_to_the_plane_with_its_kubeconfig(tmp_path: Path) -> None:
    release = CertManagerRelease(version="1.21.2", directory=tmp_path)
    kubeconfig = tmp_path / "admin.kubeconfig"
    controller = controller_argv(release, kubeconfig=kubeconfig)
    cainjector = cainjector_argv(release, kubeconfig=kubeconfig)
    assert controller[0] == str(tmp_path / "bin" / "cert-manager-controller")
    assert cainjector[0] == str(tmp_path / "bin" / "cert-manager-cainjector")
    for argv in (controller, cainjector):
        assert f"--kubeconfig={kubeconfig}" in argv
        assert not any("leader" in arg for arg in argv)


def test_the_readiness_webhook_fails_open_and_matches_no_served_group() -> None:
    objects = {o["kind"]: o for o in build_readiness_objects("cm")}
    webhook = objects["ValidatingWebhookConfiguration"]
    assert webhook["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"cm/{READINESS_NAME}"
    }
    [hook] = webhook["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert [r["apiGroups"] for r in hook["rules"]] == [["readiness.moorage.dev"]]
    certificate = objects["Certificate"]
    assert certificate["spec"]["issuerRef"] == {"name": READINESS_NAME, "kind": "Issuer"}
    assert objects["Issuer"]["spec"] == {"selfSigned": {}}


def test_a_recorded_cert_manager_is_found_and_stopped_with_its_process_group(
    tmp_path: Path,
) -> None:
    plane = ControlPlane(tmp_path)
    # A shell standing in for the controller, with a child in its process group.
    proc = _exec_done(
        subprocess.Popen(
            ["/bin/sh", "-c", "sleep 60 & wait"], start_new_session=True, stdin=subprocess.DEVNULL
        ),
        "sh",
    )
    (tmp_path / "cert-manager.json").write_text(
        json.dumps(
            {
                "pids": {"cert-manager-controller": proc.pid},
                "binaries": {"cert-manager-controller": "/bin/sh"},
            }
        )
    )
    manager = CertManager.load(plane)
    assert manager is not None
    assert manager.running() == {"cert-manager-controller": True}
    started = time.monotonic()
    manager.stop()
    assert proc.wait(timeout=5) is not None
    assert time.monotonic() - started < 5
    assert not (tmp_path / "cert-manager.json").exists()
    assert CertManager.load(plane) is None
    assert stop_recorded(plane) is False


def test_a_recorded_pid_that_now_runs_something_else_is_left_alone(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path)
    proc = _exec_done(subprocess.Popen(["sleep", "60"], start_new_session=True), "sleep")
    try:
        (tmp_path / "cert-manager.json").write_text(
            json.dumps(
                {
                    "pids": {"cert-manager-controller": proc.pid},
                    "binaries": {"cert-manager-controller": "/opt/cert-manager-controller"},
                }
            )
        )
        assert stop_recorded(plane) is True
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_start_adopts_a_recorded_cert_manager_that_still_runs(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path)
    proc = _exec_done(subprocess.Popen(["sleep", "60"], start_new_session=True), "sleep")
    try:
        record = {
            "pids": {name: proc.pid for name in CERT_MANAGER_COMMANDS},
            "binaries": {name: "/usr/bin/sleep" for name in CERT_MANAGER_COMMANDS},
        }
        (tmp_path / "cert-manager.json").write_text(json.dumps(record))
        release = CertManagerRelease(version=CERT_MANAGER_VERSION, directory=tmp_path / "r")
        manager = CertManager(plane, release=release)
        # Adopting must not touch the apiserver: this plane was never started.
        manager.start()
        assert manager.pids == record["pids"]
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("version", "enough"),
    [
        ("go1.26.8", True),
        ("go1.27rc1", True),
        ("go1.25.5", False),
        ("go1.26", True),
        ("devel +abc", True),
    ],
    ids=["release", "release-candidate", "too-old", "no-patch", "development-build"],
)
def test_go_version_gate(version: str, enough: bool) -> None:
    assert certmanager_binaries.is_go_new_enough(version) is enough


def test_clearing_the_state_dir_stops_a_recorded_cert_manager_first(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "state")
    plane.state_dir.mkdir()
    proc = _exec_done(subprocess.Popen(["sleep", "60"], start_new_session=True), "sleep")
    try:
        (plane.state_dir / "cert-manager.json").write_text(
            json.dumps(
                {
                    "pids": {"cert-manager-controller": proc.pid},
                    "binaries": {"cert-manager-controller": "/usr/bin/sleep"},
                }
            )
        )
        plane._clear_state_dir()
        assert proc.wait(timeout=5) is not None
        assert list(plane.state_dir.iterdir()) == []
    finally:
        proc.kill()
        proc.wait()
