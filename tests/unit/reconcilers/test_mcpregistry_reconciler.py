"""The MCPRegistry reconciler against a fake kube client and a fake git fetch: when it stores,
when it writes nothing, and what each failure leaves in the status, the Events and the requeue."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import pytest
from reconciler_fakes import NAMESPACE, RecordingKube, cache, merged_status, recorder
from testkit.registrydocs import toolhive

from moorage_api.constants import ANNOTATION_SYNC, SYNC_REQUESTED
from moorage_api.mcpregistry import GitSource
from moorage_api.sources import SourcePolicy
from moorage_core.errors import Conflict, NotFound
from moorage_core.kube import CONFIGMAPS, DEPLOYMENTS, MCPREGISTRIES, SERVICES, JsonObject
from moorage_operator.reconcilers.fetching import Fetched, SourceError
from moorage_operator.reconcilers.mcpregistries import MCPRegistryReconciler, RegistryCaches
from moorage_operator.reconcilers.pending import PendingWrites
from moorage_operator.registrysettings import RegistrySettings
from moorage_operator.runtime.controller import Request, Result, TerminalError

NAME = "reg"
UID = "reg-uid"
REQUEST = Request(NAMESPACE, NAME)
NOW = 1_767_323_045.0
CM_SOURCE = {"type": "configMap", "configMap": {"name": "catalogue"}}
GIT_SOURCE = {"type": "git", "git": {"repository": "https://git.example/team/catalogue.git"}}
SETTINGS = RegistrySettings(api_image="registry.example/moorage/registry-api:9.9.9")


def registry(source: JsonObject = CM_SOURCE, **spec: Any) -> JsonObject:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRegistry",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": UID,
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": {"source": copy.deepcopy(source), **spec},
    }


def catalogue(document: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "catalogue", "namespace": NAMESPACE, "resourceVersion": "3"},
        "data": {"registry.json": document},
    }


class FakeGit:
    """Stands in for `fetching.fetch_git`: answers the scripted document or error."""

    def __init__(self, answer: bytes | SourceError) -> None:
        self.answer = answer
        self.fetches = 0

    async def __call__(
        self, source: GitSource, *, password: str | None, timeout: float, policy: SourcePolicy
    ) -> Fetched:
        self.fetches += 1
        if isinstance(self.answer, SourceError):
            raise self.answer
        return Fetched(self.answer, source=f"{source.repository}@abc1234", origin="git at abc1234")


def reconciler(
    kube: RecordingKube,
    obj: JsonObject,
    *,
    sources: Iterable[JsonObject] = (),
    owned: Iterable[JsonObject] = (),
    git: FakeGit | None = None,
    pending: PendingWrites | None = None,
) -> MCPRegistryReconciler:
    owned = list(owned)
    return MCPRegistryReconciler(
        kube,
        caches=RegistryCaches(
            registries=cache(MCPREGISTRIES, [obj]),
            source_config_maps=cache(CONFIGMAPS, sources),
            storage_config_maps=cache(CONFIGMAPS, [o for o in owned if o["kind"] == "ConfigMap"]),
            deployments=cache(DEPLOYMENTS, [o for o in owned if o["kind"] == "Deployment"]),
            services=cache(SERVICES, [o for o in owned if o["kind"] == "Service"]),
        ),
        settings=SETTINGS,
        recorder=recorder(kube),
        pending=PendingWrites() if pending is None else pending,
        clock=lambda: NOW,
        git_fetcher=git or FakeGit(SourceError("no git in this test")),
    )


def statuses(kube: RecordingKube) -> list[Any]:
    return [
        c.body["status"]
        for c in kube.writes("patch", kind="MCPRegistry")
        if c.subresource == "status"
    ]


def event_reasons(kube: RecordingKube) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in kube.events()]


def controlled(obj: JsonObject) -> JsonObject:
    """`obj` as the cache shows it once created: with a uid of its own."""
    stored = copy.deepcopy(obj)
    stored["metadata"]["uid"] = f"uid-{obj['kind']}"
    return stored


@pytest.mark.parametrize(
    ("obj", "sources", "git", "stored", "phase", "events", "requeued"),
    [
        pytest.param(
            registry(),
            [catalogue(toolhive("time", "fetch"))],
            None,
            ["ConfigMap"],
            "Ready",
            [("Normal", "Synced")],
            True,
            id="configmap-source-stored",
        ),
        pytest.param(
            registry(),
            [],
            None,
            [],
            "Failed",
            [("Warning", "SyncFailed")],
            False,
            id="configmap-source-missing-waits-for-its-change",
        ),
        pytest.param(
            registry(),
            [catalogue("{not json")],
            None,
            [],
            "Failed",
            [("Warning", "SyncFailed")],
            False,
            id="configmap-source-not-valid-waits-for-its-change",
        ),
        pytest.param(
            registry(GIT_SOURCE),
            [],
            FakeGit(toolhive("time").encode()),
            ["ConfigMap"],
            "Ready",
            [("Normal", "Synced")],
            True,
            id="git-source-stored",
        ),
        pytest.param(
            registry(GIT_SOURCE),
            [],
            FakeGit(SourceError("repository not found")),
            [],
            "Failed",
            [("Warning", "SyncFailed")],
            True,
            id="git-source-failing-retried",
        ),
        pytest.param(
            registry(GIT_SOURCE, apiService={"enabled": True}),
            [],
            FakeGit(toolhive("time").encode()),
            ["Deployment", "Service", "ConfigMap"],
            "Pending",
            [("Normal", "Synced")],
            True,
            id="api-enabled-waits-for-its-replicas",
        ),
    ],
)
async def test_a_first_sync_stores_what_it_read_or_says_why_it_could_not(
    obj: JsonObject,
    sources: list[JsonObject],
    git: FakeGit | None,
    stored: list[str],
    phase: str,
    events: list[tuple[str, str]],
    requeued: bool,
) -> None:
    kube = RecordingKube()

    result = await reconciler(kube, obj, sources=sources, git=git).reconcile(REQUEST)

    assert [c.kind for c in kube.writes("apply")] == stored
    assert statuses(kube)[-1]["phase"] == phase
    assert event_reasons(kube) == events
    assert (result.requeue_after is not None) is requeued


async def test_a_git_source_says_syncing_before_its_first_fetch() -> None:
    kube = RecordingKube()

    await reconciler(kube, registry(GIT_SOURCE), git=FakeGit(toolhive("time").encode())).reconcile(
        REQUEST
    )

    assert [status.get("phase") for status in statuses(kube)] == ["Syncing", "Ready"]


async def test_a_git_password_secret_that_is_gone_fails_the_sync_without_a_fetch() -> None:
    kube = RecordingKube()
    kube.fail("get", "Secret", NotFound("gone", status=404))
    git = FakeGit(toolhive("time").encode())
    source = copy.deepcopy(GIT_SOURCE)
    source["git"]["auth"] = {"username": "bot", "passwordSecretRef": {"name": "pw", "key": "t"}}

    await reconciler(kube, registry(source), git=git).reconcile(REQUEST)

    assert git.fetches == 0
    assert 'Secret "pw" not found' in statuses(kube)[-1]["syncStatus"]["message"]
    assert event_reasons(kube) == [("Warning", "SyncFailed")]


async def test_an_unchanged_source_reconciled_again_writes_nothing() -> None:
    kube = RecordingKube()
    pending = PendingWrites()
    sources = [catalogue(toolhive("time"))]
    await reconciler(kube, registry(), sources=sources, pending=pending).reconcile(REQUEST)
    stored = [c.body for c in kube.writes("apply")]
    obj = registry()
    obj["status"] = merged_status({}, kube.writes("patch", kind="MCPRegistry"))

    again = RecordingKube()
    result = await reconciler(again, obj, sources=sources, owned=stored).reconcile(REQUEST)

    assert again.writes() == []
    assert result.requeue_after is not None


async def test_a_reconcile_before_the_cache_caught_up_repeats_no_write() -> None:
    kube = RecordingKube()
    subject = reconciler(kube, registry(), sources=[catalogue(toolhive("time"))])
    await subject.reconcile(REQUEST)
    first = len(kube.calls)

    await subject.reconcile(REQUEST)
    assert kube.calls[first:] == []


async def test_a_conflicting_store_is_raised_for_a_retry() -> None:
    kube = RecordingKube()
    kube.fail("apply", "ConfigMap", Conflict("apply conflict", status=409))

    with pytest.raises(Conflict):
        await reconciler(kube, registry(), sources=[catalogue(toolhive("time"))]).reconcile(REQUEST)
    assert statuses(kube) == []


async def test_a_disabled_api_is_deleted_and_one_already_gone_is_not_an_error() -> None:
    kube = RecordingKube()
    await reconciler(
        kube,
        registry(GIT_SOURCE, apiService={"enabled": True}),
        git=FakeGit(toolhive("time").encode()),
    ).reconcile(REQUEST)
    api = [controlled(c.body) for c in kube.writes("apply") if c.kind != "ConfigMap"]

    again = RecordingKube()
    again.fail("delete", "Deployment", NotFound("gone", status=404))
    await reconciler(
        again, registry(GIT_SOURCE), owned=api, git=FakeGit(toolhive("time").encode())
    ).reconcile(REQUEST)

    deleted = again.writes("delete")
    assert [(c.kind, c.name) for c in deleted] == [
        ("Deployment", "reg-api"),
        ("Service", "reg-api"),
    ]
    assert [c.body for c in deleted] == [{"uid": "uid-Deployment"}, {"uid": "uid-Service"}]


@pytest.mark.parametrize(
    "clear_error",
    [pytest.param(None, id="cleared"), pytest.param(NotFound("gone", status=404), id="gone")],
)
async def test_a_requested_sync_runs_and_its_annotation_is_removed(
    clear_error: NotFound | None,
) -> None:
    kube = RecordingKube()
    if clear_error is not None:
        kube.fail("patch", "MCPRegistry", clear_error)
    obj = registry(syncPolicy={"automatic": False})
    obj["metadata"]["annotations"] = {ANNOTATION_SYNC: SYNC_REQUESTED}

    await reconciler(kube, obj, sources=[catalogue(toolhive("time"))]).reconcile(REQUEST)

    assert [c.kind for c in kube.writes("apply")] == ["ConfigMap"]
    (clear,) = [c for c in kube.writes("patch", kind="MCPRegistry") if c.subresource is None]
    assert clear.body == {"metadata": {"annotations": {ANNOTATION_SYNC: None}}}


async def test_an_invalid_registry_fails_terminally_once_per_generation() -> None:
    kube = RecordingKube()
    obj = registry({"type": "configMap"})

    with pytest.raises(TerminalError, match="invalid MCPRegistry"):
        await reconciler(kube, obj).reconcile(REQUEST)
    assert statuses(kube)[-1]["phase"] == "Failed"
    assert event_reasons(kube) == [("Warning", "InvalidSpec")]
    obj["status"] = merged_status({}, kube.writes("patch", kind="MCPRegistry"))

    again = RecordingKube()
    with pytest.raises(TerminalError):
        await reconciler(again, obj).reconcile(REQUEST)
    assert again.writes() == []


async def test_a_registry_gone_or_being_deleted_costs_no_request() -> None:
    kube = RecordingKube()
    deleting = registry()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-02T03:00:00Z"

    assert await reconciler(kube, deleting).reconcile(REQUEST) == Result()
    assert await reconciler(kube, registry()).reconcile(Request(NAMESPACE, "other")) == Result()
    assert kube.calls == []


async def test_a_requested_sync_of_an_unchanged_source_stores_nothing() -> None:
    kube = RecordingKube()
    sources = [catalogue(toolhive("time"))]
    await reconciler(kube, registry(), sources=sources).reconcile(REQUEST)
    stored = [c.body for c in kube.writes("apply")]
    obj = registry()
    obj["status"] = merged_status({}, kube.writes("patch", kind="MCPRegistry"))
    obj["metadata"]["annotations"] = {ANNOTATION_SYNC: SYNC_REQUESTED}

    again = RecordingKube()
    await reconciler(again, obj, sources=sources, owned=stored).reconcile(REQUEST)

    assert again.writes("apply") == []
    assert again.events() == []
    assert [c.subresource for c in again.writes("patch")] == [None], "the request cleared only"
