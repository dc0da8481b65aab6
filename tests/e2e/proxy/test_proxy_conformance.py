"""The MCP conformance suite gives the same verdicts through the proxy as against the fixture.

The suite (npm `@modelcontextprotocol/conformance`, pinned to `proxykit.CONFORMANCE_VERSION` and installed
into a cache by `scripts/node.sh`, with Node 22) runs against the conformance fixture served
directly over streamable HTTP, then through the proxy with the fixture as a stdio backend (probed,
so it runs in the 2026-07-28 era) and as a streamable-HTTP backend, at `--requirements
2025-11-25` and `2026-07-28`.

Every check's status (SUCCESS, WARNING, INFO, FAILURE) is compared, not only the failures: a
check whose statuses through the proxy differ from its statuses directly, or that appears on
one side only, is a difference. A difference fails this test unless
`conformance/<backend>-<revision>.yml` lists it with its reason; each listed reason names the
checks that prove it (`verified_by`), and the test holds the proxied run to them. A listed
difference that no longer occurs must be removed from the list.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from proxykit import (
    CONFORMANCE_FIXTURE,
    CONFORMANCE_VERSION,
    node_binary,
    node_tools,
    running_proxy,
    serving_toolbox,
    stdio_backend,
)

from moorage_proxyrunner.startup.local import LocalBackend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

HERE = Path(__file__).resolve().parent
REVISIONS = ["2025-11-25", "2026-07-28"]
_RUN_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")

Verdicts = dict[str, frozenset[str]]
"""`scenario:check` → the statuses that check reported (a check may report more than once)."""


def _suite() -> tuple[str, str]:
    """(node, conformance entry point) at `CONFORMANCE_VERSION`."""
    root = node_tools()
    package = root / "node_modules" / "@modelcontextprotocol" / "conformance"
    installed = json.loads((package / "package.json").read_text())["version"]
    assert installed == CONFORMANCE_VERSION, (
        f"conformance suite {installed} is not {CONFORMANCE_VERSION}"
    )
    return node_binary(root), str(package / "dist" / "index.js")


@pytest.fixture(scope="module")
def suite() -> tuple[str, str]:
    return _suite()


async def run_suite(suite: tuple[str, str], url: str, revision: str, out: Path) -> Verdicts:
    """Run the server scenarios; every check's statuses."""
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


def read_results(out: Path) -> Verdicts:
    statuses: dict[str, set[str]] = {}
    for run in out.iterdir() if out.exists() else []:
        match = _RUN_DIR.match(run.name)
        if match is None or not (run / "checks.json").exists():
            continue
        scenario = match.group("scenario")
        statuses.setdefault(f"{scenario}:", set())
        for check in json.loads((run / "checks.json").read_text()):
            statuses.setdefault(f"{scenario}:{check['id']}", set()).add(check["status"])
    return {key: frozenset(found) for key, found in statuses.items()}


def differences(direct: Verdicts, proxied: Verdicts) -> dict[str, tuple[str, str]]:
    """`scenario:check` → (statuses directly, statuses through the proxy), where they differ.

    A key ending in `:` stands for the scenario itself (run on one side only)."""
    return {
        key: (_shown(direct.get(key)), _shown(proxied.get(key)))
        for key in sorted(direct.keys() | proxied.keys())
        if direct.get(key) != proxied.get(key)
    }


def _shown(statuses: frozenset[str] | None) -> str:
    return "absent" if statuses is None else "/".join(sorted(statuses))


def expected_differences(backend: str, revision: str) -> list[Mapping[str, object]]:
    path = HERE / "conformance" / f"{backend}-{revision}.yml"
    if not path.exists():
        return []
    return list((yaml.safe_load(path.read_text()) or {}).get("differences") or [])


def compare(direct: Verdicts, proxied: Verdicts, backend: str, revision: str) -> None:
    found = differences(direct, proxied)
    listed = expected_differences(backend, revision)
    where = f"{backend} backend at {revision}"
    unexplained = {
        key: sides
        for key, sides in found.items()
        if not any(
            entry["check"] == key and entry["direct"] == sides[0] and entry["proxied"] == sides[1]
            for entry in listed
        )
    }
    assert not unexplained, (
        f"{where}: verdicts differ from direct (direct, proxied): "
        + json.dumps(unexplained, indent=1)
    )
    for entry in listed:
        key = str(entry["check"])
        assert key in found, f"{where}: listed difference no longer occurs: {key}"
        assert entry.get("reason"), f"{where}: {key} is listed without a reason"
        proofs = entry.get("verified_by")
        assert isinstance(proofs, dict), f"{where}: {key} names no verifying check"
        assert proofs, f"{where}: {key} names no verifying check"
        for proof, status in proofs.items():
            assert _shown(proxied.get(proof)) == status, (
                f"{where}: the reason given for {key} does not hold: "
                f"{proof} is {_shown(proxied.get(proof))}, not {status}"
            )


@pytest.mark.parametrize("revision", REVISIONS)
async def test_the_proxy_gives_every_verdict_the_fixture_gets_directly(
    suite: tuple[str, str], revision: str, tmp_path: Path
) -> None:
    async with serving_toolbox("http", command=CONFORMANCE_FIXTURE) as fixture_url:
        direct = await run_suite(suite, fixture_url, revision, tmp_path / "direct")
        passing = {k for k, v in direct.items() if v == {"SUCCESS"}}
        assert len(passing) >= 60, f"the fixture passes too little directly: {sorted(direct)}"
        http_backend = LocalBackend(transport="streamable-http", target_urls=(fixture_url,))
        async with running_proxy(http_backend) as proxy:
            through_http = await run_suite(suite, proxy.mcp, revision, tmp_path / "http")
    # The fixture is dual-era: probed, it runs in the 2026-07-28 era and the proxy translates
    # for 2025-11-25 clients.
    fixture = stdio_backend((*CONFORMANCE_FIXTURE, "stdio"))
    async with running_proxy(fixture, stdio_era="auto") as proxy:
        through_stdio = await run_suite(suite, proxy.mcp, revision, tmp_path / "stdio")
    (tmp_path / "verdicts.json").write_text(
        json.dumps(
            {
                "http": differences(direct, through_http),
                "stdio": differences(direct, through_stdio),
            },
            indent=1,
        )
    )
    compare(direct, through_http, "http", revision)
    compare(direct, through_stdio, "stdio", revision)
