"""Go duration strings (`1h`, `90s`, `1h30m`) as the CRDs accept them.

Pure. The CRD schema constrains durations with `DURATION_PATTERN` and CEL's `duration()`, which
both follow Go's `time.ParseDuration` for positive values; `parse_go_duration` is the same grammar
in Python so that models, the webhook and the operator agree with the apiserver.
"""

from __future__ import annotations

import re
from typing import Final

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class DurationError(ValueError):
    """Not a Go duration; the message shows what is expected."""


def parse_go_duration(text: str) -> float:
    """Seconds in `text`, e.g. `1h30m` → 5400.0; raises `DurationError`."""
    if re.fullmatch(DURATION_PATTERN, text) is None:
        raise DurationError(f"{text!r} is not a duration (expected e.g. 30s, 10m, 1h30m)")
    return sum(float(number) * _SECONDS[unit] for number, unit in _PART.findall(text))
