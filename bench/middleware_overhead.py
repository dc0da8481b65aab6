"""What the middleware adds per request: authentication, Cedar authorisation, tool filter, audit.

Two measurements:

1. In-process CPU cost of each part, on the hot path as the proxy runs it: verifying a bearer JWT
   (RS256 and ES256, keys cached), and the pipeline steps (audit on, a renaming tool filter,
   Cedar with two policies) around a terminal that answers at once, for `tools/call` and for a
   `tools/list` of 10 tools (filtered per tool). Microseconds per request, median of repeats.
2. End to end: `moorage-proxyrunner run --local` (its own process) in front of `mcp-server-time`,
   sequential `tools/call` over HTTP from a raw JSON-RPC client, once without middleware and once
   with `--config` turning on OIDC (a local issuer), Cedar, a rename and audit. Blocks of 50
   calls alternate between the two proxies so that machine noise falls on both alike.

Prints the figures and writes them into docs/benchmarks.md between this benchmark's markers.

    uv run python bench/middleware_overhead.py [--calls 600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from testkit.issuer import LocalIssuer, new_key, serving_issuer  # noqa: E402

from moorage_api.runconfig import RunConfigOIDC  # noqa: E402
from moorage_proxyrunner.config.toolpolicy import ToolOverride, ToolPolicy  # noqa: E402
from moorage_proxyrunner.policy.audit import AuditStep, AuditWriter  # noqa: E402
from moorage_proxyrunner.policy.authn import Authenticator, OidcSettings  # noqa: E402
from moorage_proxyrunner.policy.authz import Authorizer, AuthzStep, compile_authz  # noqa: E402
from moorage_proxyrunner.policy.jwks import JwksCache  # noqa: E402
from moorage_proxyrunner.policy.toolfilter import ToolFilterStep  # noqa: E402
from moorage_proxyrunner.protocol.pipeline import McpCall, Pipeline, Reply  # noqa: E402

START = "<!-- middleware_overhead:begin -->"
END = "<!-- middleware_overhead:end -->"
DOC = REPO / "docs" / "benchmarks.md"
PROXY = str(Path(sys.executable).with_name("moorage-proxyrunner"))
TIME = str(Path(sys.executable).with_name("mcp-server-time"))
POLICIES = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"now") '
    'when { principal.groups.contains("time") && context.arguments.timezone == "UTC" };',
    'permit(principal, action == Action::"call_tool", resource == Tool::"convert_time") '
    'when { principal.groups.contains("time") };',
]
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "now", "arguments": {"timezone": "UTC"}},
}


class MemoryFetcher:
    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer

    async def fetch_jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.issuer.keys]}

    async def fetch_issuer(self) -> str:
        return self.issuer.url


async def per_call_us(fn: Callable[[], Any], *, n: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean time of `n` awaited calls, in microseconds."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            await fn()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


async def in_process() -> dict[str, float]:
    issuer = LocalIssuer(url="https://issuer.bench", keys=[new_key("RS256"), new_key("ES256")])
    oidc = OidcSettings(kind="oidc", audience=issuer.audience, issuer=issuer.url)
    auth = Authenticator(oidc, keys=JwksCache(MemoryFetcher(issuer)))
    rs = "Bearer " + issuer.token(key=issuer.keys[0], groups=["time"])
    es = "Bearer " + issuer.token(key=issuer.keys[1], groups=["time"])
    identity = await auth.authenticate(rs)

    def first_use(header: str) -> Callable[[], Any]:
        def check() -> Any:
            auth._verified.clear()  # as if each request brought a token not seen before
            return auth.authenticate(header)

        return check

    results = {
        "authn_rs256": await per_call_us(first_use(rs), n=400),
        "authn_es256": await per_call_us(first_use(es), n=400),
        "authn_remembered": await per_call_us(lambda: auth.authenticate(rs), n=1000),
    }
    tools = [{"name": f"tool_{i}", "description": "x"} for i in range(8)]
    tools += [{"name": "get_current_time"}, {"name": "convert_time"}]

    async def terminal(call: McpCall) -> Reply:
        if call.method == "tools/list":
            return Reply({"jsonrpc": "2.0", "id": 1, "result": {"tools": [dict(t) for t in tools]}})
        return Reply({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})

    filter_step = ToolFilterStep(
        ToolPolicy(overrides={"get_current_time": ToolOverride(name="now")})
    )
    steps = [
        AuditStep(enabled=True, writer=AuditWriter(io.StringIO())),
        filter_step,
        AuthzStep(Authorizer(compile_authz(POLICIES)), tool_name=filter_step.policy.client_name),
    ]
    bare = Pipeline([]).bind(terminal)
    full = Pipeline(steps).bind(terminal)
    call = McpCall(CALL, identity, "legacy", "s")
    listing = McpCall({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, identity, "legacy")
    assert (await full(call)).status == 200
    listed = (await full(listing)).message
    assert listed is not None
    assert [t["name"] for t in listed["result"]["tools"]] == [
        "now",
        "convert_time",
    ]
    results["steps_call"] = await per_call_us(lambda: full(call), n=1000) - await per_call_us(
        lambda: bare(call), n=1000
    )
    results["steps_list"] = await per_call_us(lambda: full(listing), n=300) - await per_call_us(
        lambda: bare(listing), n=300
    )
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def proxy(config: Path | None) -> AsyncIterator[str]:
    port = free_port()
    args = [PROXY, "run", "--local", "--port", str(port), "--log-level", "WARNING"]
    if config is not None:
        args += ["--config", str(config)]
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [*args, "--", TIME, "--local-timezone", "UTC"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/health") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the proxy did not become healthy")
        yield f"{base}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=20)


async def session(http: aiohttp.ClientSession, url: str, token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    async with http.post(url, json=init, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        headers["Mcp-Session-Id"] = resp.headers["Mcp-Session-Id"]
        headers["MCP-Protocol-Version"] = "2025-06-18"
    return headers


async def timed_calls(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], name: str, n: int
) -> list[float]:
    body = dict(CALL)
    body["params"] = {"name": name, "arguments": {"timezone": "UTC"}}
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with http.post(url, json=body, headers=headers) as resp:
            answer = await resp.json()
        out.append((time.perf_counter() - started) * 1000)
        assert not answer["result"].get("isError"), answer
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def end_to_end(calls: int) -> dict[str, float]:
    async with serving_issuer() as issuer:
        runconfig = {
            "schema_version": "moorage/v1",
            "oidc": RunConfigOIDC(
                type="oidc", issuer=issuer.url, audience=issuer.audience
            ).model_dump(mode="json"),
            "authz": {"policies": POLICIES},
            "tools_override": {"get_current_time": {"name": "now"}},
            "audit": {"enabled": True},
        }
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "runconfig.json"
            config.write_text(json.dumps(runconfig))
            token = issuer.token(groups=["time"], exp=int(time.time()) + 3600)
            async with (
                proxy(None) as plain_url,
                proxy(config) as guarded_url,
                aiohttp.ClientSession() as http,
            ):
                plain = await session(http, plain_url, None)
                guarded = await session(http, guarded_url, token)
                await timed_calls(http, plain_url, plain, "get_current_time", 50)
                await timed_calls(http, guarded_url, guarded, "now", 50)
                off: list[float] = []
                on: list[float] = []
                for _ in range(max(1, calls // 50)):
                    off += await timed_calls(http, plain_url, plain, "get_current_time", 50)
                    on += await timed_calls(http, guarded_url, guarded, "now", 50)
    return {
        "off_p50": pct(off, 0.5),
        "on_p50": pct(on, 0.5),
        "off_p99": pct(off, 0.99),
        "on_p99": pct(on, 0.99),
        "n": float(len(on)),
    }


def render(cpu: dict[str, float], e2e: dict[str, float]) -> str:
    load = os.getloadavg()[0]
    return "\n".join(
        [
            "## Proxy runner: middleware cost per request",
            "",
            "`bench/middleware_overhead.py`. CPU time per request of each part, in process "
            "(median of 5 runs, keys and policies cached as in the proxy):",
            "",
            "| part | µs per request |",
            "|---|---|",
            f"| authentication, RS256 JWT, first use of the token | {cpu['authn_rs256']:.0f} |",
            f"| authentication, ES256 JWT, first use of the token | {cpu['authn_es256']:.0f} |",
            f"| authentication, a token already verified (remembered ≤ 60 s) | "
            f"{cpu['authn_remembered']:.0f} |",
            f"| audit + tool filter + Cedar, `tools/call` | {cpu['steps_call']:.0f} |",
            f"| audit + tool filter + Cedar, `tools/list` of 10 tools | {cpu['steps_list']:.0f} |",
            "",
            f"End to end, {int(e2e['n'])} sequential `tools/call` to `mcp-server-time` through "
            "`moorage-proxyrunner run --local` (own process), without middleware and with OIDC "
            "(RS256) + Cedar (2 policies) + a rename + audit, blocks of 50 alternating, "
            "milliseconds:",
            "",
            "| | p50 | p99 |",
            "|---|---|---|",
            f"| no middleware | {e2e['off_p50']:.3f} | {e2e['off_p99']:.3f} |",
            f"| all middleware | {e2e['on_p50']:.3f} | {e2e['on_p99']:.3f} |",
            f"| added | +{e2e['on_p50'] - e2e['off_p50']:.3f} | "
            f"+{e2e['on_p99'] - e2e['off_p99']:.3f} |",
            "",
            f"- Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load "
            f"average {load:.1f} at the end; client, proxies, issuer and servers share the CPUs.",
        ]
    )


def write_section(section: str) -> None:
    block = f"{START}\n{section}\n{END}"
    text = (
        DOC.read_text()
        if DOC.exists()
        else "# Benchmarks\n\nFigures measured by `bench/` on the 2-core machine.\n"
    )
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600, help="timed calls per proxy")
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args()
    cpu = await in_process()
    e2e = await end_to_end(args.calls)
    section = render(cpu, e2e)
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    asyncio.run(main())
