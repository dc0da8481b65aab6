"""Session records written down and read back: what `encode_record` writes `decode_record`
returns unchanged, and anything else a store might hold is a `RecordError`, never another
exception and never a record."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_proxyrunner.sessionstore.records import (
    KINDS,
    MAX_STATE_BYTES,
    RecordError,
    SessionRecord,
    decode_record,
    encode_record,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
printable_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
    min_size=1,
    max_size=256,
).filter(str.isprintable)
records = st.builds(
    SessionRecord,
    id=printable_ids,
    kind=st.sampled_from(sorted(KINDS)),
    owner=st.text(max_size=60),
    subject=st.none() | st.text(max_size=80),
    era=st.text(max_size=20),
    created=st.floats(allow_nan=False, allow_infinity=False),
    state=st.dictionaries(st.text(max_size=20), json_values, max_size=6),
)


@given(records)
def test_a_record_reads_back_as_it_was_written(record: SessionRecord) -> None:
    fields = encode_record(record)
    assert all(isinstance(v, str) for v in fields.values())
    assert decode_record(fields) == record


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=10))
def test_arbitrary_fields_are_a_record_error_or_a_valid_record(fields: dict[str, str]) -> None:
    try:
        record = decode_record(fields)
    except RecordError:
        return
    assert encode_record(record) is not None


@given(records, st.sampled_from(["id", "kind", "owner", "subject", "era", "created"]))
def test_a_record_missing_a_field_is_refused(record: SessionRecord, name: str) -> None:
    fields = encode_record(record)
    del fields[name]
    with pytest.raises(RecordError):
        decode_record(fields)


def _fields(**changes: str) -> dict[str, str]:
    record = SessionRecord("s1", "streamable-http", "10.0.0.1:8080", "alice", "", 1.5)
    return {**encode_record(record), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "websocket"},
        {"subject": "{"},
        {"subject": "42"},
        {"subject": '{"sub": "alice"}'},
        {"created": "yesterday"},
        {"id": ""},
        {"id": "a\nb"},
        {"id": "x" * 257},
        {"s:target": "not json"},
        {"extra": "1"},
        {"s:deep": "[" * 100_000 + "]" * 100_000},
        {"subject": "[" * 100_000},
    ],
)
def test_fields_a_proxy_never_writes_are_refused(changes: dict[str, str]) -> None:
    with pytest.raises(RecordError):
        decode_record(_fields(**changes))


def test_a_state_too_large_is_refused_both_ways() -> None:
    big = SessionRecord("s1", "sse", "", None, "", 0.0, {"blob": "x" * MAX_STATE_BYTES})
    with pytest.raises(RecordError):
        encode_record(big)
    with pytest.raises(RecordError):
        decode_record(_fields(**{"s:blob": json.dumps("x" * MAX_STATE_BYTES)}))


def test_a_state_that_is_not_json_is_refused() -> None:
    record = SessionRecord("s1", "sse", "", None, "", 0.0, {"tags": {"a", "b"}})
    with pytest.raises(RecordError):
        encode_record(record)
