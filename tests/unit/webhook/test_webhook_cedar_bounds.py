"""The webhook refuses Cedar texts that would crash the parser, before the parser sees them."""

from __future__ import annotations

from typing import Any

import pytest

from moorage_webhook.validation.cedarpolicies import check_entities_json, check_policy_text
from moorage_webhook.validation.mcpservers import validate_mcpserver

HEAD = "permit(principal, action, resource) when { "


def _server(policies: list[str], entities_json: str = "[]") -> dict[str, Any]:
    return {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": {"name": "cedar", "namespace": "default"},
        "spec": {
            "image": "ghcr.io/moorage/time:1.2.0",
            "authzConfig": {
                "type": "inline",
                "inline": {"policies": policies, "entitiesJson": entities_json},
            },
        },
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("(" * 700 + "true" + ")" * 700, "nests brackets 701 deep", id="parentheses"),
        pytest.param("[" * 700 + "1" + "]" * 700 + " == 1", "nests brackets 701 deep", id="sets"),
        pytest.param(
            " && ".join(["true"] * 20_000), "String should have at most 16384 characters", id="and"
        ),
        pytest.param(
            " || ".join(["true"] * 200), "has a policy with 199 operators", id="shorter-or"
        ),
    ],
)
def test_a_policy_beyond_the_bounds_is_refused_at_its_entry(body: str, message: str) -> None:
    verdict = validate_mcpserver(
        _server(["permit(principal, action, resource);", HEAD + body + " };"])
    )
    assert [problem.path for problem in verdict.errors] == ["spec.authzConfig.inline.policies[1]"]
    assert message in verdict.errors[0].message


def test_the_policy_check_bounds_the_text_before_parsing_it() -> None:
    check = check_policy_text(HEAD + "(" * 5_000 + "true" + ")" * 5_000 + " };")
    assert check.error is not None
    assert check.error.startswith("nests brackets 5001 deep")


def test_a_policy_at_the_bounds_is_admitted() -> None:
    body = "(" * 31 + " && ".join(["context.b"] * 64) + ")" * 31
    assert validate_mcpserver(_server([HEAD + body + " };"])).errors == ()


def test_entities_nested_beyond_what_json_can_read_are_refused_with_a_message() -> None:
    nested = '{"a":' * 5_000 + "1" + "}" * 5_000
    text = f'[{{"uid": {{"type": "Group", "id": "g"}}, "attrs": {{"a": {nested}}}, "parents": []}}]'
    assert check_entities_json(text) == (
        "is nested too deeply (Cedar entities may nest at most about 100 levels)"
    )
