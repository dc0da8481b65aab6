"""The one wording of JSON types that every component's messages use."""

from __future__ import annotations

import pytest

from moorage_api.jsonkinds import describe_json_type


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "null"),
        (True, "a boolean"),
        (3, "a number"),
        (2.5, "a number"),
        ("x", "a string"),
        ([], "a list"),
        ({}, "an object"),
        (b"raw", "bytes"),
    ],
    ids=repr,
)
def test_describes_each_json_type(value: object, words: str) -> None:
    assert describe_json_type(value) == words


def test_json_documents_may_call_a_list_an_array() -> None:
    assert describe_json_type([1], array="an array") == "an array"
