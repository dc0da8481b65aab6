"""How a decoded JSON value reads in an error message ("must be a string, not a number").

Pure: shared by every component that checks JSON documents (the webhook, the proxy runner's pod
patches, the registry formats), so their messages name types the same way.
"""

from __future__ import annotations


def describe_json_type(value: object, *, array: str = "a list") -> str:
    """`null`, `a boolean`, `a number`, `a string`, `array` (Kubernetes says "list", JSON
    documents "array"), `an object`; the Python type name for anything JSON cannot hold."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return array
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
