"""Building (once) and finding `helm`, for the chart tests and `moorage-dev build --helm`.

Helm is a normal Go module (`helm.sh/helm/v4`, no local replaces), built the way the control plane
binaries are: a throwaway wrapper module requiring it at the pinned version, `go build` of
`cmd/helm` with the version stamped, the result cached in `<cache>/controlplane/helm-v<version>/`
under the same build lock, so concurrent callers build once and a second run builds nothing.

Helm 4 is what we test and document. Helm 3 (3.21.4) is built on request too, because the
charts promise to work with both: `ensure_helm(HELM3_VERSION)`. An existing binary named by
`MOORAGE_HELM_BIN` (or `MOORAGE_HELM3_BIN`) is used instead of building.
"""

from __future__ import annotations

import functools
from pathlib import Path

from moorage_dev.binaries import (
    BinaryError,
    Reporter,
    build_once,
    cache_root,
    find_prebuilt,
    go_build,
    go_module,
)
from moorage_dev.certmanager_binaries import go_new_enough_for

HELM_VERSION = "4.3.2"
HELM3_VERSION = "3.21.4"
HELM_VERSIONS = (HELM_VERSION, HELM3_VERSION)
# Helm 4.3's and 3.21's go.mod both say `go 1.26`.
GO_MIN_VERSION = (1, 26)


def major_of(version: str) -> str:
    """`4` for `4.3.2`: the module's major version suffix."""
    return version.split(".", 1)[0]


def module_of(version: str) -> str:
    return f"helm.sh/helm/v{major_of(version)}"


def release_dir(version: str) -> Path:
    return cache_root() / "controlplane" / f"helm-v{version}"


def helm_go_mod(version: str) -> str:
    """The wrapper module: helm's root module at `version`; `go mod tidy` adds the rest."""
    return f"module moorage.dev/helm\n\ngo 1.26\n\nrequire {module_of(version)} v{version}\n"


def helm_tools_go(version: str) -> str:
    return f'//go:build tools\n\npackage tools\n\nimport _ "{module_of(version)}/cmd/helm"\n'


def helm_ldflags(version: str) -> str:
    """Strip symbols and stamp the version `helm version` reports (and charts' `kubeVersion`
    and `.Capabilities.HelmVersion` see)."""
    prefix = f"{module_of(version)}/internal/version"
    return f"-s -w -X {prefix}.version=v{version} -X {prefix}.gitTreeState=clean"


def build_helm(go: str, out: Path, *, version: str, report: Reporter) -> None:
    files = {"go.mod": helm_go_mod(version), "tools.go": helm_tools_go(version)}
    what = f"helm v{version}"
    with go_module(go, name="helm", files=files, what=what, report=report) as work:
        go_build(
            go,
            work,
            ldflags=helm_ldflags(version),
            out=str(out / "bin" / "helm"),
            targets=[f"{module_of(version)}/cmd/helm"],
            what=f"build {what}",
            report=report,
        )


def _prebuilt_name(version: str) -> str:
    """`helm` for Helm 4 (MOORAGE_HELM_BIN), `helm3` for Helm 3 (MOORAGE_HELM3_BIN)."""
    return "helm" if version == HELM_VERSION else f"helm{major_of(version)}"


def ensure_helm(version: str = HELM_VERSION, *, report: Reporter | None = None) -> Path:
    """The path of `helm` at `version`, building it (once) when it is not cached yet."""
    if version not in HELM_VERSIONS:
        raise BinaryError(f"helm v{version} is not one of the pinned {HELM_VERSIONS}")
    prebuilt = find_prebuilt(_prebuilt_name(version))
    if prebuilt is not None:
        return prebuilt
    directory = release_dir(version)
    binary = directory / "bin" / "helm"
    directory.mkdir(parents=True, exist_ok=True)
    say: Reporter = report or (lambda _msg: None)
    build_once(
        directory,
        what=f"helm v{version}",
        complete=binary.is_file,
        build=lambda go, out: build_helm(go, out, version=version, report=say),
        into=directory,
        names=("bin",),
        report=say,
        go=functools.partial(go_new_enough_for, f"helm v{version}", minimum=GO_MIN_VERSION),
    )
    return binary
