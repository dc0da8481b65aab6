"""Servers the tests start from Debian packages (`redis-server`, `haproxy`): find the binary, or
skip the test saying which package is missing; under MOORAGE_REQUIRE_SERVERS=1 (CI sets it, and
`scripts/realnode-deps.sh` installs the packages) fail instead, so CI never skips them silently.
MOORAGE_REQUIRE_REDIS=1, the switch's earlier name, means the same.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE = ("MOORAGE_REQUIRE_SERVERS", "MOORAGE_REQUIRE_REDIS")


def require_debian_binary(binary: str, package: str) -> str:
    """The path of `binary` (Debian package `package`), or skip/fail saying why."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/bin:/usr/sbin")
    if found is None:
        reason = (
            f"{binary} is not installed (Debian package {package}; scripts/test.sh installs it "
            "as root)"
        )
        if any(os.environ.get(name) == "1" for name in REQUIRE):
            pytest.fail(reason)
        pytest.skip(reason)
    return found
