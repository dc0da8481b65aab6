"""The examples in deploy/examples pass the webhook: no errors and no warnings, so that what users
copy from them is what the rules recommend."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage_webhook.validation import (
    Verdict,
    validate_mcpexternalauthconfig,
    validate_mcpgroup,
    validate_mcpremoteproxy,
    validate_mcpserver,
    validate_mcptoolconfig,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"
VALIDATORS: dict[str, Callable[..., Verdict]] = {
    "MCPServer": validate_mcpserver,
    "MCPToolConfig": validate_mcptoolconfig,
    "MCPRemoteProxy": validate_mcpremoteproxy,
    "MCPExternalAuthConfig": validate_mcpexternalauthconfig,
    "MCPGroup": validate_mcpgroup,
}


def example_documents() -> list[Any]:
    return [
        pytest.param(document, id=f"{path.stem}:{document['metadata']['name']}")
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") in VALIDATORS
    ]


def test_every_new_kind_has_an_example() -> None:
    kinds = {param.values[0]["kind"] for param in example_documents()}
    assert {"MCPRemoteProxy", "MCPExternalAuthConfig", "MCPGroup"} <= kinds


@pytest.mark.parametrize("document", example_documents())
def test_the_examples_are_admitted_without_warnings(document: dict[str, Any]) -> None:
    body = copy.deepcopy(document)
    body["metadata"]["namespace"] = "team-a"
    verdict = VALIDATORS[body["kind"]](body, old=None)
    assert [str(e) for e in verdict.errors] == []
    assert [str(w) for w in verdict.warnings] == []
