"""Building (once) and finding cert-manager's controller, cainjector and CRDs.

cert-manager's commands live in nested modules (`cmd/controller`, `cmd/cainjector`, ...) whose
module paths (`.../controller-binary`) match no folder, so the Go module proxy serves only the root
module and `go install ...@version` cannot work. Instead a small wrapper module of ours
(`certmanager_go/`, two `main` packages) requires the root module at `CERT_MANAGER_VERSION` and
wires its public packages: `pkg/controller` (every controller registers itself there) and
`pkg/controller/cainjector`. The CRDs are the plain YAML of `deploy/crds/` from the same module
version, whose `spec` is the Helm chart's word for word (the chart only adds labels).

Everything lands beside the control plane binaries, in
`<cache>/controlplane/cert-manager-<version>/` (`bin/`, `crds/`), built in a staging folder and
moved into place under a file lock, so concurrent callers build once and never see half a release.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from moorage_dev.binaries import (
    BinaryError,
    Reporter,
    build_once,
    cache_root,
    go_binary,
    go_build,
    go_module,
)

CERT_MANAGER_VERSION = "1.21.2"
CERT_MANAGER_MODULE = "github.com/cert-manager/cert-manager"
# The wrapper module's commands: folder names under certmanager_go/, and so the binaries' names.
CERT_MANAGER_COMMANDS = ("cert-manager-controller", "cert-manager-cainjector")
# deploy/crds/ of the module: every kind cert-manager serves.
CERT_MANAGER_CRD_FILES = (
    "acme.cert-manager.io_challenges.yaml",
    "acme.cert-manager.io_orders.yaml",
    "cert-manager.io_certificaterequests.yaml",
    "cert-manager.io_certificates.yaml",
    "cert-manager.io_clusterissuers.yaml",
    "cert-manager.io_issuers.yaml",
)
_GO_SOURCES = "certmanager_go"
# cert-manager v1.21's go.mod says `go 1.26.0`.
GO_MIN_VERSION = (1, 26)


@dataclass(frozen=True, slots=True)
class CertManagerRelease:
    """One built cert-manager version: its binaries and its CRD files."""

    version: str
    directory: Path
    """`<cache>/controlplane/cert-manager-v<version>`; holds `bin/` and `crds/`."""

    @property
    def bin_dir(self) -> Path:
        return self.directory / "bin"

    @property
    def crd_dir(self) -> Path:
        return self.directory / "crds"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def crd_files(self) -> list[Path]:
        return [self.crd_dir / name for name in CERT_MANAGER_CRD_FILES]

    def is_complete(self) -> bool:
        return all(self.binary(n).is_file() for n in CERT_MANAGER_COMMANDS) and all(
            p.is_file() for p in self.crd_files
        )


def release_dir(version: str = CERT_MANAGER_VERSION) -> Path:
    return cache_root() / "controlplane" / f"cert-manager-v{version}"


def wrapper_go_mod(version: str) -> str:
    """The wrapper module: only the root module, at `version`; `go mod tidy` adds the rest."""
    return (
        f"module moorage.dev/certmanager\n\ngo 1.26\n\nrequire {CERT_MANAGER_MODULE} v{version}\n"
    )


def cert_manager_ldflags(version: str) -> str:
    """Strip symbols and stamp the version that `--version` and the User-Agent report."""
    prefix = f"{CERT_MANAGER_MODULE}/pkg/util"
    return f"-s -w -X {prefix}.AppVersion=v{version} -X {prefix}.AppGitState=clean"


def is_go_new_enough(go_version: str, minimum: tuple[int, int] = GO_MIN_VERSION) -> bool:
    """Whether `go env GOVERSION` output (`go1.26.8`, `go1.27rc1`) is at least `minimum`."""
    digits = go_version.removeprefix("go").split(".")
    try:
        major = int(digits[0])
        minor = int("".join(c for c in digits[1] if c.isdigit()) or "0")
    except (ValueError, IndexError):
        # An unknown spelling (a development build): let the build itself decide.
        return True
    return (major, minor) >= minimum


def go_new_enough_for(what: str, *, minimum: tuple[int, int] = GO_MIN_VERSION) -> str:
    """The `go` command, checked to be at least `minimum` to build `what` (named in the error)."""
    go = go_binary()
    proc = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    version = proc.stdout.strip()
    if not is_go_new_enough(version, minimum):
        raise BinaryError(
            f"{version or 'this Go'} is too old to build {what}: need >= {minimum[0]}.{minimum[1]}"
        )
    return go


def _go_new_enough() -> str:
    """The `go` command, checked to be new enough for cert-manager."""
    return go_new_enough_for(f"cert-manager v{CERT_MANAGER_VERSION}")


def _go_sources() -> dict[str, str]:
    """Each command's `main.go` of `certmanager_go/`, by its path in the wrapper module."""
    source = resources.files("moorage_dev") / _GO_SOURCES
    return {
        f"{command}/main.go": (source / command / "main.go").read_text()
        for command in CERT_MANAGER_COMMANDS
    }


def _module_dir(go: str, *, cwd: Path, version: str) -> Path:
    """The root module's source folder in the Go module cache (downloaded by `go mod tidy`)."""
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{CERT_MANAGER_MODULE}@v{version}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BinaryError(
            f"go mod download {CERT_MANAGER_MODULE}@v{version} failed:\n{proc.stderr}"
        )
    return Path(json.loads(proc.stdout)["Dir"])


def build_cert_manager(go: str, out: Path, *, version: str, report: Reporter) -> None:
    """Build the commands into `out/bin` and copy the CRDs of the same version into `out/crds`."""
    files = {"go.mod": wrapper_go_mod(version), **_go_sources()}
    what = f"cert-manager v{version}"
    with go_module(go, name="cert-manager", files=files, what=what, report=report) as work:
        go_build(
            go,
            work,
            ldflags=cert_manager_ldflags(version),
            out=f"{out / 'bin'}/",
            targets=[f"./{c}" for c in CERT_MANAGER_COMMANDS],
            what=f"build {', '.join(CERT_MANAGER_COMMANDS)} v{version}",
            report=report,
        )
        crds = _module_dir(go, cwd=work, version=version) / "deploy" / "crds"
        unnamed = sorted({p.name for p in crds.glob("*.yaml")} - set(CERT_MANAGER_CRD_FILES))
        if unnamed:
            # A newer release with a new kind: name it in CERT_MANAGER_CRD_FILES.
            raise BinaryError(f"cert-manager v{version} has CRDs not installed here: {unnamed}")
        (out / "crds").mkdir()
        for name in CERT_MANAGER_CRD_FILES:
            if not (crds / name).is_file():
                raise BinaryError(f"cert-manager v{version} has no deploy/crds/{name}")
            # Copied as text: files in the module cache are read-only.
            (out / "crds" / name).write_text((crds / name).read_text())


def ensure_cert_manager_binaries(
    report: Reporter | None = None, *, version: str = CERT_MANAGER_VERSION
) -> CertManagerRelease:
    """cert-manager's binaries and CRDs at `version`, built once and cached."""
    say: Reporter = report or (lambda _msg: None)
    release = CertManagerRelease(version=version, directory=release_dir(version))

    def build(go: str, out: Path) -> None:
        (out / "bin").mkdir()
        build_cert_manager(go, out, version=version, report=say)

    build_once(
        release.directory,
        what=f"cert-manager v{version}",
        complete=release.is_complete,
        build=build,
        into=release.directory,
        names=("bin", "crds"),
        report=say,
        go=_go_new_enough,
    )
    return release
