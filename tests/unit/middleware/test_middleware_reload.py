"""Live RunConfig reload: what is applied, ignored or refused, and what the sessions are told."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from testkit.cedarattacks import CRASHING_POLICIES
from testkit.waiting import eventually

from moorage_api.runconfig import RunConfig, render_runconfig_json
from moorage_proxyrunner.config.settings import ProxyRunnerSettings
from moorage_proxyrunner.policy.chain import LiveConfig, LiveConfigError, Middleware
from moorage_proxyrunner.policy.reload import RunConfigReloader, load_local_runconfig
from moorage_proxyrunner.protocol.pipeline import Identity

BASE: dict[str, Any] = {"name": "time", "namespace": "ns", "image": "img:1", "generation": 1}
PERMIT_ALL = ["permit(principal, action, resource);"]


def runconfig(**changes: Any) -> RunConfig:
    return RunConfig.model_validate({**BASE, **changes})


def text(**changes: Any) -> str:
    return render_runconfig_json(runconfig(**changes))


class Sessions:
    def __init__(self) -> None:
        self.told: list[str] = []

    def __call__(self, method: str) -> None:
        self.told.append(method)


def reloader(
    local: bool = False, capabilities: dict[str, object] | None = None
) -> tuple[RunConfigReloader, Middleware, Sessions, CollectorRegistry]:
    registry = CollectorRegistry()
    middleware = Middleware(ProxyRunnerSettings(), registry=registry)
    sessions = Sessions()
    return (
        RunConfigReloader(
            middleware,
            current=runconfig(),
            registry=registry,
            announce=sessions,
            capabilities=lambda: capabilities or {"tools": {}},
            local=local,
        ),
        middleware,
        sessions,
        registry,
    )


def reloads(registry: CollectorRegistry, result: str) -> float:
    return (
        registry.get_sample_value("moorage_proxy_config_reloads_total", {"result": result}) or 0.0
    )


def test_a_new_tool_filter_applies_and_every_session_is_told() -> None:
    reload, middleware, sessions, registry = reloader()
    outcome = reload.apply_text(
        text(
            generation=2, tools_filter=["now"], tools_override={"get_current_time": {"name": "now"}}
        ),
        source="test",
    )
    assert outcome.result == "applied"
    assert outcome.applied == {"tools_filter", "tools_override"}
    assert middleware.filter_step.policy.server_name("now") == "get_current_time"
    assert sessions.told == ["notifications/tools/list_changed"]
    assert reloads(registry, "applied") == 1
    assert registry.get_sample_value("moorage_proxy_config_generation") == 2


def test_new_policies_and_audit_apply_and_lists_of_every_kind_are_announced() -> None:
    reload, middleware, sessions, _ = reloader(capabilities={"tools": {}, "prompts": {}})
    outcome = reload.apply_text(
        text(authz={"policies": PERMIT_ALL}, audit={"enabled": True}), source="test"
    )
    assert outcome.applied == {"authz", "audit"}
    assert middleware.authz_step.authorizer is not None
    assert middleware.audit_step.enabled
    assert sessions.told == [
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
    ]
    reload.apply_text(text(audit={"enabled": True}), source="test")
    assert middleware.authz_step.authorizer is None, "removing authz switches it off"


def test_an_audit_only_change_tells_no_session() -> None:
    reload, _, sessions, _ = reloader()
    assert reload.apply_text(text(audit={"enabled": True}), source="test").result == "applied"
    assert sessions.told == []


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("{", "not JSON"),
        (json.dumps({**BASE, "schema_version": "moorage/v0"}), "schema_version"),
        (json.dumps({**BASE, "schema_version": "moorage/v1", "tools_filter": "x"}), "tools_filter"),
        (text(authz={"policies": ["permit(principal, action, resource) when { nope };"]}), "Cedar"),
        (
            text(tools_override={"a": {"name": "x"}, "b": {"name": "x"}}),
            "both renamed",
        ),
    ],
    ids=["json", "version", "schema", "cedar", "collision"],
)
def test_a_bad_config_is_refused_and_the_old_one_stays(bad: str, fragment: str) -> None:
    reload, middleware, sessions, registry = reloader()
    reload.apply_text(text(tools_filter=["keep"]), source="test")
    before = middleware.live
    outcome = reload.apply_text(bad, source="test")
    assert outcome.result == "rejected"
    assert fragment in (outcome.error or "")
    assert middleware.live == before
    assert reloads(registry, "rejected") == 1
    assert sessions.told == ["notifications/tools/list_changed"], "only the good change"


@pytest.mark.parametrize("shape", sorted(CRASHING_POLICIES))
def test_a_policy_that_would_crash_cedar_is_refused_and_reported(shape: str) -> None:
    reload, middleware, _, registry = reloader()
    reload.apply_text(text(authz={"policies": PERMIT_ALL}), source="test")
    before = middleware.live
    raw = {**BASE, "schema_version": "moorage/v1", "generation": 2}
    raw["authz"] = {"policies": [CRASHING_POLICIES[shape]]}
    outcome = reload.apply_text(json.dumps(raw), source="test")
    assert outcome.result == "rejected"
    assert "authz.policies[0]" in (outcome.error or "")
    assert middleware.live == before
    assert registry.get_sample_value("moorage_proxy_config_rejected") == 1
    assert registry.get_sample_value("moorage_proxy_config_generation") == 1
    assert reload.apply_text(text(generation=3), source="test").result == "applied"
    assert registry.get_sample_value("moorage_proxy_config_rejected") == 0


def test_workload_changes_are_ignored_and_the_same_text_twice_is_nothing() -> None:
    reload, middleware, sessions, registry = reloader()
    before = middleware.live
    outcome = reload.apply_text(text(image="img:2", args=["--x"], port=9000), source="test")
    assert outcome.result == "unchanged"
    assert outcome.ignored == {"image", "args", "port"}
    assert middleware.live == before
    again = reload.apply_text(text(image="img:2", args=["--x"], port=9000), source="test")
    assert again.result == "unchanged"
    assert reloads(registry, "unchanged") == 1, "an identical text is not even parsed again"
    assert sessions.told == []


def test_a_local_config_may_leave_out_the_workload() -> None:
    loaded = load_local_runconfig('{"schema_version": "moorage/v1", "audit": {"enabled": true}}')
    assert loaded.audit.enabled
    assert (loaded.name, loaded.image) == ("local", "local")


def test_live_config_checks_renames_and_cedar() -> None:
    with pytest.raises(LiveConfigError):
        LiveConfig.from_runconfig(
            runconfig(tools_override={"a": {"name": "b"}, "c": {"name": "b"}})
        )
    assert LiveConfig.from_runconfig(runconfig(authz={"policies": PERMIT_ALL})).authz is not None


async def test_the_file_watcher_applies_edits(tmp_path: Path) -> None:
    path = tmp_path / "rc.json"
    path.write_text('{"schema_version": "moorage/v1"}')
    reload, middleware, _, registry = reloader(local=True)
    task = asyncio.create_task(reload.watch_file(path, interval=0.02))
    try:
        await eventually(lambda: reloads(registry, "unchanged") == 1, message="first look")
        path.write_text('{"schema_version": "moorage/v1", "tools_filter": ["a", "bb"]}')
        await eventually(
            lambda: middleware.filter_step.policy.allowed == {"a", "bb"}, message="applied"
        )
        path.write_text("{ broken")
        await eventually(lambda: reloads(registry, "rejected") == 1, message="rejected")
        assert middleware.filter_step.policy.allowed == {"a", "bb"}
    finally:
        task.cancel()
        await asyncio.wait({task})


def test_new_policies_recheck_held_subscriptions_against_themselves() -> None:
    registry = CollectorRegistry()
    middleware = Middleware(ProxyRunnerSettings(), registry=registry)
    held = {("alice", "file:///a"), ("alice", "file:///b")}
    ended: list[tuple[str, str]] = []

    def recheck(allowed: Any) -> int:
        lost = [(who, uri) for who, uri in sorted(held) if not allowed(Identity(who), uri)]
        ended.extend(lost)
        return len(lost)

    reload = RunConfigReloader(middleware, current=runconfig(), registry=registry, recheck=recheck)
    forbid_b = 'forbid(principal, action, resource == Resource::"file:///b");'
    reload.apply_text(text(generation=2, audit={"enabled": True}), source="test")
    assert ended == [], "no policy change, nothing re-checked"
    reload.apply_text(text(generation=3, authz={"policies": [*PERMIT_ALL, forbid_b]}), source="t")
    assert ended == [("alice", "file:///b")]
