"""Finding or building the control plane binaries the tests and the demo run.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok are built from Go
modules with the local Go toolchain and cached outside the repository, keyed by version, so a
second run builds nothing. Binaries that already exist are used instead: an explicit path in
`MOORAGE_<NAME>_BIN` (e.g. `MOORAGE_KUBE_APISERVER_BIN`), or the `KUBEBUILDER_ASSETS` folder that
`setup-envtest` fills.

`go install k8s.io/kubernetes/cmd/kube-apiserver@vX` cannot work (the module requires every staging
module at v0.0.0 through local replaces), so we write a tiny wrapper module that requires
`k8s.io/kubernetes` and replaces each staging module with its published `v0.N.P`. etcd's server
module has local replaces too and gets the same treatment with a one-line `main`.

kubelet and kube-proxy (for a real node, `realnode.py`) come from the same wrapper module with the
same ldflags, as a group of their own that is built only when asked for (`node=True`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.filelocks import directory_lock

KUBERNETES_VERSION = "1.34.4"
ETCD_VERSION = "3.6.6"
KWOK_VERSION = "0.7.0"
GO_MIN_VERSION = (1, 24)
# Where the official Go tarball installs; used when `go` is not on PATH.
_DEFAULT_GO = "/usr/local/go/bin/go"

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ALL_BINARIES = ("etcd", *KUBERNETES_COMMANDS, "kwok")
# A real node's own Kubernetes binaries: a group of their own, built only when a real node is
# wanted (their module graph pulls in cadvisor, runc's libcontainer and more).
NODE_COMMANDS = ("kubelet", "kube-proxy")

# The staging modules of k8s.io/kubernetes 1.34 (notes/control-plane.md); each is published as
# k8s.io/<name> v0.<minor>.<patch>.
STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)

Reporter = Callable[[str], None]


class BinaryError(RuntimeError):
    """A binary could not be found or built; the message says what is missing and what to do."""


@dataclass(frozen=True, slots=True)
class Versions:
    kubernetes: str = KUBERNETES_VERSION
    etcd: str = ETCD_VERSION
    kwok: str = KWOK_VERSION

    @property
    def key(self) -> str:
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}"


def cache_root() -> Path:
    """`$MOORAGE_CACHE_DIR`, else `$XDG_CACHE_HOME/moorage`, else `~/.cache/moorage`."""
    explicit = os.environ.get("MOORAGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "moorage"


def cache_bin_dir(versions: Versions) -> Path:
    return cache_root() / "controlplane" / versions.key / "bin"


def env_var_for(name: str) -> str:
    return "MOORAGE_" + name.upper().replace("-", "_") + "_BIN"


def find_prebuilt(name: str) -> Path | None:
    """An existing binary named by `MOORAGE_<NAME>_BIN` or found in `KUBEBUILDER_ASSETS`."""
    explicit = os.environ.get(env_var_for(name))
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BinaryError(f"{env_var_for(name)}={explicit} is not an executable file")
        return path
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        path = Path(assets) / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def go_binary() -> str:
    """The `go` command, checked to be new enough; a clear error when it is missing."""
    go = shutil.which("go") or (_DEFAULT_GO if Path(_DEFAULT_GO).exists() else None)
    if go is None:
        raise BinaryError(
            "the Go toolchain ('go') was not found on PATH: it is needed to build etcd, "
            "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok. Install Go "
            f">= {GO_MIN_VERSION[0]}.{GO_MIN_VERSION[1]}, or point KUBEBUILDER_ASSETS / "
            "MOORAGE_<NAME>_BIN at existing binaries."
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    version = out.stdout.strip().removeprefix("go")
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return go
    if (major, minor) < GO_MIN_VERSION:
        raise BinaryError(
            f"Go {version} is too old to build Kubernetes {KUBERNETES_VERSION}: "
            f"need >= {GO_MIN_VERSION[0]}.{GO_MIN_VERSION[1]}"
        )
    return go


def kubernetes_go_mod(version: str) -> str:
    """The wrapper module that builds k8s.io/kubernetes commands at `version`."""
    minor_patch = version.removeprefix("1.")
    replaces = "\n".join(
        f"replace k8s.io/{m} => k8s.io/{m} v0.{minor_patch}" for m in STAGING_MODULES
    )
    return f"module moorage.dev/controlplane\n\ngo 1.24\n\nrequire k8s.io/kubernetes v{version}\n\n{replaces}\n"


def kubernetes_tools_go(commands: tuple[str, ...] = KUBERNETES_COMMANDS) -> str:
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in commands)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def etcd_go_mod(version: str) -> str:
    return f"module moorage.dev/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 v{version}\n"


ETCD_MAIN_GO = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
\tetcdmain.Main(os.Args)
}
"""


def kwok_go_mod(version: str) -> str:
    return f"module moorage.dev/kwok\n\ngo 1.24\n\nrequire sigs.k8s.io/kwok v{version}\n"


KWOK_TOOLS_GO = '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/kwok/cmd/kwok"\n'


def run_go(go: str, args: list[str], *, cwd: Path, what: str, report: Reporter) -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    started = time.monotonic()
    proc = subprocess.run(
        [go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        hint = ""
        if "dial tcp" in tail or "proxy" in tail.lower() or "lookup" in tail:
            hint = " (the Go module proxy could not be reached: check GOPROXY and the network)"
        raise BinaryError(f"{what} failed{hint}: go {' '.join(args)}\n{tail}")
    report(f"{what}: {time.monotonic() - started:.0f}s")


@contextlib.contextmanager
def go_module(
    go: str, *, name: str, files: Mapping[str, str], what: str, report: Reporter
) -> Iterator[Path]:
    """A throwaway wrapper module: `files` (path in the module -> text) written, `go mod tidy` run.

    Yields its folder, to build in; `what` names the module in the resolve step's report and
    error, `name` its temporary folder. The folder is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix=f"moorage-{name}-build-") as tmp:
        work = Path(tmp)
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        run_go(go, ["mod", "tidy"], cwd=work, what=f"resolve {what}", report=report)
        yield work


def go_build(
    go: str,
    work: Path,
    *,
    out: str,
    targets: Sequence[str],
    what: str,
    report: Reporter,
    ldflags: str | None = None,
    tags: str | None = None,
) -> None:
    """`go build -trimpath [-tags …] [-ldflags …] -o out targets` in `work`, as every binary
    here is built.

    `out` ending in `/` builds several commands into that folder, else one binary at that path.
    """
    flags = ["-tags", tags] if tags is not None else []
    flags += ["-ldflags", ldflags] if ldflags is not None else []
    run_go(
        go,
        ["build", "-trimpath", *flags, "-o", out, *targets],
        cwd=work,
        what=what,
        report=report,
    )


def _ldflags_kubernetes(version: str) -> str:
    major, minor, _ = version.split(".")
    prefix = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s -w",
            f"-X {prefix}.gitVersion=v{version}",
            f"-X {prefix}.gitMajor={major}",
            f"-X {prefix}.gitMinor={minor}",
            f"-X {prefix}.gitTreeState=clean",
        ]
    )


def build_kubernetes(
    go: str,
    out: Path,
    *,
    version: str,
    report: Reporter,
    commands: tuple[str, ...] = KUBERNETES_COMMANDS,
) -> None:
    files = {"go.mod": kubernetes_go_mod(version), "tools.go": kubernetes_tools_go(commands)}
    what = f"k8s.io/kubernetes v{version}"
    with go_module(go, name="k8s", files=files, what=what, report=report) as work:
        go_build(
            go,
            work,
            ldflags=_ldflags_kubernetes(version),
            out=f"{out}/",
            targets=[f"k8s.io/kubernetes/cmd/{c}" for c in commands],
            what=f"build {', '.join(commands)} v{version}",
            report=report,
        )


def build_etcd(go: str, out: Path, *, version: str, report: Reporter) -> None:
    files = {"go.mod": etcd_go_mod(version), "main.go": ETCD_MAIN_GO}
    with go_module(go, name="etcd", files=files, what=f"etcd v{version}", report=report) as work:
        go_build(
            go,
            work,
            ldflags="-s -w",
            out=str(out / "etcd"),
            targets=["."],
            what=f"build etcd v{version}",
            report=report,
        )


def build_kwok(go: str, out: Path, *, version: str, report: Reporter) -> None:
    files = {"go.mod": kwok_go_mod(version), "tools.go": KWOK_TOOLS_GO}
    with go_module(go, name="kwok", files=files, what=f"kwok v{version}", report=report) as work:
        go_build(
            go,
            work,
            ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v{version}",
            out=str(out / "kwok"),
            targets=["sigs.k8s.io/kwok/cmd/kwok"],
            what=f"build kwok v{version}",
            report=report,
        )


def build_lock(directory: Path) -> contextlib.AbstractContextManager[None]:
    """One builder at a time per cache entry (a test run and the demo may start together)."""
    return directory_lock(directory)


def build_once(
    directory: Path,
    *,
    what: str,
    complete: Callable[[], bool],
    build: Callable[[str, Path], None],
    into: Path,
    names: Sequence[str],
    report: Reporter,
    go: Callable[[], str] = go_binary,
) -> None:
    """Build `what` into the cache entry `directory` unless `complete()` already holds.

    Under `directory`'s `build_lock` (and checked again there, so concurrent callers build once)
    `build(go(), staging)` fills a fresh staging folder inside `directory`; then `names` are moved
    from it into `into` one by one, in order, a folder replacing the folder there. A failed build
    leaves nothing behind, and a reader never sees a half-moved entry as long as `complete()` looks
    at what the last of `names` brings. `go` finds (and may check) the toolchain, before anything
    is reported or staged.
    """
    if complete():
        return
    with build_lock(directory):
        if complete():
            return
        go_command = go()
        report(f"building {what} (cached in {into} afterwards)")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
        try:
            build(go_command, staging)
            into.mkdir(parents=True, exist_ok=True)
            for name in names:
                if (into / name).is_dir():
                    shutil.rmtree(into / name, ignore_errors=True)
                (staging / name).replace(into / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _complete(directory: Path, names: tuple[str, ...]) -> bool:
    return all((directory / n).is_file() for n in names)


def wanted_binaries(*, node: bool) -> tuple[str, ...]:
    """Every binary `ensure_binaries` provides; kubelet and kube-proxy only for a real node."""
    return (*ALL_BINARIES, *NODE_COMMANDS) if node else ALL_BINARIES


def ensure_binaries(
    *, versions: Versions | None = None, report: Reporter | None = None, node: bool = False
) -> dict[str, Path]:
    """The path of every control plane binary, building (once) what is not there yet.

    With `node=True` also kubelet and kube-proxy, for a real node.
    """
    versions = versions or Versions()
    say: Reporter = report or (lambda _msg: None)
    wanted = wanted_binaries(node=node)
    found: dict[str, Path] = {}
    for name in wanted:
        path = find_prebuilt(name)
        if path is not None:
            found[name] = path
    missing = [n for n in wanted if n not in found]
    if not missing:
        return found
    bin_dir = cache_bin_dir(versions)
    groups: list[tuple[tuple[str, ...], Callable[[str, Path], None]]] = [
        (("etcd",), lambda go, out: build_etcd(go, out, version=versions.etcd, report=say)),
        (
            KUBERNETES_COMMANDS,
            lambda go, out: build_kubernetes(go, out, version=versions.kubernetes, report=say),
        ),
        (("kwok",), lambda go, out: build_kwok(go, out, version=versions.kwok, report=say)),
        (
            NODE_COMMANDS,
            lambda go, out: build_kubernetes(
                go, out, version=versions.kubernetes, report=say, commands=NODE_COMMANDS
            ),
        ),
    ]
    for names, build in groups:
        if any(n in missing for n in names):
            build_once(
                bin_dir.parent,
                what=", ".join(names),
                complete=functools.partial(_complete, bin_dir, names),
                build=build,
                into=bin_dir,
                names=names,
                report=say,
            )
    for name in missing:
        found[name] = bin_dir / name
    return found
