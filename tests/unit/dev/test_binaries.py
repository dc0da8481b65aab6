"""Finding and building the control plane binaries: the pure parts and the error paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from moorage_dev import binaries
from moorage_dev.binaries import BinaryError, Versions


def test_wrapper_module_replaces_every_staging_module_with_its_published_version() -> None:
    text = binaries.kubernetes_go_mod("1.34.4")
    assert "require k8s.io/kubernetes v1.34.4" in text
    for module in binaries.STAGING_MODULES:
        assert f"replace k8s.io/{module} => k8s.io/{module} v0.34.4" in text


def test_tools_file_imports_every_kubernetes_command() -> None:
    text = binaries.kubernetes_tools_go()
    for command in binaries.KUBERNETES_COMMANDS:
        assert f'"k8s.io/kubernetes/cmd/{command}"' in text


def test_cache_is_keyed_by_every_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    a = binaries.cache_bin_dir(Versions(kubernetes="1.34.4"))
    b = binaries.cache_bin_dir(Versions(kubernetes="1.34.3"))
    c = binaries.cache_bin_dir(Versions(etcd="3.6.5"))
    assert len({a, b, c}) == 3
    assert a.is_relative_to(tmp_path)


def test_explicit_binary_paths_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "kube-apiserver"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MOORAGE_KUBE_APISERVER_BIN", str(fake))
    assert binaries.find_prebuilt("kube-apiserver") == fake


def test_an_explicit_path_that_is_not_executable_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_ETCD_BIN", str(tmp_path / "missing"))
    with pytest.raises(BinaryError, match="MOORAGE_ETCD_BIN"):
        binaries.find_prebuilt("etcd")


def test_kubebuilder_assets_are_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    etcd = tmp_path / "etcd"
    etcd.write_text("#!/bin/sh\n")
    etcd.chmod(0o755)
    monkeypatch.delenv("MOORAGE_ETCD_BIN", raising=False)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert binaries.find_prebuilt("etcd") == etcd


def test_missing_go_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setattr(binaries, "_DEFAULT_GO", str(tmp_path / "no-go"))
    with pytest.raises(BinaryError, match=r"Go toolchain \('go'\) was not found"):
        binaries.ensure_binaries()


def test_node_binaries_are_wanted_only_for_a_real_node() -> None:
    assert "kubelet" not in binaries.wanted_binaries(node=False)
    assert set(binaries.NODE_COMMANDS) <= set(binaries.wanted_binaries(node=True))
    assert set(binaries.ALL_BINARIES) <= set(binaries.wanted_binaries(node=True))


def test_node_tools_file_imports_kubelet_and_kube_proxy_only() -> None:
    text = binaries.kubernetes_tools_go(binaries.NODE_COMMANDS)
    assert '"k8s.io/kubernetes/cmd/kubelet"' in text
    assert '"k8s.io/kubernetes/cmd/kube-proxy"' in text
    assert "kube-apiserver" not in text


def _build_once(directory: Path, build: Callable[[str, Path], None], messages: list[str]) -> None:
    binaries.build_once(
        directory,
        what="thing v1",
        complete=lambda: (directory / "bin" / "thing").is_file(),
        build=build,
        into=directory,
        names=("bin",),
        report=messages.append,
        go=lambda: "go",
    )


def _write_thing(go: str, out: Path) -> None:
    (out / "bin").mkdir()
    (out / "bin" / "thing").write_text(go)


def test_build_once_builds_into_place_replacing_a_stale_folder_and_then_builds_nothing(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "entry"
    (directory / "bin").mkdir(parents=True)
    (directory / "bin" / "stale").write_text("")
    messages: list[str] = []
    _build_once(directory, _write_thing, messages)
    assert sorted(p.name for p in (directory / "bin").iterdir()) == ["thing"]
    assert messages == [f"building thing v1 (cached in {directory} afterwards)"]

    def no_build(_go: str, _out: Path) -> None:
        raise AssertionError("nothing should be built")

    _build_once(directory, no_build, messages)
    assert len(messages) == 1
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "bin"]


def test_build_once_leaves_nothing_behind_when_the_build_fails(tmp_path: Path) -> None:
    def failing(go: str, out: Path) -> None:
        _write_thing(go, out)
        raise BinaryError("build failed")

    with pytest.raises(BinaryError, match="build failed"):
        _build_once(tmp_path, failing, [])
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]
