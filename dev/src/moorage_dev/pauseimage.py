"""The real node's pause image: a tiny static C program in a one-file OCI image, made locally.

Every pod sandbox runs a pause container; with no registry reachable the CRI needs one that is
already in containerd. We compile our own (gcc, static) and pack it with `ociarchive`. The archive
is cached by the content of the source (and the compiler's version), and the image's tag is that
content hash, so a changed source never meets a stale image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moorage_dev.binaries import cache_root
from moorage_dev.ociarchive import ImageSpec, LayerFile, write_oci_archive

# Sleeps until told to stop; reaps children, since it is PID 1 of the pod's shared PID namespace
# when pods share one.
PAUSE_C = r"""
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &on_stop, NULL);
    sigaction(SIGTERM, &on_stop, NULL);
    sigaction(SIGCHLD, &on_child, NULL);
    for (;;) {
        pause();
    }
}
"""

PAUSE_REPOSITORY = "moorage.dev/pause"


class PauseImageError(RuntimeError):
    """The pause program could not be compiled; the message names what to install."""


@dataclass(frozen=True, slots=True)
class PauseImage:
    name: str
    archive: Path


def _compiler_version(gcc: str) -> str:
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else ""


def pause_tag(*, compiler: str) -> str:
    return hashlib.sha256((PAUSE_C + compiler).encode()).hexdigest()[:16]


def _cache_dir() -> Path:
    return cache_root() / "realnode"


def has_cached_pause_image() -> bool:
    """Some pause archive is cached (a machine without gcc can still use one made earlier)."""
    return any(_cache_dir().glob("pause-*.oci.tar"))


def ensure_pause_image() -> PauseImage:
    """The cached pause archive and its image name, compiled and packed on first use."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        cached = sorted(_cache_dir().glob("pause-*.oci.tar"))
        if cached:
            tag = cached[-1].name.removeprefix("pause-").removesuffix(".oci.tar")
            return PauseImage(f"{PAUSE_REPOSITORY}:{tag}", cached[-1])
        raise PauseImageError(
            "no C compiler (gcc) to build the pause image: install it with scripts/realnode-deps.sh"
        )
    tag = pause_tag(compiler=_compiler_version(gcc))
    name = f"{PAUSE_REPOSITORY}:{tag}"
    archive = _cache_dir() / f"pause-{tag}.oci.tar"
    if archive.is_file():
        return PauseImage(name, archive)
    with tempfile.TemporaryDirectory(prefix="moorage-pause-") as tmp:
        source = Path(tmp) / "pause.c"
        binary = Path(tmp) / "pause"
        source.write_text(PAUSE_C)
        proc = subprocess.run(
            [gcc, "-static", "-Os", "-s", "-o", str(binary), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PauseImageError(
                "compiling the pause image failed (a static C library is needed: install "
                f"libc6-dev with scripts/realnode-deps.sh): {proc.stderr.strip()[-400:]}"
            )
        spec = ImageSpec(
            name=name,
            files=[LayerFile("/pause", binary.read_bytes())],
            entrypoint=["/pause"],
            env=(),
        )
        write_oci_archive(spec, archive)
    return PauseImage(name, archive)
