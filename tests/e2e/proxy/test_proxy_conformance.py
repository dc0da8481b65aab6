"""The MCP conformance suite through the proxy passes every check the fixture passes directly.

The suite (npm `@modelcontextprotocol/conformance`, Node 22, installed into a cache by
`scripts/node.sh`) runs against the conformance fixture served directly over streamable HTTP,
then through the proxy with the fixture as a stdio backend and as a streamable-HTTP backend, at
`--requirements 2025-11-25` and `2026-07-28`. A check that fails through the proxy but not
directly is a failure of this test unless `conformance/<backend>-<revision>.yml` lists it with
its reason; a listed check that passes again must be removed from the list.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from proxykit import CONFORMANCE_FIXTURE, running_proxy, serving_toolbox, stdio_backend

from moorage_proxyrunner.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
REVISIONS = ["2025-11-25", "2026-07-28"]
_RUN_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def _suite() -> tuple[str, str]:
    """(node, conformance entry point), installing them once; skips without npm or cache."""
    cached = Path.home() / ".cache" / "moorage" / "node"
    if shutil.which("npm") is None and not cached.exists():
        pytest.skip("npm is not available to install Node.js 22 and the MCP conformance suite")
    done = subprocess.run(
        [str(REPO / "scripts" / "node.sh")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot install the conformance suite: {done.stderr.strip()[-300:]}")
    root = Path(done.stdout.strip().splitlines()[-1])
    node = next((root / "node_modules").glob("node-linux-*/bin/node"))
    return str(node), str(
        root / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    )


@pytest.fixture(scope="module")
def suite() -> tuple[str, str]:
    return _suite()


async def run_suite(
    suite: tuple[str, str], url: str, revision: str, out: Path
) -> dict[str, set[str]]:
    """Run the server scenarios; the failing check ids per scenario (WARNING is not failing)."""
    node, entry = suite
    process = await asyncio.create_subprocess_exec(
        node,
        entry,
        "server",
        "--url",
        url,
        "--requirements",
        revision,
        "-o",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    results = read_results(out)
    assert results, f"the suite produced no results:\n{output.decode()[-2000:]}"
    return results


def read_results(out: Path) -> dict[str, set[str]]:
    results: dict[str, set[str]] = {}
    for run in out.iterdir() if out.exists() else []:
        match = _RUN_DIR.match(run.name)
        if match is None or not (run / "checks.json").exists():
            continue
        checks = json.loads((run / "checks.json").read_text())
        results[match.group("scenario")] = {c["id"] for c in checks if c["status"] == "FAILURE"}
    return results


def expected_failures(backend: str, revision: str) -> set[str]:
    path = HERE / "conformance" / f"{backend}-{revision}.yml"
    if not path.exists():
        return set()
    return set((yaml.safe_load(path.read_text()) or {}).get("server") or [])


def regressions(direct: dict[str, set[str]], proxied: dict[str, set[str]]) -> set[str]:
    """`scenario:check` failing through the proxy but not directly."""
    found: set[str] = set()
    for scenario, failing in proxied.items():
        if scenario not in direct:
            found.add(f"{scenario}: not run directly")
            continue
        found |= {f"{scenario}:{check}" for check in failing - direct[scenario]}
    found |= {
        f"{scenario}: not run through the proxy" for scenario in direct.keys() - proxied.keys()
    }
    return found


def compare(
    direct: dict[str, set[str]], proxied: dict[str, set[str]], backend: str, revision: str
) -> None:
    allowed = expected_failures(backend, revision)
    unexpected = regressions(direct, proxied) - allowed
    assert not unexpected, (
        f"{backend} backend at {revision}: checks the fixture passes directly fail: {sorted(unexpected)}"
    )
    proxied_failing = {f"{s}:{c}" for s, checks in proxied.items() for c in checks}
    stale = {entry for entry in allowed if entry not in proxied_failing}
    assert not stale, (
        f"{backend} backend at {revision}: listed as expected failures but passing: {sorted(stale)}"
    )


@pytest.mark.parametrize("revision", REVISIONS)
async def test_the_proxy_passes_what_the_fixture_passes_directly(
    suite: tuple[str, str], revision: str, tmp_path: Path
) -> None:
    async with serving_toolbox("http", command=CONFORMANCE_FIXTURE) as fixture_url:
        direct = await run_suite(suite, fixture_url, revision, tmp_path / "direct")
        scored = [s for s, failing in direct.items() if not failing]
        assert len(scored) >= 30, (
            f"the fixture passes too little directly to compare: {sorted(direct)}"
        )
        http_backend = LocalBackend(transport="streamable-http", target_urls=(fixture_url,))
        async with running_proxy(http_backend) as proxy:
            through_http = await run_suite(suite, proxy.mcp, revision, tmp_path / "http")
    async with running_proxy(stdio_backend((*CONFORMANCE_FIXTURE, "stdio"))) as proxy:
        through_stdio = await run_suite(suite, proxy.mcp, revision, tmp_path / "stdio")
    compare(direct, through_http, "http", revision)
    compare(direct, through_stdio, "stdio", revision)
