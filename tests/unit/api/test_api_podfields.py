"""The PodTemplateSpec field table: its own invariants, checked over every type it holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from moorage_api import podfields
from moorage_api.podfields import ListOf, MapOf, Struct


def _structs(kind: podfields.Kind, seen: set[int] | None = None) -> Iterator[Struct]:
    seen = set() if seen is None else seen
    if isinstance(kind, ListOf):
        yield from _structs(kind.item, seen)
    elif isinstance(kind, MapOf):
        yield from _structs(kind.value, seen)
    elif isinstance(kind, Struct) and id(kind) not in seen:
        seen.add(id(kind))
        yield kind
        for field in kind.fields.values():
            yield from _structs(field, seen)


def _lists(kind: Struct) -> Iterator[tuple[str, ListOf]]:
    for struct in _structs(kind):
        for name, field in struct.fields.items():
            if isinstance(field, ListOf):
                yield f"{struct.name}.{name}", field


ALL = list(_structs(podfields.POD_TEMPLATE_SPEC))


@pytest.mark.parametrize("struct", ALL, ids=lambda s: s.name)
def test_required_and_union_fields_are_fields_of_their_type(struct: Struct) -> None:
    assert struct.required <= set(struct.fields)
    assert set(struct.one_of) <= set(struct.fields)
    assert not struct.one_of_required or struct.one_of


@pytest.mark.parametrize(("where", "kind"), list(_lists(podfields.POD_TEMPLATE_SPEC)))
def test_a_merge_key_is_a_field_of_the_element(where: str, kind: ListOf) -> None:
    if kind.merge_key is not None:
        assert isinstance(kind.item, Struct), where
        assert kind.merge_key in kind.item.fields, where
    assert not kind.replace_element or kind.merge_key is not None, where


@pytest.mark.parametrize(
    ("struct", "field"),
    [
        (podfields.POD_SPEC, "hostnameOverride"),
        (podfields.CONTAINER, "restartPolicyRules"),
        (podfields.CONTAINER, "restartPolicy"),
        (podfields.CONTAINER, "targetContainerName"),
    ],
)
def test_alpha_and_out_of_place_fields_are_not_in_the_table(struct: Struct, field: str) -> None:
    assert field not in struct.fields


def test_init_and_ephemeral_containers_extend_the_container() -> None:
    container = set(podfields.CONTAINER.fields)
    assert set(podfields.INIT_CONTAINER.fields) == container | {"restartPolicy"}
    assert set(podfields.EPHEMERAL_CONTAINER.fields) == container | {"targetContainerName"}


def test_the_keys_list_elements_must_carry() -> None:
    assert podfields.element_keys(podfields.POD_SPEC) == {
        "containers": ("name", "string"),
        "ephemeralContainers": ("name", "string"),
        "hostAliases": ("ip", "string"),
        "imagePullSecrets": ("name", "string"),
        "initContainers": ("name", "string"),
        "readinessGates": ("conditionType", "string"),
        "resourceClaims": ("name", "string"),
        "schedulingGates": ("name", "string"),
        "topologySpreadConstraints": ("topologyKey", "string"),
        "volumes": ("name", "string"),
    }
    assert podfields.element_keys(podfields.CONTAINER) == {
        "env": ("name", "string"),
        "ports": ("containerPort", "integer"),
        "volumeMounts": ("mountPath", "string"),
        "volumeDevices": ("devicePath", "string"),
    }


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("hostNetwork", "boolean"),
        ("priority", "integer"),
        ("dnsPolicy", "string"),
        ("affinity", "object"),
        ("nodeSelector", "map of strings"),
        ("overhead", "map of quantities"),
        ("tolerations", "list of objects"),
        ("containers", "list of containers"),
        ("ephemeralContainers", "list of containers"),
    ],
)
def test_json_types_of_pod_spec_fields(field: str, expected: str) -> None:
    assert podfields.json_types(podfields.POD_SPEC)[field] == expected


def test_a_kind_without_a_coarse_json_type_is_refused() -> None:
    with pytest.raises(ValueError, match="no coarse JSON type"):
        podfields.json_type(ListOf(podfields.INT32))
