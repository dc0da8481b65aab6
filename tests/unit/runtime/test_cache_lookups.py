"""The cache: lookups by key, namespace, label and custom index, and the diff a relist reports."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_core.kube import CONFIGMAPS, JsonObject
from moorage_operator.runtime.cache import Cache, CacheEvent


def cm(
    name: str,
    rv: str = "1",
    *,
    namespace: str = "a",
    labels: dict[str, str] | None = None,
    **data: Any,
) -> JsonObject:
    meta: JsonObject = {"name": name, "namespace": namespace, "resourceVersion": rv}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def names(objs: list[JsonObject]) -> list[str]:
    return sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objs)


@pytest.fixture
def cache() -> Cache:
    cache = Cache(CONFIGMAPS)
    cache.upsert(cm("web", labels={"app": "web", "tier": "front"}))
    cache.upsert(cm("db", labels={"app": "db", "tier": "back"}))
    cache.upsert(cm("web", namespace="b", labels={"app": "web", "tier": "front"}))
    cache.upsert(cm("bare", namespace="b"))
    return cache


def test_get_by_namespace_and_name(cache: Cache) -> None:
    found = cache.get("web", namespace="b")
    assert found is not None
    assert found["metadata"]["namespace"] == "b"
    assert cache.get("web", namespace="c") is None
    assert ("a", "db") in cache
    assert ("a", "bare") not in cache
    assert len(cache) == 4


@pytest.mark.parametrize(
    ("namespace", "labels", "expected"),
    [
        (None, None, ["a/db", "a/web", "b/bare", "b/web"]),
        ("b", None, ["b/bare", "b/web"]),
        ("c", None, []),
        (None, {"app": "web"}, ["a/web", "b/web"]),
        ("a", {"app": "web"}, ["a/web"]),
        (None, {"app": "web", "tier": "back"}, []),
        (None, {"tier": "back", "app": "db"}, ["a/db"]),
        (None, {"missing": "x"}, []),
    ],
    ids=[
        "all",
        "namespace",
        "empty-namespace",
        "label",
        "label-and-namespace",
        "labels-disjoint",
        "two-labels",
        "unknown-label",
    ],
)
def test_list_by_namespace_and_labels(
    cache: Cache, namespace: str | None, labels: dict[str, str] | None, expected: list[str]
) -> None:
    assert names(cache.list(namespace=namespace, labels=labels)) == expected


def test_label_index_follows_updates_and_deletes(cache: Cache) -> None:
    cache.upsert(cm("web", "2", labels={"app": "api"}))
    assert names(cache.list(labels={"app": "web"})) == ["b/web"]
    assert names(cache.list(labels={"app": "api"})) == ["a/web"]
    cache.delete(cm("web", namespace="b"))
    assert cache.list(labels={"app": "web"}) == []


def test_custom_index_covers_present_and_future_objects() -> None:
    cache = Cache(CONFIGMAPS)
    cache.upsert(cm("one", ref="x"))

    def refs(obj: JsonObject) -> list[str]:
        ref = obj.get("data", {}).get("ref")
        return [ref] if ref else []

    cache.add_index("ref", refs)
    cache.upsert(cm("two", ref="x"))
    cache.upsert(cm("three", ref="y"))
    assert names(cache.by_index("ref", "x")) == ["a/one", "a/two"]
    cache.upsert(cm("two", "2", ref="y"))
    assert names(cache.by_index("ref", "x")) == ["a/one"]
    assert names(cache.by_index("ref", "y")) == ["a/three", "a/two"]
    cache.delete(cm("three"))
    assert names(cache.by_index("ref", "y")) == ["a/two"]
    with pytest.raises(ValueError, match="already exists"):
        cache.add_index("ref", refs)
    with pytest.raises(KeyError):
        cache.by_index("nope", "x")


def test_upsert_reports_added_then_modified_and_skips_the_same_version() -> None:
    cache = Cache(CONFIGMAPS)
    added = cache.upsert(cm("a", "1"))
    assert added == CacheEvent("ADDED", cm("a", "1"))
    assert cache.upsert(cm("a", "1")) is None
    modified = cache.upsert(cm("a", "2"))
    assert modified is not None
    assert modified.type == "MODIFIED"
    assert modified.old is not None
    assert modified.old["metadata"]["resourceVersion"] == "1"
    assert cache.delete(cm("a", "3")) == CacheEvent("DELETED", cm("a", "3"))
    assert cache.delete(cm("a", "3")) is None
    assert len(cache) == 0


def test_replace_reports_adds_changes_and_deletions_only_in_its_namespace(cache: Cache) -> None:
    events = cache.replace(
        [cm("web", "9", labels={"app": "web"}), cm("new", namespace="a")], namespace="a"
    )
    assert sorted((e.type, e.object["metadata"]["name"]) for e in events) == [
        ("ADDED", "new"),
        ("DELETED", "db"),
        ("MODIFIED", "web"),
    ]
    assert names(cache.list()) == ["a/new", "a/web", "b/bare", "b/web"], "b is untouched"


def test_replace_without_namespace_covers_the_whole_cache(cache: Cache) -> None:
    events = cache.replace([cm("web", namespace="b", labels={"app": "web", "tier": "front"})])
    assert sorted(
        e.object["metadata"]["namespace"] + "/" + e.object["metadata"]["name"] for e in events
    ) == [
        "a/db",
        "a/web",
        "b/bare",
    ]
    assert all(e.type == "DELETED" for e in events)
    assert len(cache) == 1


def test_managed_fields_are_dropped() -> None:
    cache = Cache(CONFIGMAPS)
    obj = cm("a")
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    cache.upsert(obj)
    stored = cache.get("a", namespace="a")
    assert stored is not None
    assert "managedFields" not in stored["metadata"]
