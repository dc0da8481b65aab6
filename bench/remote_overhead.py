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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from proxy_overhead import (
    HEADERS,
    INIT,
    PROXY,
    REPO,
    Send,
    call,
    free_port,
    interleaved,
    process,
    read_answer,
    row,
)

UPSTREAM = (sys.executable, str(REPO / "tests" / "e2e" / "remote" / "remote_upstream.py"))
AUTHSERVER = (sys.executable, str(REPO / "tests" / "fixtures" / "tokenexchange" / "authserver.py"))
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- remote_overhead:begin -->", "<!-- remote_overhead:end -->"
STATIC = "bench-static-token"
AUDIENCE = "https://remote.bench/mcp"


@asynccontextmanager
async def bearer_client(url: str, token: str) -> AsyncIterator[Send]:
    """A raw keep-alive client of one MCP session at `url`, sending `token`."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url,
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT},
            headers=headers,
        ) as resp:
            assert resp.status == 200, await resp.text()
            session = resp.headers.get("Mcp-Session-Id")
            await resp.read()
        if session:
            headers["Mcp-Session-Id"] = session
        async with http.post(
            url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        ) as resp:
            await resp.read()

        async def send(i: int) -> None:
            async with http.post(url, json=call(i), headers=headers) as resp:
                answer = await read_answer(resp)
                assert answer["result"]["content"][0]["text"] == "ping", answer

        yield send


@asynccontextmanager
async def authorization_server(workdir: Path) -> AsyncIterator[str]:
    config = {
        "user": "bench",
        "lifetime": 3600,
        "clients": {
            "bench-client": {
                "secret": "c",
                "scopes": ["openid", "mcp"],
                "audience": "moorage-proxy",
                "redirect_uri": "http://127.0.0.1/cb",
            },
            "moorage-proxy": {
                "secret": "p",
                "scopes": ["openid", "mcp"],
                "audience": AUDIENCE,
                "exchange": True,
            },
        },
    }
    path = workdir / "as.json"
    path.write_text(json.dumps(config))
    proc = await asyncio.create_subprocess_exec(
        *AUTHSERVER, "--port", "0", "--config", str(path), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = (await proc.stdout.readline()).decode()
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        await proc.wait()


async def caller_token(issuer: str) -> str:
    async with aiohttp.ClientSession() as http:
        query = {
            "response_type": "code",
            "client_id": "bench-client",
            "redirect_uri": "http://127.0.0.1/cb",
            "scope": "openid mcp",
            "state": "s",
        }
        async with http.get(f"{issuer}/authorization", params=query, allow_redirects=False) as resp:
            location = resp.headers["Location"]
        code = dict(parse_qsl(urlsplit(location).query))["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1/cb",
        }
        basic = aiohttp.encode_basic_auth("bench-client", "c")
        async with http.post(
            f"{issuer}/token", data=form, headers={"Authorization": basic}
        ) as resp:
            token: str = (await resp.json())["access_token"]
            return token


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


def write_section(section: str) -> None:
    text = DOC.read_text()
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


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
        async with authorization_server(workdir) as issuer:
            caller = await caller_token(issuer)
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
                AUDIENCE,
                "--record",
                record,
            )
            # Directly, the client presents a token the remote accepts: one exchanged once.
            async with aiohttp.ClientSession() as http:
                form = {
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": caller,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "audience": AUDIENCE,
                }
                basic = aiohttp.encode_basic_auth("moorage-proxy", "p")
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
                        "audience": "moorage-proxy",
                        "jwks_url": f"{issuer}/jwks.json",
                    },
                    "outgoing_auth": {
                        "type": "tokenExchange",
                        "config_name": "bench",
                        "token_exchange": {
                            "token_url": f"{issuer}/token",
                            "client_id": "moorage-proxy",
                            "client_secret": {"env": "BENCH_EXCHANGE_SECRET"},
                            "audience": AUDIENCE,
                        },
                    },
                },
                {"BENCH_EXCHANGE_SECRET": "p"},
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
    write_section(section)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--calls", type=int, default=1000, help="sequential calls per measurement (default 1000)"
    )
    options = parser.parse_args()
    asyncio.run(main(options.calls))
