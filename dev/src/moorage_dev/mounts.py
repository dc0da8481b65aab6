"""Mounts the real node makes and must take away: listing them, mounting overlays, unmounting.

containerd and kubelet mount overlays, tmpfs volumes, shm and network namespaces under the node's
state folder. Teardown finds them in /proc/self/mountinfo (`mount_points` is the pure parser) and
detaches them deepest first, which works even while something still holds one open.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

_MNT_DETACH = 2
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _raise_errno() -> None:
    errno = ctypes.get_errno()
    raise OSError(errno, os.strerror(errno))


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    """`mount -t overlay` (an OSError carries the kernel's reason)."""
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc().mount(b"overlay", str(target).encode(), b"overlay", 0, options) != 0:
        _raise_errno()


def unmount(target: Path) -> None:
    """Detach `target` now; the kernel frees it when nothing uses it any more."""
    if _libc().umount2(str(target).encode(), _MNT_DETACH) != 0:
        _raise_errno()


def mount_points(mountinfo: str) -> list[str]:
    """Mount points listed in /proc/<pid>/mountinfo text, with the kernel's octal escapes undone."""
    points: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root`, deepest first (the order to unmount them in)."""
    prefix = str(root).rstrip("/")
    text = Path("/proc/self/mountinfo").read_text()
    found = {Path(p) for p in mount_points(text) if p == prefix or p.startswith(prefix + "/")}
    return sorted(found, key=lambda p: (-len(p.parts), str(p)))


def unmount_all_under(root: Path) -> list[str]:
    """Detach every mount below `root`; the ones that would not go, with the reason."""
    # A point can be mounted over more than once; each pass takes off the top layer.
    failures: dict[Path, str] = {}
    for _ in range(4):
        points = mounts_under(root)
        if not points:
            return []
        for point in points:
            try:
                unmount(point)
            except OSError as exc:
                failures[point] = exc.strerror or str(exc)
    return [f"{p}: {failures.get(p, 'still mounted')}" for p in mounts_under(root)]
