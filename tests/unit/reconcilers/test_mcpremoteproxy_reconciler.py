"""The MCPRemoteProxy reconciler against a fake kube client: its children in two waves, a status
that never carries `remoteCheck`, no write once the caches hold what was written, and a missing
reference that fails the proxy until it appears."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from reconciler_fakes import (
    NAMESPACE,
    RecordingKube,
    cache,
    merged_status,
    recorder,
    with_status,
)

from moorage_core.kube import (
    CONFIGMAPS,
    MCPEXTERNALAUTHCONFIGS,
    MCPGROUPS,
    MCPREMOTEPROXIES,
    MCPTOOLCONFIGS,
    PODS,
    JsonObject,
)
from moorage_operator.reconcilers.mcpremoteproxies import (
    MCPRemoteProxyReconciler,
    RemoteProxyCaches,
)
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.reconcilers.proxyowners import CHILD_KINDS
from moorage_operator.runtime.controller import Request, Result, TerminalError

NAME = "docs"
REQUEST = Request(NAMESPACE, NAME)
CHECK = {"answered": True, "checkedAt": "2026-12-06T13:00:00Z", "serverName": "docs"}


@dataclass(frozen=True, slots=True)
class Settings:
    proxyrunner_image: str = "registry.example/moorage/proxyrunner:9.9.9"
    cluster_domain: str = "cluster.local"


def raw_proxy(*, status: dict[str, Any] | None = None, **spec: Any) -> JsonObject:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRemoteProxy",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": "rp-uid",
            "generation": 1,
            "resourceVersion": "10",
        },
        "spec": {"remoteUrl": "https://mcp.example.com/mcp", **spec},
        **({"status": status} if status else {}),
    }


def reconciler(
    kube: RecordingKube,
    proxy: JsonObject | None,
    *,
    children: Iterable[JsonObject] = (),
    auth_configs: Iterable[JsonObject] = (),
) -> MCPRemoteProxyReconciler:
    owned = {kind: cache(kind) for kind in CHILD_KINDS.values()}
    for child in children:
        owned[CHILD_KINDS[(child["apiVersion"], child["kind"])]].upsert(child)
    return MCPRemoteProxyReconciler(
        kube,  # type: ignore[arg-type]
        settings=Settings(),
        caches=RemoteProxyCaches(
            remote_proxies=cache(MCPREMOTEPROXIES, [proxy] if proxy else []),
            tool_configs=cache(MCPTOOLCONFIGS),
            config_maps=cache(CONFIGMAPS),
            external_auth_configs=cache(MCPEXTERNALAUTHCONFIGS, auth_configs),
            groups=cache(MCPGROUPS),
            owned=owned,
            pods=cache(PODS),
        ),
        recorder=recorder(kube),
        pending=PendingWrites(),
        clock=lambda: datetime.datetime(2026, 12, 6, 13, 5, tzinfo=datetime.UTC),
    )


def status_patches(kube: RecordingKube) -> list[Any]:
    return [c.body["status"] for c in kube.writes("patch", kind="MCPRemoteProxy")]


async def test_a_new_proxy_applies_its_children_and_writes_a_status_without_remote_check() -> None:
    kube = RecordingKube()

    proxy = raw_proxy(status={"remoteCheck": CHECK})
    assert await reconciler(kube, proxy).reconcile(REQUEST) == Result()

    applied = [(c.kind, c.name) for c in kube.writes("apply")]
    assert sorted(applied) == sorted(
        [
            ("ServiceAccount", "docs-remote-proxy"),
            ("Role", "docs-remote-proxy"),
            ("RoleBinding", "docs-remote-proxy"),
            ("ConfigMap", "docs-remote-runconfig"),
            ("Deployment", "docs-remote-proxy"),
            ("Service", "mcp-docs-remote-proxy"),
        ]
    )
    assert applied.index(("Deployment", "docs-remote-proxy")) > applied.index(
        ("ServiceAccount", "docs-remote-proxy")
    )
    (status,) = status_patches(kube)
    assert "remoteCheck" not in status
    assert status["phase"] == "Pending"
    remote = next(c for c in status["conditions"] if c["type"] == "RemoteAvailable")
    assert (remote["status"], remote["reason"]) == ("True", "Answered")


async def test_a_reconcile_with_the_cache_holding_what_was_written_writes_nothing() -> None:
    kube = RecordingKube()
    await reconciler(kube, raw_proxy()).reconcile(REQUEST)
    children = [c.body for c in kube.writes("apply")]
    stored = with_status(
        raw_proxy(), merged_status({}, kube.writes("patch", kind="MCPRemoteProxy"))
    )

    again = RecordingKube()
    assert await reconciler(again, stored, children=children).reconcile(REQUEST) == Result()
    assert again.writes() == []


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        pytest.param(None, "NotChecked", id="none"),
        pytest.param({**CHECK, "answered": False, "message": "timeout"}, "Unreachable", id="down"),
    ],
)
async def test_a_new_remote_check_changes_only_the_condition(
    check: dict[str, Any] | None, reason: str
) -> None:
    kube = RecordingKube()
    await reconciler(kube, raw_proxy(status={"remoteCheck": CHECK})).reconcile(REQUEST)
    children = [c.body for c in kube.writes("apply")]
    status = merged_status({"remoteCheck": CHECK}, kube.writes("patch", kind="MCPRemoteProxy"))
    if check is None:
        status.pop("remoteCheck")
    else:
        status["remoteCheck"] = check

    again = RecordingKube()
    await reconciler(again, with_status(raw_proxy(), status), children=children).reconcile(REQUEST)
    assert again.writes("apply") == []
    (patch,) = status_patches(again)
    assert set(patch) == {"conditions"}
    remote = next(c for c in patch["conditions"] if c["type"] == "RemoteAvailable")
    assert remote["reason"] == reason


async def test_a_missing_auth_config_fails_the_proxy_and_applies_nothing() -> None:
    kube = RecordingKube()
    subject = reconciler(kube, raw_proxy(externalAuthConfigRef={"name": "later"}))

    with pytest.raises(TerminalError, match='MCPExternalAuthConfig "later" not found'):
        await subject.reconcile(REQUEST)
    assert kube.writes("apply") == []
    (status,) = status_patches(kube)
    assert status["phase"] == "Failed"


async def test_a_proxy_being_deleted_is_terminating_and_applies_nothing() -> None:
    kube = RecordingKube()
    proxy = raw_proxy()
    proxy["metadata"]["deletionTimestamp"] = "2026-12-06T13:04:00Z"

    assert await reconciler(kube, proxy).reconcile(REQUEST) == Result()
    assert kube.writes("apply") == []
    (status,) = status_patches(kube)
    assert status["phase"] == "Terminating"
