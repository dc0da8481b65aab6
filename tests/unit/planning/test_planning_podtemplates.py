"""The operator's structural check of `spec.podTemplateSpec` (condition `PodTemplateValid`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_operator.planning.mcpservers.podtemplates import pod_template_problem

P = "spec.podTemplateSpec"


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(None, id="absent"),
        pytest.param({}, id="empty"),
        pytest.param(
            {"metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}}}, id="metadata"
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": None, "labels": {"a": "b"}}}, id="metadata-null"
        ),
        pytest.param(
            {
                "spec": {
                    "containers": [{"name": "mcp", "env": [{"name": "A", "value": "1"}]}],
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                    "securityContext": {"runAsUser": 1000},
                }
            },
            id="full-spec",
        ),
        pytest.param({"spec": {"securityContext": None, "containers": None}}, id="null-is-unset"),
        pytest.param(
            {"spec": {"overhead": {"cpu": "250m"}, "schedulingGates": [{"name": "wait"}]}},
            id="fields-from-the-shared-table",
        ),
    ],
)
def test_accepts_pod_templates(template: Any) -> None:
    assert pod_template_problem(template) is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        pytest.param([], f"{P}: must be an object (a PodTemplateSpec)", id="not-object"),
        pytest.param(
            {"containers": []},
            f"{P}.containers: unknown field (expected metadata and spec)",
            id="unknown-top-level",
        ),
        pytest.param({"metadata": []}, f"{P}.metadata: must be an object", id="metadata-type"),
        pytest.param(
            {"metadata": {"labels": {"a": 1}}},
            f"{P}.metadata.labels.a: must be a string",
            id="label-value",
        ),
        pytest.param(
            {"metadata": {"annotations": "x"}},
            f"{P}.metadata.annotations: must be an object of strings",
            id="annotations-type",
        ),
        pytest.param(
            {"metadata": {"name": "mine"}},
            f"{P}.metadata.name: only labels and annotations may be set",
            id="metadata-name",
        ),
        pytest.param({"spec": "x"}, f"{P}.spec: must be an object", id="spec-type"),
        pytest.param(
            {"spec": {"containers": {}}},
            f"{P}.spec.containers: must be a list",
            id="containers-type",
        ),
        pytest.param(
            {"spec": {"containers": ["mcp"]}},
            f"{P}.spec.containers[0]: must be an object",
            id="container-type",
        ),
        pytest.param(
            {"spec": {"containers": [{}]}},
            f"{P}.spec.containers[0].name: required",
            id="container-name",
        ),
        pytest.param(
            {"spec": {"initContainers": [{"name": "a"}, {"name": "a"}]}},
            f"{P}.spec.initContainers[1].name: duplicate name 'a'",
            id="duplicate-init-container",
        ),
        pytest.param(
            {"spec": {"volumes": [{"name": ""}]}},
            f"{P}.spec.volumes[0].name: required",
            id="volume-name",
        ),
        pytest.param(
            {"spec": {"nodeSelector": []}},
            f"{P}.spec.nodeSelector: must be an object",
            id="nodeSelector-type",
        ),
        pytest.param(
            {"spec": {"tolerations": {}}},
            f"{P}.spec.tolerations: must be a list",
            id="tolerations-type",
        ),
        # The shared field table (moorage_api.podfields) leaves alpha fields out, as the webhook
        # and the proxy runner do.
        pytest.param(
            {"spec": {"hostnameOverride": "mcp"}},
            f"{P}.spec.hostnameOverride: unknown field",
            id="hostname-override",
        ),
        pytest.param(
            {"spec": {"nodeSelecter": {}}},
            f"{P}.spec.nodeSelecter: unknown field",
            id="unknown-spec-field",
        ),
        pytest.param(
            {"spec": {"schedulingGates": [{"name": "a"}, {"name": "a"}]}},
            f"{P}.spec.schedulingGates[1].name: duplicate name 'a'",
            id="duplicate-scheduling-gate",
        ),
        pytest.param(
            {"spec": {"os": "linux"}},
            f"{P}.spec.os: must be an object",
            id="os-type",
        ),
    ],
)
def test_rejects_malformed_templates_naming_the_field(template: Any, problem: str) -> None:
    assert pod_template_problem(template) == problem


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["metadata", "spec", "labels", "containers", "name", "volumes", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=15,
)


@given(json_values)
def test_any_json_gets_an_answer_never_an_exception(template: Any) -> None:
    problem = pod_template_problem(template)
    assert problem is None or problem.startswith(P)
