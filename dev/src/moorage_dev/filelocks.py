"""An exclusive lock on a folder, for `moorage-dev` processes on one machine that take turns.

The lock is flock(2) on the folder's `.lock` file, so the kernel drops it when its holder dies and
a crash never leaves a folder locked. Building a cache entry (`binaries.build_lock`) and claiming
the machine for a real node (`realnode_host`) hold it; what the lock protects is theirs to say.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold `<directory>/.lock` exclusively for the block, creating `directory` if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
