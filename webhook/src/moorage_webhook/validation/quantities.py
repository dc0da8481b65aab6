"""Kubernetes resource quantities (`500m`, `1Gi`, `2`, `1e3`): syntax and value.

Pure: no I/O. The value is needed to check that a request does not exceed its limit, which the
apiserver enforces on the pods the operator creates; catching it at admission names the field.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation
from typing import Final

from moorage_webhook.validation.verdict import quoted

_QUANTITY: Final = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>[KMGTPE]i)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?",
    re.ASCII,
)
_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class QuantityError(ValueError):
    """Not a quantity; the message shows what is expected."""


def parse_quantity(value: object) -> Decimal:
    """The numeric value of a quantity given as a JSON number or string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuantityError("must be a quantity such as 500m, 1Gi or 2")
    result = _quantity_value(str(value) if not isinstance(value, str) else value)
    if isinstance(result, str):
        raise QuantityError(result)
    return result


@functools.lru_cache(maxsize=1024)
def _quantity_value(text: str) -> Decimal | str:
    """The value, or why `text` is no quantity. Memoised: a cluster writes the same few
    quantities (100m, 256Mi, 1) over and over, and a Decimal is immutable, so sharing is safe."""
    try:
        return _parse_text(text)
    except QuantityError as exc:
        return str(exc)


def _parse_text(text: str) -> Decimal:
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise QuantityError(f"{quoted(text)} is not a quantity (expected e.g. 500m, 128Mi, 1, 2e3)")
    try:
        number = Decimal(match["number"])
        if match["binary"]:
            return number * _BINARY[match["binary"]]
        if match["decimal"]:
            return number.scaleb(_DECIMAL[match["decimal"]])
        if match["exponent"]:
            exponent = int(match["exponent"])
            if abs(exponent) > 100:
                raise QuantityError(f"{quoted(text)}: exponent is out of range")
            return number.scaleb(exponent)
    except InvalidOperation as exc:
        raise QuantityError(f"{quoted(text)} is not a quantity") from exc
    return number
