"""Pod template patches: parsing, validation (every rejection path) and the strategic-like merge."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_api.podpatch import (
    PodPatchError,
    merge_pod_template,
    parse_pod_patch,
    validate_pod_template,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{}", {}, id="empty-object"),
        pytest.param(
            '{"spec": {"nodeSelector": {"disk": "ssd"}}}',
            {"spec": {"nodeSelector": {"disk": "ssd"}}},
            id="node-selector",
        ),
        pytest.param(
            '{"metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}}}',
            {"metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}}},
            id="metadata",
        ),
        pytest.param(
            '{"metadata": {"creationTimestamp": null, "labels": {"team": "a"}}}',
            {"metadata": {"creationTimestamp": None, "labels": {"team": "a"}}},
            id="metadata-null-as-generated-yaml-has",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "env": [{"name": "A", "value": "1"}],'
            ' "ports": [{"containerPort": 9000}]}], "tolerations": [{"key": "k"}]}}',
            {
                "spec": {
                    "containers": [
                        {
                            "name": "mcp",
                            "env": [{"name": "A", "value": "1"}],
                            "ports": [{"containerPort": 9000}],
                        }
                    ],
                    "tolerations": [{"key": "k"}],
                }
            },
            id="container",
        ),
        pytest.param(
            '{"spec": {"nodeSelector": null, "containers": [{"name": "mcp", "resources": null}]}}',
            {"spec": {"nodeSelector": None, "containers": [{"name": "mcp", "resources": None}]}},
            id="nulls-remove",
        ),
    ],
)
def test_accepts_pod_template_patches(text: str, expected: dict[str, Any]) -> None:
    assert parse_pod_patch(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{spec", "--k8s-pod-patch is not valid JSON", id="bad-json"),
        pytest.param("", "--k8s-pod-patch is not valid JSON", id="empty-string"),
        pytest.param("[]", "must be a pod template: a JSON object", id="list"),
        pytest.param('"spec"', "got a string", id="string"),
        pytest.param("null", "got null", id="null"),
        pytest.param(
            '{"apiVersion": "v1", "kind": "Pod"}',
            "'apiVersion' is not a pod template field",
            id="whole-pod",
        ),
        pytest.param('{"metadata": []}', "metadata: must be an object, got a list", id="meta-list"),
        pytest.param(
            '{"metadata": {"name": "x"}}',
            "metadata.'name': only 'labels' and 'annotations'",
            id="meta-name",
        ),
        pytest.param(
            '{"metadata": {"labels": {"a": 1}}}',
            "metadata.labels: must be a map of strings, got an object with a number",
            id="label-number",
        ),
        pytest.param('{"spec": 3}', "spec: must be an object, got a number", id="spec-number"),
        pytest.param(
            '{"spec": {"nodeSelecter": {}}}', "spec.'nodeSelecter': not a pod spec field", id="typo"
        ),
        pytest.param(
            '{"spec": {"$patch": "replace"}}',
            "strategic-merge directives are not supported",
            id="directive",
        ),
        pytest.param(
            '{"spec": {"hostNetwork": "yes"}}',
            "spec.hostNetwork: must be a boolean, got a string",
            id="bool",
        ),
        pytest.param(
            '{"spec": {"priority": true}}',
            "spec.priority: must be an integer, got a boolean",
            id="int",
        ),
        pytest.param(
            '{"spec": {"serviceAccountName": 5}}',
            "spec.serviceAccountName: must be a string",
            id="string-field",
        ),
        pytest.param(
            '{"spec": {"affinity": []}}',
            "spec.affinity: must be an object, got a list",
            id="object",
        ),
        pytest.param(
            '{"spec": {"tolerations": {"key": "k"}}}',
            "spec.tolerations: must be a list of objects, got an object",
            id="list-field",
        ),
        pytest.param(
            '{"spec": {"tolerations": ["k"]}}',
            "spec.tolerations: must be a list of objects, got a list containing a string",
            id="list-element",
        ),
        pytest.param(
            '{"spec": {"containers": [{"image": "x"}]}}',
            "spec.containers[0].name: every container needs a non-empty name",
            id="container-no-name",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": ""}]}}',
            "spec.containers[0].name: every container needs",
            id="container-empty-name",
        ),
        pytest.param(
            '{"spec": {"initContainers": [{"name": "a"}, {"name": "a"}]}}',
            "spec.initContainers[1].name: duplicate container 'a'",
            id="duplicate-container",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "imagePolicy": "x"}]}}',
            "spec.containers[0].'imagePolicy': not a container field",
            id="container-typo",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "args": ["a", 1]}]}}',
            "spec.containers[0].args: must be a list of strings, got a list containing a number",
            id="args",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "env": [{"value": "1"}]}]}}',
            "spec.containers[0].env[0].name: is required",
            id="env-no-name",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "ports": [{"containerPort": "80"}]}]}}',
            "spec.containers[0].ports[0].containerPort: must be an integer",
            id="port-string",
        ),
        pytest.param(
            '{"spec": {"volumes": [{"emptyDir": {}}]}}',
            "spec.volumes[0].name: is required",
            id="volume-no-name",
        ),
        pytest.param(
            '{"spec": {"containers": [3]}}',
            "spec.containers: must be a list of containers, got a list containing a number",
            id="container-not-object",
        ),
        # Left out of the shared field table (moorage_api.podfields), as the webhook leaves them.
        pytest.param(
            '{"spec": {"hostnameOverride": "mcp"}}',
            "spec.'hostnameOverride': not a pod spec field",
            id="hostname-override",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "restartPolicyRules": []}]}}',
            "spec.containers[0].'restartPolicyRules': not a container field",
            id="restart-policy-rules",
        ),
        pytest.param(
            '{"spec": {"containers": [{"name": "mcp", "restartPolicy": "Always"}]}}',
            "spec.containers[0].'restartPolicy': not a container field",
            id="regular-container-restart-policy",
        ),
        pytest.param(
            '{"spec": {"initContainers": [{"name": "i", "targetContainerName": "mcp"}]}}',
            "spec.initContainers[0].'targetContainerName': not a container field",
            id="target-outside-ephemeral",
        ),
        pytest.param(
            '{"spec": {"overhead": {"cpu": true}}}',
            "spec.overhead: must be a map of quantities, got an object with a boolean",
            id="overhead-boolean",
        ),
    ],
)
def test_rejects_unusable_patches_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(PodPatchError) as info:
        parse_pod_patch(text)
    assert message in str(info.value)
    assert str(info.value).startswith("--k8s-pod-patch")


def test_names_the_source_in_messages() -> None:
    with pytest.raises(PodPatchError, match=r"^pod_template_spec: spec.hostPID"):
        validate_pod_template({"spec": {"hostPID": 1}}, source="pod_template_spec")


@given(st.text(max_size=200))
def test_parsing_arbitrary_text_fails_only_with_a_patch_error(text: str) -> None:
    message = ""
    try:
        result = parse_pod_patch(text)
    except PodPatchError as exc:
        message = str(exc)
    else:
        assert isinstance(result, dict)
        return
    assert message.startswith("--k8s-pod-patch")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["metadata", "spec", "labels", "containers", "name", "env", "nodeSelector", "hostNetwork", "x"]
)
_shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)


@given(st.one_of(_json, _shaped))
def test_validating_arbitrary_json_fails_only_with_a_patch_error(value: Any) -> None:
    message = ""
    try:
        result = validate_pod_template(value, source="patch")
    except PodPatchError as exc:
        message = str(exc)
    else:
        assert result is value
        json.dumps(result)
        return
    assert message.startswith("patch: ") or message.startswith("patch must be a pod template")


_names = st.sampled_from(["mcp", "sidecar", "init"])
_env = st.lists(
    st.fixed_dictionaries({"name": st.sampled_from(["A", "B", "C"]), "value": st.text(max_size=3)}),
    max_size=3,
    unique_by=lambda e: e["name"],
)
_container = st.fixed_dictionaries(
    {"name": _names},
    optional={
        "image": st.text(min_size=1, max_size=5),
        "env": _env,
        "args": st.lists(st.text(max_size=3)),
    },
)
_template = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries(
            {}, optional={"labels": st.dictionaries(st.sampled_from("abc"), st.text(max_size=3))}
        ),
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": st.lists(_container, max_size=3, unique_by=lambda c: c["name"]),
                "nodeSelector": st.dictionaries(st.sampled_from("xyz"), st.text(max_size=3)),
            },
        ),
    },
)


@given(_template)
def test_generated_templates_validate(template: dict[str, Any]) -> None:
    assert validate_pod_template(template, source="t") == template
    assert parse_pod_patch(json.dumps(template)) == template


@given(_template)
def test_merging_an_empty_patch_changes_nothing(template: dict[str, Any]) -> None:
    assert merge_pod_template(template, {}) == template
    assert merge_pod_template({}, template) == template


@given(_template, _template)
def test_the_patch_wins_for_every_field_it_sets(
    base: dict[str, Any], patch: dict[str, Any]
) -> None:
    before = json.dumps(base, sort_keys=True)
    merged = merge_pod_template(base, patch)
    assert json.dumps(base, sort_keys=True) == before, "the base must not be modified"
    for key, value in ((patch.get("metadata") or {}).get("labels") or {}).items():
        assert merged["metadata"]["labels"][key] == value
    by_name = {c["name"]: c for c in (merged.get("spec") or {}).get("containers") or []}
    assert len(by_name) == len((merged.get("spec") or {}).get("containers") or [])
    for container in (patch.get("spec") or {}).get("containers") or []:
        got = by_name[container["name"]]
        for field in ("image", "args"):
            if field in container:
                assert got[field] == container[field]
        env = {e["name"]: e["value"] for e in got.get("env") or []}
        for item in container.get("env") or []:
            assert env[item["name"]] == item["value"]


@given(_template, _template)
def test_merging_is_idempotent(base: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_pod_template(base, patch)
    assert merge_pod_template(once, patch) == once


MERGE_CASES = [
    pytest.param(
        {
            "spec": {
                "containers": [{"name": "mcp", "image": "a", "env": [{"name": "X", "value": "1"}]}]
            }
        },
        {"spec": {"containers": [{"name": "mcp", "env": [{"name": "Y", "value": "2"}]}]}},
        {
            "spec": {
                "containers": [
                    {
                        "name": "mcp",
                        "image": "a",
                        "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                    }
                ]
            }
        },
        id="containers-and-env-merge-by-name",
    ),
    pytest.param(
        {"spec": {"containers": [{"name": "mcp"}]}},
        {"spec": {"containers": [{"name": "sidecar", "image": "s"}]}},
        {"spec": {"containers": [{"name": "mcp"}, {"name": "sidecar", "image": "s"}]}},
        id="new-container-appended",
    ),
    pytest.param(
        {"spec": {"containers": [{"name": "mcp", "args": ["a", "b"]}]}},
        {"spec": {"containers": [{"name": "mcp", "args": ["c"]}]}},
        {"spec": {"containers": [{"name": "mcp", "args": ["c"]}]}},
        id="plain-lists-replaced",
    ),
    pytest.param(
        {"spec": {"tolerations": [{"key": "a"}]}},
        {"spec": {"tolerations": [{"key": "b"}]}},
        {"spec": {"tolerations": [{"key": "b"}]}},
        id="tolerations-replaced",
    ),
    pytest.param(
        {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}},
        {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}},
        {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}},
        id="volume-replaced-whole",
    ),
    pytest.param(
        {"spec": {"containers": [{"name": "mcp", "ports": [{"containerPort": 80, "name": "a"}]}]}},
        {"spec": {"containers": [{"name": "mcp", "ports": [{"containerPort": 80, "name": "b"}]}]}},
        {"spec": {"containers": [{"name": "mcp", "ports": [{"containerPort": 80, "name": "b"}]}]}},
        id="ports-by-container-port",
    ),
    pytest.param(
        {"spec": {"nodeSelector": {"a": "1"}, "hostNetwork": True}},
        {"spec": {"nodeSelector": None, "hostNetwork": None}},
        {"spec": {}},
        id="null-deletes",
    ),
    pytest.param(
        {"spec": {"containers": [{"name": "mcp", "env": [{"name": "X", "valueFrom": {"a": 1}}]}]}},
        {
            "spec": {
                "containers": [
                    {"name": "mcp", "env": [{"name": "X", "value": "v", "valueFrom": None}]}
                ]
            }
        },
        {"spec": {"containers": [{"name": "mcp", "env": [{"name": "X", "value": "v"}]}]}},
        id="null-inside-merged-element",
    ),
    pytest.param(
        {},
        {"spec": {"securityContext": {"runAsUser": 1, "fsGroup": None}}},
        {"spec": {"securityContext": {"runAsUser": 1}}},
        id="nulls-dropped-from-new-values",
    ),
    pytest.param(
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"b": "3"}}},
        {"metadata": {"labels": {"a": "1", "b": "3"}}},
        id="labels-merge",
    ),
]


@pytest.mark.parametrize(("base", "patch", "expected"), MERGE_CASES)
def test_merges_like_a_strategic_merge_patch(
    base: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_pod_template(base, patch) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            '{"spec": {"initContainers": [{"name": "side", "restartPolicy": "Always"}]}}',
            id="sidecar",
        ),
        pytest.param(
            '{"spec": {"ephemeralContainers": [{"name": "d", "targetContainerName": "mcp"}]}}',
            id="ephemeral-target",
        ),
        pytest.param('{"spec": {"overhead": {"cpu": "250m", "memory": 1024}}}', id="overhead"),
    ],
)
def test_accepts_what_the_shared_field_table_holds(text: str) -> None:
    assert parse_pod_patch(text) == json.loads(text)


def test_a_null_metadata_field_reaches_no_pod() -> None:
    patch = parse_pod_patch('{"metadata": {"creationTimestamp": null, "labels": {"team": "a"}}}')
    merged = merge_pod_template({"metadata": {"labels": {"app": "x"}}, "spec": {}}, patch)
    assert merged["metadata"] == {"labels": {"app": "x", "team": "a"}}
