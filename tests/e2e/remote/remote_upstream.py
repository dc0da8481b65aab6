"""The remote MCP server of the remote-proxy tests: the `mcp` SDK's server on streamable HTTP,
requiring a bearer token.

`--transport sse` serves the legacy HTTP+SSE transport at `/sse` instead of `/mcp`.
The SDK does the work (`MCPServer` with `AuthSettings` and a `TokenVerifier`: its bearer
middleware answers 401 without a valid token). The verifier is configuration: with `--jwks`,
a JWT signed by the authorization server's keys, for audience `--audience`; with `--static`,
one fixed token (the `bearerToken`/`headerInjection` cases, where `--header` names the header
carrying it). Every `Authorization` (and `--header`) value the server receives is appended to
`--record`, one line per request, so a test can check what reached it.

Tools: `echo` (returns its text), `secret` (returns a fixed string; the tests' Cedar policy
denies it) and `hidden` (the tests' tool filter hides it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer


class JwksVerifier:
    """A JWT from the authorization server's JWKS, for one audience."""

    def __init__(self, jwks_url: str, issuer: str, audience: str) -> None:
        self.keys = jwt.PyJWKClient(jwks_url)
        self.issuer = issuer
        self.audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self.keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=self.audience, issuer=self.issuer
            )
        except jwt.PyJWTError:
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=claims.get("exp"),
            subject=claims.get("sub"),
        )


class StaticVerifier:
    """One fixed token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def verify_token(self, token: str) -> AccessToken | None:
        if token != self.token:
            return None
        return AccessToken(token=token, client_id="static", scopes=[])


class HeaderAsBearer:
    """ASGI: takes the token from `header` (headerInjection) and records what arrives."""

    def __init__(self, app: Any, record: str, header: str | None) -> None:
        self.app = app
        self.record = record
        self.header = header.lower().encode() if header else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            seen = headers.get(b"authorization", b"-").decode()
            injected = headers.get(self.header) if self.header else None
            line = f"{seen} {injected.decode() if injected else '-'}\n"
            with Path(self.record).open("a") as handle:  # noqa: ASYNC230 (one short line)
                handle.write(line)
            if injected is not None:
                scope = dict(scope)
                others = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
                scope["headers"] = [*others, (b"authorization", b"Bearer " + injected)]
        await self.app(scope, receive, send)


def build(args: argparse.Namespace) -> Any:
    verifier: Any = (
        JwksVerifier(args.jwks, args.issuer, args.audience)
        if args.jwks
        else StaticVerifier(args.static)
    )
    server = MCPServer(
        "remote-upstream",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=args.issuer,
            resource_server_url=f"http://{args.host}:{args.port}/mcp",
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool()
    def secret() -> str:
        """Something the policy does not allow."""
        return "the secret"

    @server.tool()
    def hidden() -> str:
        """A tool the filter hides."""
        return "hidden"

    # The SDK's DNS-rebinding guard (on for a loopback `host`) admits loopback Host headers only;
    # a pod on the real node calls the server at the address it listens on.
    app = (
        server.sse_app(host=args.host)
        if args.transport == "sse"
        else server.streamable_http_app(host=args.host)
    )
    return HeaderAsBearer(app, args.record, args.header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--transport", choices=["streamable-http", "sse"], default="streamable-http"
    )
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--jwks")
    parser.add_argument("--audience")
    parser.add_argument("--static")
    parser.add_argument("--header")
    parser.add_argument("--record", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    uvicorn.run(build(args), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
