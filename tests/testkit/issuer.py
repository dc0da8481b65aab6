"""A real OIDC issuer for tests: signing keys from `cryptography`, discovery and JWKS over HTTP.

`LocalIssuer` serves `/.well-known/openid-configuration` and `/jwks` on 127.0.0.1 (aiohttp), signs
tokens with its current keys, rotates them, and counts JWKS requests. Its `token(...)` helper
makes good tokens by default; each argument spoils one thing (expiry, audience, issuer, key,
algorithm) for the rejection tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKeyTypes

    def public_jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))  # type: ignore[attr-defined]
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def new_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}[alg]
        private: PrivateKeyTypes = ec.generate_private_key(curve)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or secrets.token_hex(6), alg, private)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], *, kid: str | None = None) -> str:
    """An `alg: none` token (empty signature)."""
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return f"{_b64(header)}.{_b64(claims)}."


@dataclass
class LocalIssuer:
    audience: str = "moorage-test"
    keys: list[SigningKey] = field(default_factory=lambda: [new_key()])
    url: str = ""
    jwks_requests: int = 0
    discovery_requests: int = 0

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        *,
        key: SigningKey | None = None,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with `key` (default: the newest published key)."""
        key = key or self.keys[-1]
        header = {"kid": kid or key.kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), key.private, algorithm=key.alg, headers=header)  # type: ignore[arg-type]

    def rotate(self, *, keep_old: bool = True, alg: str = "RS256") -> SigningKey:
        """Publish a new key (dropping the old ones unless `keep_old`); the new key."""
        key = new_key(alg)
        self.keys = [*self.keys, key] if keep_old else [key]
        return key

    def app(self) -> web.Application:
        async def discovery(_: web.Request) -> web.Response:
            self.discovery_requests += 1
            return web.json_response(
                {
                    "issuer": self.url,
                    "jwks_uri": self.jwks_url,
                    "authorization_endpoint": f"{self.url}/authorize",
                    "token_endpoint": f"{self.url}/token",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
            )

        async def jwks(_: web.Request) -> web.Response:
            self.jwks_requests += 1
            return web.json_response({"keys": [k.public_jwk() for k in self.keys]})

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks", jwks)
        return app


@contextlib.asynccontextmanager
async def serving_issuer(issuer: LocalIssuer | None = None) -> AsyncIterator[LocalIssuer]:
    """The issuer on a free loopback port; `issuer.url` is set while it serves."""
    issuer = issuer or LocalIssuer()
    runner = web.AppRunner(issuer.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    issuer.url = f"http://127.0.0.1:{port}"
    try:
        yield issuer
    finally:
        await runner.cleanup()
