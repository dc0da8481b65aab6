"""The two base images the Dockerfiles build on, made locally because no registry is reachable.

- A Python base from Debian packages in the layout of `python:3.11-slim-bookworm`, which
  `docker/Dockerfile` relies on: `debootstrap --variant=minbase` of the same Debian release with
  `python3`, then `/usr/local/bin/python3.11`, `python3` and `python` pointing at Debian's
  interpreter, `/usr/local/lib/python3.11` present (Debian's standard library is already compiled
  to bytecode), working apt sources, `LANG=C.UTF-8`. The machine's own extra CA certificates
  (`/usr/local/share/ca-certificates`) are installed in it too, so that RUN steps reach the package
  indexes from a network whose TLS is inspected, just as the machine itself does; `SSL_CERT_FILE`
  points at the system bundle because uv otherwise trusts only its built-in roots.
- A uv image holding `/uv` and `/uvx` (what `COPY --from=uv /uv` expects of
  `ghcr.io/astral-sh/uv`), taken from the uv wheel on PyPI at the version the Dockerfile names; the
  musllinux wheel carries the same static binary as that image.

Both are tagged under `localhost/moorage-dev/` and passed to builds as `PYTHON_IMAGE`/`UV_IMAGE`.
Their versions come from the Dockerfile's own `ARG` defaults. The pure part (reading those
defaults and the machine's apt sources, writing the base's sources) is table-tested; the rest runs
debootstrap, pip and buildah.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.buildah import Buildah, ImageError, Reporter, run_logged
from moorage_dev.mounts import unmount_all_under

LOCAL_REGISTRY = "localhost/moorage-dev"
# Every image built on the local Python base inherits this label: it says the image was made here,
# and it tells `layerpruning` which images in buildah's storage are ours to tidy.
LOCAL_BASE_LABEL = "dev.moorage.local-base"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
HOST_SOURCES_LIST = Path("/etc/apt/sources.list")
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
# What python:3.11-slim has beyond the interpreter: TLS roots, /etc/services and friends, zones.
BASE_PACKAGES = ("python3", "ca-certificates", "netbase", "tzdata")
BASE_RECIPE_VERSION = 1
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class PythonBase:
    """The Python base a Dockerfile's `PYTHON_IMAGE` default describes."""

    python: str
    """`3.11`"""
    suite: str
    """The Debian release, `bookworm`."""

    @property
    def reference(self) -> str:
        return f"{LOCAL_REGISTRY}/python:{self.python}-{self.suite}"


@dataclass(frozen=True, slots=True)
class AptMirrors:
    main: str = DEFAULT_MIRROR
    security: str = DEFAULT_SECURITY_MIRROR


def python_base_for(default: str) -> PythonBase:
    """`python:3.11-slim-bookworm` → Python 3.11 on bookworm (only Debian slim tags are known)."""
    match = re.fullmatch(r"(?:.*/)?python:(\d+\.\d+)(?:\.\d+)?-slim-([a-z]+)", default)
    if match is None:
        raise ImageError(
            f"PYTHON_IMAGE default {default!r} is not a python:<X.Y>-slim-<debian release> image"
        )
    return PythonBase(python=match.group(1), suite=match.group(2))


def uv_version_for(default: str) -> str:
    """`ghcr.io/astral-sh/uv:0.13.9` → `0.13.9`."""
    match = re.fullmatch(r"(?:.*/)?uv:(\d+\.\d+\.\d+)(?:-.*)?", default)
    if match is None:
        raise ImageError(f"UV_IMAGE default {default!r} does not name a uv version")
    return match.group(1)


def uv_reference(version: str) -> str:
    return f"{LOCAL_REGISTRY}/uv:{version}"


def parse_apt_mirrors(*, deb822: str | None, one_line: str | None) -> AptMirrors:
    """The Debian mirrors the machine's apt uses (deb822 first, then sources.list lines)."""
    main: str | None = None
    security: str | None = None

    def consider(uri: str, suites: list[str]) -> None:
        nonlocal main, security
        if any(s.endswith("-security") for s in suites):
            security = security or uri
        elif suites:
            main = main or uri

    for stanza in (deb822 or "").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and "uris" in fields:
            consider(fields["uris"].split()[0], fields.get("suites", "").split())
    for line in (one_line or "").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb":
            rest = [w for w in words[1:] if not w.startswith("[")]
            if len(rest) >= 2:
                consider(rest[0], [rest[1]])
    return AptMirrors(
        main=(main or DEFAULT_MIRROR).rstrip("/"),
        security=(security or DEFAULT_SECURITY_MIRROR).rstrip("/"),
    )


def build_apt_sources(*, mirrors: AptMirrors, suite: str) -> str:
    """The base image's `/etc/apt/sources.list.d/debian.sources`, as Debian's images write it."""
    return (
        f"Types: deb\nURIs: {mirrors.main}\nSuites: {suite} {suite}-updates\n"
        f"Components: main\nSigned-By: {DEBIAN_KEYRING}\n\n"
        f"Types: deb\nURIs: {mirrors.security}\nSuites: {suite}-security\n"
        f"Components: main\nSigned-By: {DEBIAN_KEYRING}\n"
    )


def build_debootstrap_argv(*, base: PythonBase, rootfs: Path, mirror: str) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        base.suite,
        str(rootfs),
        mirror,
    ]


def build_python_config(*, base: PythonBase) -> list[str]:
    """`buildah config` arguments giving the base python:slim's environment and command."""
    return [
        f"--env=PATH={BASE_PATH}",
        "--env=LANG=C.UTF-8",
        "--env=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "--cmd=python3",
        f"--label={LOCAL_BASE_LABEL}=python{base.python}-{base.suite}",
    ]


def python_base_key(*, base: PythonBase, mirrors: AptMirrors, extra_cas: list[Path]) -> str:
    """The cache key of the Python base: its recipe and the CA certificates it will trust."""
    hasher = hashlib.sha256()
    hasher.update(
        f"{BASE_RECIPE_VERSION}|{base.python}|{base.suite}|{mirrors.main}|{mirrors.security}|"
        f"{','.join(BASE_PACKAGES)}|{' '.join(build_python_config(base=base))}".encode()
    )
    for ca in extra_cas:
        hasher.update(ca.name.encode() + b"\0" + ca.read_bytes())
    return hasher.hexdigest()


def host_apt_mirrors() -> AptMirrors:
    return parse_apt_mirrors(
        deb822=HOST_SOURCES.read_text() if HOST_SOURCES.is_file() else None,
        one_line=HOST_SOURCES_LIST.read_text() if HOST_SOURCES_LIST.is_file() else None,
    )


def host_extra_cas() -> list[Path]:
    return sorted(HOST_EXTRA_CAS.glob("*.crt")) if HOST_EXTRA_CAS.is_dir() else []


def _configure_rootfs(
    rootfs: Path, *, base: PythonBase, mirrors: AptMirrors, extra_cas: list[Path], log: Path
) -> None:
    interpreter = f"/usr/bin/python{base.python}"
    if not (rootfs / interpreter.lstrip("/")).is_file():
        raise ImageError(f"debootstrap of {base.suite} has no {interpreter}")
    local_bin = rootfs / "usr/local/bin"
    for name in (f"python{base.python}", "python3", "python"):
        link = local_bin / name
        link.unlink(missing_ok=True)
        link.symlink_to(interpreter)
    (rootfs / f"usr/local/lib/python{base.python}").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        build_apt_sources(mirrors=mirrors, suite=base.suite)
    )
    if extra_cas:
        for ca in extra_cas:
            shutil.copyfile(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
        run_logged(
            ["chroot", str(rootfs), "update-ca-certificates"],
            what="update-ca-certificates in the base",
            log=log,
            append=True,
        )
    # As the slim images do: no package lists or downloaded packages in the image.
    for cache in ("var/lib/apt/lists", "var/cache/apt"):
        for entry in (rootfs / cache).glob("**/*"):
            if entry.is_file() or entry.is_symlink():
                entry.unlink()


def make_python_base(
    buildah: Buildah, *, base: PythonBase, work: Path, log: Path, report: Reporter
) -> str:
    """Build the Python base image from Debian packages; its image id."""
    mirrors = host_apt_mirrors()
    extra_cas = host_extra_cas()
    work.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    scratch = Path(tempfile.mkdtemp(prefix="rootfs-", dir=work))
    rootfs = scratch / "rootfs"
    try:
        report(f"debootstrap {base.suite} with {', '.join(BASE_PACKAGES)} from {mirrors.main}")
        started = time.monotonic()
        run_logged(
            build_debootstrap_argv(base=base, rootfs=rootfs, mirror=mirrors.main),
            what=f"debootstrap {base.suite}",
            log=log,
            append=True,
        )
        report(f"debootstrap {base.suite}: {time.monotonic() - started:.0f}s")
        _configure_rootfs(rootfs, base=base, mirrors=mirrors, extra_cas=extra_cas, log=log)
        return buildah.commit_rootfs(
            rootfs, reference=base.reference, config=build_python_config(base=base), report=report
        )
    finally:
        _remove_rootfs(scratch)


def _remove_rootfs(scratch: Path) -> None:
    """Delete a scratch root filesystem, never through a mount left in it.

    debootstrap mounts /proc and /sys (and may bind the machine's /dev) inside the target while it
    installs; a failed run can leave them there, and deleting through them would reach the host.
    """
    stuck = unmount_all_under(scratch)
    if stuck:
        raise ImageError(
            f"left {scratch} in place: mounts inside it would not detach ({'; '.join(stuck)})"
        )
    shutil.rmtree(scratch, ignore_errors=True)


def wheel_platform() -> str:
    """The musllinux wheel tag of this machine's architecture (uv publishes x86_64 and aarch64)."""
    machine = platform.machine()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
    return f"musllinux_1_1_{arch}"


def build_pip_download_argv(*, python: str, version: str, dest: Path) -> list[str]:
    return [
        python,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        f"--platform={wheel_platform()}",
        f"--dest={dest}",
        f"uv=={version}",
    ]


def python_with_pip() -> str:
    """An interpreter that has pip: the one this environment was made from (a uv-made virtual
    environment has no pip of its own), else `python3` on PATH."""
    candidates = [str(Path(sys.base_prefix) / "bin" / "python3"), shutil.which("python3")]
    for candidate in candidates:
        if candidate is None or not Path(candidate).is_file():
            continue
        probe = subprocess.run(
            [candidate, "-m", "pip", "--version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return candidate
    raise ImageError("python3 with pip is needed to download the uv wheel from PyPI")


def make_uv_image(buildah: Buildah, *, version: str, work: Path, report: Reporter) -> str:
    """Build the uv image (`/uv`, `/uvx`) from the uv wheel on PyPI; its image id."""
    python = python_with_pip()
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="uv-", dir=work) as tmp:
        download = Path(tmp) / "wheel"
        proc = subprocess.run(
            build_pip_download_argv(python=python, version=version, dest=download),
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = sorted(download.glob("uv-*.whl")) if download.is_dir() else []
        if proc.returncode != 0 or not wheels:
            raise ImageError(
                f"downloading the uv {version} wheel with pip failed: {proc.stderr.strip()[-2000:]}"
            )
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for command in ("uv", "uvx"):
                member = f"uv-{version}.data/scripts/{command}"
                (rootfs / command).write_bytes(wheel.read(member))
                (rootfs / command).chmod(0o755)
        return buildah.commit_rootfs(
            rootfs,
            reference=uv_reference(version),
            config=["--cmd=/uv"],
            report=report,
        )
