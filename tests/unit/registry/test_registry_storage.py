"""The storage ConfigMap: deterministic rendering, hashing, metadata, and the 1 MiB limit."""

from __future__ import annotations

import hashlib
import json

import pytest

from moorage_api.constants import ANNOTATION_CONTENT_CHECKSUM
from moorage_api.mcpregistry import GlobFilter, RegistryFilter
from moorage_operator.planning.mcpregistries.children import Owner
from moorage_operator.planning.mcpregistries.storage import (
    CONFIGMAP_MAX_DATA_BYTES,
    StorageTooLarge,
    check_fits,
    describe_configmap_source,
    describe_git_source,
    desired_storage_configmap,
    prepare_registry,
    redact_url,
    render_sync_metadata,
    stored_hash,
)

OWNER = Owner(name="reg", namespace="ns", uid="uid-1")


def toolhive(**servers: dict[str, object]) -> str:
    return json.dumps({"version": "1.0.0", "servers": servers})


def server(description: str = "A server.", *tags: str) -> dict[str, object]:
    return {"description": description, "image": "img:1", "transport": "stdio", "tags": list(tags)}


def test_equal_data_renders_to_equal_bytes_whatever_the_key_order() -> None:
    a = prepare_registry(toolhive(x=server(), y=server()), fmt="toolhive", selection=None)
    b = prepare_registry(
        json.dumps({"servers": {"y": server(), "x": server()}, "version": "1.0.0"}, indent=4),
        fmt="toolhive",
        selection=None,
    )
    assert a == b
    assert a.hash == hashlib.sha256(a.data.encode()).hexdigest()
    assert a.server_count == 2
    stored = json.loads(a.data)
    assert [s["name"] for s in stored["servers"]] == ["x", "y"]
    assert stored["format"] == "toolhive"
    assert stored["version"] == "1.0.0"


def test_a_changed_server_changes_the_hash() -> None:
    a = prepare_registry(toolhive(x=server("One server.")), fmt="toolhive", selection=None)
    b = prepare_registry(toolhive(x=server("Another one.")), fmt="toolhive", selection=None)
    assert a.hash != b.hash


def test_the_filter_applies_before_rendering() -> None:
    selection = RegistryFilter(tags=GlobFilter(include=["keep"]))
    rendered = prepare_registry(
        toolhive(x=server("A server.", "keep"), y=server()), fmt="toolhive", selection=selection
    )
    assert rendered.server_count == 1
    assert [s["name"] for s in json.loads(rendered.data)["servers"]] == ["x"]


def test_sync_metadata_has_the_documented_keys() -> None:
    rendered = prepare_registry(toolhive(x=server()), fmt="toolhive", selection=None)
    meta = json.loads(render_sync_metadata(rendered, timestamp="2025-01-01T00:00:00Z", source="s"))
    assert meta == {
        "timestamp": "2025-01-01T00:00:00Z",
        "hash": rendered.hash,
        "serverCount": 1,
        "source": "s",
    }


def test_storage_configmap_is_owned_labelled_and_annotated_with_the_hash() -> None:
    rendered = prepare_registry(toolhive(x=server()), fmt="toolhive", selection=None)
    cm = desired_storage_configmap(OWNER, rendered, metadata_json="{}")
    meta = cm["metadata"]
    assert meta["name"] == "reg-registry-storage"
    assert meta["namespace"] == "ns"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "moorage"
    assert meta["labels"]["app.kubernetes.io/instance"] == "reg"
    assert meta["labels"]["moorage.dev/mcpregistry"] == "reg"
    assert meta["annotations"][ANNOTATION_CONTENT_CHECKSUM] == rendered.hash
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPRegistry",
        "name": "reg",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert cm["data"] == {"registry.json": rendered.data, "sync_metadata.json": "{}"}
    assert stored_hash(cm) == rendered.hash


def test_a_registry_over_one_mebibyte_is_refused_with_advice() -> None:
    big = {f"s{i:05d}": server("x" * 400) for i in range(3000)}
    rendered = prepare_registry(toolhive(**big), fmt="toolhive", selection=None)
    assert len(rendered.data) > CONFIGMAP_MAX_DATA_BYTES
    with pytest.raises(StorageTooLarge, match=r"MiB, more than a ConfigMap holds .*spec\.filter"):
        desired_storage_configmap(OWNER, rendered, metadata_json="{}")


def test_check_fits_measures_the_metadata_too() -> None:
    rendered = prepare_registry(toolhive(x=server()), fmt="toolhive", selection=None)
    check_fits(rendered, source="configmap:ns/cm#registry.json")
    with pytest.raises(StorageTooLarge):
        check_fits(rendered, source="x" * CONFIGMAP_MAX_DATA_BYTES)


def test_the_limit_counts_multibyte_characters_as_bytes() -> None:
    # 600k characters of three bytes each: under the limit in characters, over it in bytes.
    rendered = prepare_registry(toolhive(x=server("€" * 600_000)), fmt="toolhive", selection=None)
    assert len(rendered.data) < CONFIGMAP_MAX_DATA_BYTES
    with pytest.raises(StorageTooLarge):
        desired_storage_configmap(OWNER, rendered, metadata_json="{}")


@pytest.mark.parametrize(
    ("configmap", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param({"metadata": {}}, None, id="no-annotation"),
        pytest.param(
            {"metadata": {"annotations": {ANNOTATION_CONTENT_CHECKSUM: "h"}}, "data": {}},
            None,
            id="no-data",
        ),
        pytest.param(
            {
                "metadata": {"annotations": {ANNOTATION_CONTENT_CHECKSUM: "h"}},
                "data": {"registry.json": "{}"},
            },
            "h",
            id="stored",
        ),
    ],
)
def test_stored_hash(configmap: dict[str, object] | None, expected: str | None) -> None:
    assert stored_hash(configmap) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:secret@git.example.com/r.git", "https://user@git.example.com/r.git"),
        ("https://:secret@git.example.com:8443/r.git", "https://git.example.com:8443/r.git"),
        ("https://git.example.com/r.git", "https://git.example.com/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("file:///tmp/repo", "file:///tmp/repo"),
    ],
)
def test_redact_url_drops_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_source_descriptions() -> None:
    assert describe_configmap_source(namespace="n", name="c", key="k") == "configmap:n/c#k"
    assert (
        describe_git_source(repository="https://u:p@h/r", commit="abc", path="x.json")
        == "git:https://u@h/r@abc#x.json"
    )
