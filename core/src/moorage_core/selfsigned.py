"""`python -m moorage_core.selfsigned DIR COMMON_NAME [HOST...]`: write a self-signed pair.

Run by `tls.write_self_signed_apart` at a server's start-up when no certificate is mounted: the
certificate library is loaded by this short-lived process only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from moorage_core.tls import build_self_signed, write_pair


def main(argv: Sequence[str]) -> int:
    """Write `tls.crt`/`tls.key` for the hosts into the directory; the exit code."""
    if len(argv) < 2:
        print("usage: python -m moorage_core.selfsigned DIR COMMON_NAME [HOST...]", file=sys.stderr)
        return 2
    directory, common_name, *hosts = argv
    write_pair(build_self_signed(hosts=hosts, common_name=common_name), Path(directory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
