"""Building helm: the wrapper module, the version stamp, where it is cached, what is used instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage_dev import certmanager_binaries, helm_binaries
from moorage_dev.binaries import BinaryError


@pytest.mark.parametrize(
    ("version", "module"),
    [("4.3.2", "helm.sh/helm/v4"), ("3.21.4", "helm.sh/helm/v3")],
    ids=["helm4", "helm3"],
)
def test_the_wrapper_module_requires_helm_at_the_pinned_version(version: str, module: str) -> None:
    assert f"require {module} v{version}\n" in helm_binaries.helm_go_mod(version)
    assert f'import _ "{module}/cmd/helm"' in helm_binaries.helm_tools_go(version)
    assert f"-X {module}/internal/version.version=v{version}" in helm_binaries.helm_ldflags(version)


def test_helm_4_is_the_default_and_helm_3_is_pinned_too() -> None:
    assert helm_binaries.HELM_VERSION.startswith("4.")
    assert helm_binaries.HELM3_VERSION.startswith("3.")


def test_each_version_is_cached_in_a_folder_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path))
    four = helm_binaries.release_dir("4.3.2")
    three = helm_binaries.release_dir("3.21.4")
    assert four == tmp_path / "controlplane" / "helm-v4.3.2"
    assert four != three


def test_an_existing_binary_is_used_instead_of_building(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = tmp_path / "helm"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("MOORAGE_HELM_BIN", str(binary))
    monkeypatch.setenv("MOORAGE_HELM3_BIN", str(binary))
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path / "cache"))
    assert helm_binaries.ensure_helm() == binary
    assert helm_binaries.ensure_helm(helm_binaries.HELM3_VERSION) == binary
    assert not (tmp_path / "cache").exists()


def test_an_unpinned_version_is_refused() -> None:
    with pytest.raises(BinaryError, match="not one of the pinned"):
        helm_binaries.ensure_helm("2.17.0")


def test_a_go_too_old_for_helm_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.write_text("#!/bin/sh\necho go1.24.3\n")
    go.chmod(0o755)
    monkeypatch.setattr(certmanager_binaries, "go_binary", lambda: str(go))
    monkeypatch.setenv("MOORAGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MOORAGE_HELM_BIN", raising=False)
    with pytest.raises(BinaryError, match=r"go1\.24\.3 is too old to build helm v4\.3\.2"):
        helm_binaries.ensure_helm()
