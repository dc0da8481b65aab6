"""The name syntaxes of Kubernetes, with the reason a name does not fit.

Pure: no I/O. Each `*_problem` function returns None for a valid value or a short sentence saying
what is expected, ready to follow a field path (`spec.secrets[0].name: must be ...`). They mirror
`k8s.io/apimachinery/pkg/util/validation` so that what the webhook admits, the apiserver accepts
when the operator later writes the children.
"""

from __future__ import annotations

import re
from typing import Final

from moorage_api.base import CONFIG_MAP_KEY_PATTERN, ENV_NAME_PATTERN
from moorage_api.mcpserver import ALLOWED_HOST_NAME_MAX_LENGTH, ALLOWED_HOST_PATTERN
from moorage_webhook.validation.verdict import quoted

DNS1123_LABEL_MAX: Final = 63
DNS1123_SUBDOMAIN_MAX: Final = 253
LABEL_VALUE_MAX: Final = 63
QUALIFIED_NAME_MAX: Final = 63

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*", re.ASCII
)
_DNS1035_LABEL: Final = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
_QUALIFIED_NAME: Final = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?", re.ASCII)
_ENV_NAME: Final = re.compile(ENV_NAME_PATTERN.strip("^$"), re.ASCII)
_CONFIG_KEY: Final = re.compile(CONFIG_MAP_KEY_PATTERN.strip("^$"), re.ASCII)
_ALLOWED_HOST: Final = re.compile(ALLOWED_HOST_PATTERN, re.ASCII)
_IANA_SVC_NAME: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)


def dns1123_label_problem(value: str, *, max_length: int = DNS1123_LABEL_MAX) -> str | None:
    if len(value) > max_length:
        return f"{quoted(value)} must be at most {max_length} characters"
    if _DNS1123_LABEL.fullmatch(value) is None:
        return (
            f"{quoted(value)} must be a DNS label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def dns1035_label_problem(value: str, *, max_length: int = DNS1123_LABEL_MAX) -> str | None:
    if len(value) > max_length:
        return f"{quoted(value)} must be at most {max_length} characters"
    if _DNS1035_LABEL.fullmatch(value) is None:
        return (
            f"{quoted(value)} must be a DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit"
        )
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"{quoted(value)} must be at most {DNS1123_SUBDOMAIN_MAX} characters"
    if _DNS1123_SUBDOMAIN.fullmatch(value) is None:
        return (
            f"{quoted(value)} must be a lowercase DNS-1123 name: lowercase letters, digits, '-' and "
            "'.', starting and ending with a letter or digit"
        )
    return None


def env_name_problem(value: str) -> str | None:
    if _ENV_NAME.fullmatch(value) is None:
        return (
            f"{quoted(value)} is not a valid environment variable name (letters, digits, '_', '-' "
            "and '.', not starting with a digit)"
        )
    return None


def config_key_problem(value: str) -> str | None:
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"{quoted(value)} must be at most {DNS1123_SUBDOMAIN_MAX} characters"
    if _CONFIG_KEY.fullmatch(value) is None or value in {".", ".."}:
        return f"{quoted(value)} is not a valid key (letters, digits, '-', '_' and '.')"
    return None


def qualified_name_problem(value: str) -> str | None:
    """A label or annotation key: `[prefix/]name`, prefix a DNS subdomain."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            return f"{quoted(value)}: the prefix before '/' must not be empty"
        if (why := dns1123_subdomain_problem(prefix)) is not None:
            return f"{quoted(value)}: prefix {why}"
    if not name:
        return f"{quoted(value)}: the name part must not be empty"
    if len(name) > QUALIFIED_NAME_MAX:
        return f"{quoted(value)}: the name part must be at most {QUALIFIED_NAME_MAX} characters"
    if _QUALIFIED_NAME.fullmatch(name) is None:
        return (
            f"{quoted(value)} is not a valid key: alphanumerics, '-', '_' and '.' starting and ending "
            "with an alphanumeric, with an optional DNS prefix and '/'"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > LABEL_VALUE_MAX:
        return f"label value {quoted(value)} must be at most {LABEL_VALUE_MAX} characters"
    if value and _QUALIFIED_NAME.fullmatch(value) is None:
        return (
            f"label value {quoted(value)} must be empty or alphanumerics, '-', '_' and '.' starting "
            "and ending with an alphanumeric"
        )
    return None


def port_name_problem(value: str) -> str | None:
    """An IANA service name, as container and Service port names must be."""
    if len(value) > 15:
        return f"port name {quoted(value)} must be at most 15 characters"
    if _IANA_SVC_NAME.fullmatch(value) is None or "--" in value:
        return f"port name {quoted(value)} must be lowercase letters, digits and single '-'"
    if not any(c.isalpha() for c in value):
        return f"port name {quoted(value)} must contain at least one letter"
    return None


def allowed_host_problem(value: str) -> str | None:
    """A `spec.allowedHosts` entry: what the proxy compares with a request's `Host` header."""
    expected = (
        "expected a lowercase host name or IPv4 address, optionally followed by :port "
        "(1-65535) or :* (any port), e.g. mcp.example.com or mcp.example.com:443"
    )
    name, sep, port = value.rpartition(":")
    if not sep:
        name = value
    elif port != "*" and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"{quoted(value)} has an invalid port ({expected})"
    if len(name) > ALLOWED_HOST_NAME_MAX_LENGTH:
        return (
            f"{quoted(value)}: the host name must be at most {ALLOWED_HOST_NAME_MAX_LENGTH} "
            "characters"
        )
    if any(len(label) > DNS1123_LABEL_MAX for label in name.split(".")):
        return (
            f"{quoted(value)}: each dot-separated part must be at most {DNS1123_LABEL_MAX} "
            "characters"
        )
    if _ALLOWED_HOST.fullmatch(value) is None:
        return f"{quoted(value)} is not a host ({expected})"
    return None
