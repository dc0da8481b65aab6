"""Asserting that a model refuses a body with a message naming the field, as users read it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from moorage_api import validation_messages


def assert_rejected_naming(
    model: type[BaseModel], body: dict[str, Any], field: str, expected: str
) -> None:
    """`model` refuses `body`, and one message starts with `field:` and contains `expected`."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    messages = validation_messages(info.value)
    assert any(m.startswith(f"{field}:") and expected in m for m in messages), messages
