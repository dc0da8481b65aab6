"""Rate limiting in the assembled chain: after audit (which records `rate_limited` and that the
request was not forwarded), before the backend; its limits follow a RunConfig change live."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from moorage_api.runconfig import (
    RunConfig,
    RunConfigRateLimits,
    RunConfigSessionStorage,
    render_runconfig_json,
)
from moorage_core.settings import SettingError
from moorage_proxyrunner.__main__ import build_parser, local_config, settings_from
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.policy.audit import AuditWriter
from moorage_proxyrunner.policy.chain import LiveConfig, Middleware
from moorage_proxyrunner.policy.ratelimit import MemoryBuckets
from moorage_proxyrunner.policy.reload import RunConfigReloader
from moorage_proxyrunner.protocol.pipeline import Identity, McpCall, Reply

LIMITS = RunConfigRateLimits.model_validate({"per_subject": {"requests_per_minute": 1, "burst": 1}})


def middleware(**settings: Any) -> tuple[Middleware, io.StringIO, list[McpCall]]:
    stream = io.StringIO()
    chain = Middleware(
        ProxyRunnerSettings(**settings),
        registry=CollectorRegistry(),
        audit_writer=AuditWriter(stream, server="time"),
    )
    return chain, stream, []


async def send(chain: Middleware, seen: list[McpCall], *, request_id: int) -> Reply:
    async def backend(call: McpCall) -> Reply:
        seen.append(call)
        return Reply({"jsonrpc": "2.0", "id": call.id, "result": {}})

    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"}
    return await chain.pipeline.bind(backend)(McpCall(message, Identity("alice"), "legacy"))


async def test_a_refused_request_is_audited_and_never_forwarded() -> None:
    chain, stream, seen = middleware(audit=True, rate_limits=LIMITS)
    assert (await send(chain, seen, request_id=1)).status == 200
    refused = await send(chain, seen, request_id=2)
    assert refused.status == 429
    assert len(seen) == 1
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    final = [r for r in records if r["event"] == "mcp_audit" and r["request_id"] == 2]
    assert len(final) == 1
    assert final[0]["decision"] == "rate_limited"
    assert final[0]["forwarded"] is False
    assert final[0]["error_code"] == -32000
    assert not [r for r in records if r["event"] == "mcp_audit_forward" and r["request_id"] == 2]


async def test_limits_follow_the_runconfig_live() -> None:
    chain, _, seen = middleware()
    assert isinstance(chain.rate_limit_step.store, MemoryBuckets)
    for request_id in range(3):
        assert (await send(chain, seen, request_id=request_id)).status == 200
    runconfig = RunConfig(name="a", namespace="b", image="c", rate_limits=LIMITS)
    live = LiveConfig.from_runconfig(runconfig)
    chain.apply(live)
    assert chain.live.rate_limits == LIMITS
    assert (await send(chain, seen, request_id=10)).status == 200
    assert (await send(chain, seen, request_id=11)).status == 429
    chain.apply(LiveConfig.from_runconfig(RunConfig(name="a", namespace="b", image="c")))
    assert chain.live.rate_limits is None
    assert (await send(chain, seen, request_id=12)).status == 200


def test_a_runconfig_reload_applies_new_limits_and_ignores_storage() -> None:
    chain, _, _ = middleware()
    base = RunConfig(name="a", namespace="b", image="c")
    reloader = RunConfigReloader(chain, current=base, registry=CollectorRegistry())
    limited = base.model_copy(update={"generation": 2, "rate_limits": LIMITS})
    outcome = reloader.apply_text(render_runconfig_json(limited), source="test")
    assert outcome.applied == frozenset({"rate_limits"})
    assert chain.rate_limit_step.limits == LIMITS
    stored = limited.model_copy(
        update={
            "generation": 3,
            "session_storage": RunConfigSessionStorage.model_validate(
                {"type": "redis", "redis": {"address": "r:1", "key_prefix": "p:"}}
            ),
        }
    )
    outcome = reloader.apply_text(render_runconfig_json(stored), source="test")
    assert outcome.ignored == frozenset({"session_storage"})
    assert isinstance(chain.rate_limit_step.store, MemoryBuckets)


def test_a_local_config_with_limits_and_redis_reaches_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runconfig.json"
    redis = {"address": "127.0.0.1:6379", "key_prefix": "p:", "password": {"env": "LOCAL_PW"}}
    path.write_text(
        json.dumps(
            {
                "schema_version": "moorage/v1",
                "session_storage": {"type": "redis", "redis": redis},
                "rate_limits": LIMITS.model_dump(mode="json"),
            }
        )
    )
    parser, _ = build_parser()
    args = parser.parse_args(["run", "--local", "--config", str(path)])
    monkeypatch.delenv("LOCAL_PW", raising=False)
    with pytest.raises(SettingError, match="environment variable LOCAL_PW is not set"):
        local_config(args)
    monkeypatch.setenv("LOCAL_PW", "x")
    settings = settings_from(args, local_config(args))
    assert settings.rate_limits == LIMITS
    assert settings.session_storage.type == "redis"
