"""Overhead of a remote MCP call through the proxy runner, against calling the remote directly.

The remote is the `mcp` SDK's server requiring a bearer token (tests/e2e/remote/remote_upstream.py);
the proxy is `moorage-proxyrunner run --local --config` with a RunConfig naming it as `remote`:

- bearerToken: the proxy sends a fixed token; the client's is not forwarded;
- tokenExchange with a warm cache: the proxy authenticates the caller's JWT (oidc), exchanges
  it once at a real authorization server (idpyoidc, tests/fixtures/tokenexchange) and reuses
  the exchanged token for every later call.

Each way the client is the same raw keep-alive HTTP client as `bench/proxy_overhead.py`, direct
and proxied calls alternating in blocks. Prints the figures and writes them as a section of
docs/benchmarks.md. Usage: `uv run python bench/remote_overhead.py [--calls 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp

REPO_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(REPO_TESTS))

from e2e.remote.remotekit import (  # noqa: E402
    PROXY_AUDIENCE,
    PROXY_CLIENT,
    PROXY_SECRET,
    UPSTREAM_AUDIENCE,
    authorization_server,
)
from proxy_overhead import (  # noqa: E402
    HEADERS,
    PROXY,
    REPO,
    Send,
    free_port,
    http_client,
    interleaved,
    process,
    row,
    write_section,
)

UPSTREAM = (sys.executable, str(REPO / "tests" / "e2e" / "remote" / "remote_upstream.py"))
BEGIN, END = "<!-- remote_overhead:begin -->", "<!-- remote_overhead:end -->"
STATIC = "bench-static-token"


def bearer_client(url: str, token: str) -> AbstractAsyncContextManager[Send]:
    """A raw keep-alive client of one MCP session at `url`, sending `token`."""
    return http_client(url, {**HEADERS, "Authorization": f"Bearer {token}"})


async def measure(
    workdir: Path,
    remote_argv: tuple[str, ...],
    remote_port: int,
    runconfig: dict[str, Any],
    env: dict[str, str],
    direct_token: str,
    proxy_token: str,
    calls: int,
    warmup: int,
) -> tuple[Any, Any]:
    async with process(*remote_argv, port=remote_port):
        url = f"http://127.0.0.1:{remote_port}/mcp"
        config = workdir / f"runconfig-{remote_port}.json"
        config.write_text(json.dumps({"schema_version": "moorage/v1", **runconfig}))
        proxy_port = free_port()
        os.environ.update(env)
        async with (
            process(
                *PROXY,
                "--port",
                str(proxy_port),
                "--config",
                str(config),
                port=proxy_port,
                ready_path="/health",
            ),
            bearer_client(url, direct_token) as direct,
            bearer_client(f"http://127.0.0.1:{proxy_port}/mcp", proxy_token) as proxied,
        ):
            return await interleaved(direct, proxied, calls, warmup)


async def main(calls: int) -> None:
    warmup = max(50, calls // 10)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        record = str(workdir / "received.log")
        port = free_port()
        static_argv = (
            *UPSTREAM,
            "--port",
            str(port),
            "--issuer",
            "http://127.0.0.1:9",
            "--static",
            STATIC,
            "--record",
            record,
        )
        bearer = await measure(
            workdir,
            static_argv,
            port,
            {
                "remote": {"url": f"http://127.0.0.1:{port}/mcp", "allow_private_endpoint": True},
                "outgoing_auth": {
                    "type": "bearerToken",
                    "config_name": "bench",
                    "bearer_token": {"env": "BENCH_REMOTE_TOKEN"},
                },
            },
            {"BENCH_REMOTE_TOKEN": STATIC},
            STATIC,
            "ignored-by-the-proxy",
            calls,
            warmup,
        )
        async with authorization_server(workdir) as server:
            issuer = server.base
            caller = await server.caller_token()
            port = free_port()
            jwks_argv = (
                *UPSTREAM,
                "--port",
                str(port),
                "--issuer",
                issuer,
                "--jwks",
                f"{issuer}/jwks.json",
                "--audience",
                UPSTREAM_AUDIENCE,
                "--record",
                record,
            )
            # Directly, the client presents a token the remote accepts: one exchanged once.
            async with aiohttp.ClientSession() as http:
                form = {
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": caller,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "audience": UPSTREAM_AUDIENCE,
                }
                basic = aiohttp.encode_basic_auth(PROXY_CLIENT, PROXY_SECRET)
                async with http.post(
                    f"{issuer}/token", data=form, headers={"Authorization": basic}
                ) as resp:
                    exchanged: str = (await resp.json())["access_token"]
            exchange = await measure(
                workdir,
                jwks_argv,
                port,
                {
                    "remote": {
                        "url": f"http://127.0.0.1:{port}/mcp",
                        "allow_private_endpoint": True,
                    },
                    "oidc": {
                        "type": "oidc",
                        "issuer": issuer,
                        "audience": PROXY_AUDIENCE,
                        "jwks_url": f"{issuer}/jwks.json",
                    },
                    "outgoing_auth": {
                        "type": "tokenExchange",
                        "config_name": "bench",
                        "token_exchange": {
                            "token_url": f"{issuer}/token",
                            "client_id": PROXY_CLIENT,
                            "client_secret": {"env": "BENCH_EXCHANGE_SECRET"},
                            "audience": UPSTREAM_AUDIENCE,
                        },
                    },
                },
                {"BENCH_EXCHANGE_SECRET": PROXY_SECRET},
                exchanged,
                caller,
                calls,
                warmup,
            )
    lines = [
        "## Proxy runner: overhead of a remote call",
        "",
        f"`bench/remote_overhead.py`, {calls} sequential `tools/call` (echo) each way after "
        f"{warmup} warm-up calls, direct and proxied calls alternating in blocks of 50, raw "
        "keep-alive JSON-RPC clients on loopback, milliseconds. The remote is the `mcp` SDK's "
        "streamable-HTTP server requiring a bearer token; the proxy is `moorage-proxyrunner run "
        "--local --config` with the remote in its RunConfig. Direct, the client sends the token "
        "the remote accepts; through the proxy, the proxy sends it (bearerToken), or "
        "authenticates the caller's JWT and sends the token exchanged for it, from its cache "
        "after the first call (tokenExchange, idpyoidc as the authorization server).",
        "",
        "| outgoing auth | direct p50 | proxy p50 | overhead p50 | direct p99 | proxy p99 | overhead p99 |",
        "|---|---|---|---|---|---|---|",
        row("bearerToken", *bearer),
        row("tokenExchange, warm cache (with oidc on the caller)", *exchange),
        "",
        f"- Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
        f"{os.getloadavg()[0]:.1f} at the end; client, proxy, remote and authorization server "
        "share the CPUs with whatever else runs.",
    ]
    section = "\n".join(lines)
    print(section)
    write_section(section, BEGIN, END)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--calls", type=int, default=1000, help="sequential calls per measurement (default 1000)"
    )
    options = parser.parse_args()
    asyncio.run(main(options.calls))
