"""Running buildah: the command lines (pure builders) and one runner that executes them.

buildah builds Dockerfiles without a daemon. As root in a container, `--isolation chroot` is what
works: RUN steps then share the machine's network (`uv sync` and `apt-get` reach the package
indexes) without needing runc to create namespaces. `--pull=never` keeps every build off image
registries: base images are made locally and passed through the Dockerfile's build arguments.
Images live in buildah's default storage (`buildah images` shows them); what other code uses is
the OCI archive each build writes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

Reporter = Callable[[str], None]
ISOLATION = "chroot"
# How much of a failed command's output an error carries.
_TAIL_LINES = 30
# With chroot isolation buildah copies its own binary into a sealed memfd for each RUN step; now
# and then the kernel refuses the seal with EBUSY. Nothing was built wrong, and running the build
# again succeeds (the steps done so far come from the layer cache).
TRANSIENT_FAILURE = "sealing memfd copy"
BUILD_ATTEMPTS = 3


def _tail(output: str) -> str:
    return "\n".join(output.strip().splitlines()[-_TAIL_LINES:])


class ImageError(RuntimeError):
    """An image could not be built or imported; the message says what failed and where to look."""


def run_logged(argv: list[str], *, what: str, log: Path, append: bool = False) -> None:
    """Run a long command with its output going to `log` as it comes; ImageError naming `what`
    with the output's tail when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a" if append else "w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ImageError(f"{what} failed (full output in {log}):\n{_tail(log.read_text())}")


def build_bud_argv(
    *,
    dockerfile: Path,
    context: Path,
    reference: str,
    target: str | None,
    build_args: Mapping[str, str],
) -> list[str]:
    """`buildah bud` for one image, with layer caching shared between builds of one Dockerfile."""
    argv = [
        "bud",
        f"--isolation={ISOLATION}",
        "--layers",
        "--pull=never",
        f"--file={dockerfile}",
        f"--tag={reference}",
    ]
    if target is not None:
        argv.append(f"--target={target}")
    argv += [f"--build-arg={name}={value}" for name, value in sorted(build_args.items())]
    argv.append(str(context))
    return argv


def build_push_argv(*, reference: str, layout: Path, digest_file: Path) -> list[str]:
    """Write `reference` as a one-image OCI layout directory whose ref name is the full reference."""
    return [
        "push",
        "--quiet",
        f"--digestfile={digest_file}",
        reference,
        f"oci:{layout}:{reference}",
    ]


def build_inspect_id_argv(reference: str) -> list[str]:
    return ["inspect", "--type=image", "--format={{.FromImageID}}", reference]


@dataclass(frozen=True, slots=True)
class Buildah:
    """Runs `buildah` commands; every failure becomes an `ImageError` with the output's tail."""

    executable: str = "buildah"

    @classmethod
    def find(cls) -> Buildah:
        found = shutil.which("buildah")
        if found is None:
            raise ImageError("buildah is not installed (run scripts/images-deps.sh as root)")
        return cls(executable=found)

    def run(self, argv: list[str], *, what: str, log: Path | None = None) -> str:
        """Run `buildah <argv>`; its stdout, or ImageError naming `what`.

        With `log`, the output goes to that file as it comes (a build takes minutes: the file
        shows where it is) and the return value is empty.
        """
        if log is None:
            proc = subprocess.run(
                [self.executable, *argv], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise ImageError(f"{what} failed:\n{_tail(proc.stderr + proc.stdout)}")
            return proc.stdout
        run_logged([self.executable, *argv], what=what, log=log)
        return ""

    def build(self, argv: list[str], *, what: str, log: Path, report: Reporter) -> None:
        """`run` for `buildah bud`, again when it fails with `TRANSIENT_FAILURE` only.

        buildah 1.28 leaves a working container behind for a stage that is only copied from
        (`FROM ${UV_IMAGE} AS uv`), and for every stage of a failed build; those the build
        created are removed afterwards, so they neither pile up nor pin images.
        """
        before = set(self.container_ids())
        try:
            for attempt in range(1, BUILD_ATTEMPTS + 1):
                try:
                    self.run(argv, what=what, log=log)
                    return
                except ImageError as exc:
                    if TRANSIENT_FAILURE not in str(exc) or attempt == BUILD_ATTEMPTS:
                        raise
                    report(f"{what}: buildah could not seal its memfd (EBUSY); building again")
        finally:
            for container in sorted(set(self.container_ids()) - before):
                subprocess.run([self.executable, "rm", container], capture_output=True, check=False)

    def container_ids(self) -> list[str]:
        proc = subprocess.run(
            [self.executable, "containers", "--quiet", "--notruncate"],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.split() if proc.returncode == 0 else []

    def image_id(self, reference: str) -> str | None:
        """The id of `reference` in local storage, None when it is not there."""
        proc = subprocess.run(
            [self.executable, *build_inspect_id_argv(reference)],
            capture_output=True,
            text=True,
            check=False,
        )
        image_id = proc.stdout.strip()
        return image_id if proc.returncode == 0 and image_id else None

    def remove_image(self, image_id: str) -> bool:
        """Remove an image that nothing uses any more; False when it is still in use or gone."""
        proc = subprocess.run(
            [self.executable, "rmi", image_id], capture_output=True, text=True, check=False
        )
        return proc.returncode == 0

    def commit_rootfs(
        self,
        rootfs: Path,
        *,
        reference: str,
        config: list[str],
        report: Reporter,
    ) -> str:
        """An image holding exactly the directory tree `rootfs`, configured by `buildah config`
        arguments; its id."""
        started = time.monotonic()
        container = self.run(["from", "scratch"], what="buildah from scratch").strip()
        try:
            mountpoint = Path(self.run(["mount", container], what="buildah mount").strip())
            # cp -a keeps owners, modes, links and device nodes, which `buildah copy` would not.
            proc = subprocess.run(
                ["cp", "-a", f"{rootfs}/.", f"{mountpoint}/"],
                capture_output=True,
                text=True,
                check=False,
            )
            self.run(["umount", container], what="buildah umount")
            if proc.returncode != 0:
                raise ImageError(f"copying {rootfs} into an image failed: {proc.stderr.strip()}")
            if config:
                self.run(["config", *config, container], what=f"configure {reference}")
            image_id = self.run(
                ["commit", "--quiet", "--rm", container, reference], what=f"commit {reference}"
            ).strip()
        except BaseException:
            subprocess.run([self.executable, "rm", container], capture_output=True, check=False)
            raise
        report(f"{reference}: committed in {time.monotonic() - started:.0f}s")
        return image_id
