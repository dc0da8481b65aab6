"""What a proxy sends upstream: remote transports, outgoing authentication types, header names.

Pure: no I/O. Shared by the kinds that point a proxy at an upstream (MCPRemoteProxy,
MCPExternalAuthConfig), the RunConfig that carries them, the webhook that checks them and the
proxy runner that uses them, so that all four agree on what is allowed.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, StringConstraints

from moorage_api.base import cel, find_duplicates

RemoteTransport = Literal["streamable-http", "sse"]
"""How a remote MCP server speaks MCP."""
OutgoingAuthType = Literal["bearerToken", "headerInjection", "tokenExchange", "unauthenticated"]
"""How a proxy authenticates itself to its upstream."""
ClientAuthMethod = Literal["client_secret_basic", "client_secret_post"]
"""How the proxy authenticates itself to a token endpoint (RFC 6749 §2.3.1)."""

GRANT_TYPE_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN, not a secret)
TOKEN_TYPE_ACCESS_TOKEN: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
TOKEN_TYPE_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105

HEADER_NAME_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
"""An HTTP field name (RFC 9110 §5.1: a token)."""
HeaderName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)
]
"""The name of a header a proxy adds to what it sends upstream."""

RESERVED_HEADERS: Final = frozenset(
    {
        # Set by the HTTP layer: overriding them would desynchronise the connection.
        "connection",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # Owned by the proxy's MCP session handling.
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        # Owned by outgoing authentication, so a forwarded header can never carry a credential
        # that the auth config does not know about.
        "authorization",
        "proxy-authorization",
    }
)
"""Header names (lower case) a configured header may not set."""


def header_name_problem(name: str) -> str | None:
    """Why `name` cannot be a configured upstream header, or None when it can."""
    if name.lower() in RESERVED_HEADERS:
        hint = (
            " (credentials come from an MCPExternalAuthConfig)"
            if "authorization" in name.lower()
            else ""
        )
        return f"header {name!r} is set by the proxy itself and cannot be configured{hint}"
    return None


def checked_header_name(name: str) -> str:
    """`name` when it can be a configured upstream header; else `ValueError` saying why."""
    if problem := header_name_problem(name):
        raise ValueError(problem)
    return name


ConfiguredHeaderName = Annotated[HeaderName, AfterValidator(checked_header_name)]
"""A header name a resource configures: valid, and not one the proxy sets itself (the CRD carries
`header_name_rule` for the same check)."""


def header_name_rule(field: str) -> dict[str, str]:
    """CEL on an object whose `field` names a configured header: `header_name_problem` as the
    apiserver can state it (reserved names, compared without case)."""
    reserved = ", ".join(f"'{name}'" for name in sorted(RESERVED_HEADERS))
    return cel(
        f"!(self.{field}.lowerAscii() in [{reserved}])",
        message=f"{field} is a header the proxy sets itself and cannot be configured",
        field_path=f".{field}",
    )


def is_private_address(host: str) -> bool:
    """True when `host` is a loopback, private, link-local, unspecified or other non-global IP
    address; False for a global address or a name.

    The proxy runner asks this of every address a remote host name resolves to, so that a name
    pointing at an internal address is refused as a literal one is.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not address.is_global


def remote_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot be a remote MCP endpoint, or None when it can.

    Only the URL's own text is checked here; private addresses behind a DNS name are refused by
    the proxy runner when it resolves them.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} must use http or https"
    host = parts.hostname
    if not host:
        return f"{url!r} has no host"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} must not carry credentials; use an MCPExternalAuthConfig"
    if parts.fragment:
        return f"{url!r} must not have a fragment"
    if port == 0:
        return f"{url!r} has port 0"
    if not allow_private:
        lowered = host.lower().rstrip(".")
        if lowered == "localhost" or lowered.endswith(".localhost") or is_private_address(host):
            return (
                f"{url!r} points at a private or loopback address; set allowPrivateEndpoint "
                "to reach it"
            )
    return None


def find_duplicate_headers(names: list[str]) -> list[str]:
    """Header names given more than once, compared without case as HTTP does."""
    return find_duplicates([name.lower() for name in names])
