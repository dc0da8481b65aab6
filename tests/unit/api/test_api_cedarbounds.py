"""The Cedar policy bounds: what the tokenizer counts, what it must not count, the messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_api.cedarbounds import (
    MAX_NESTING,
    MAX_OPERATORS,
    MAX_POLICY_ENTRIES,
    MAX_POLICY_LENGTH,
    PolicyBoundsError,
    check_policies_bounds,
    check_policy_bounds,
    join_policies,
    measure_policy_text,
)

PERMIT = "permit(principal, action, resource)"


@pytest.mark.parametrize(
    ("text", "nesting", "operators"),
    [
        pytest.param("", 0, 0, id="empty"),
        pytest.param(f"{PERMIT};", 1, 0, id="scope-only"),
        pytest.param(f"{PERMIT} when {{ (true) }};", 2, 0, id="condition-in-parentheses"),
        pytest.param(f'{PERMIT} when {{ "((((((" == "" }};', 1, 1, id="parentheses-in-string"),
        pytest.param(f'{PERMIT} when {{ "a && b || c" == "" }};', 1, 1, id="operators-in-string"),
        pytest.param(f'{PERMIT} when {{ "\\"(((" == "" }};', 1, 1, id="escaped-quote-in-string"),
        pytest.param(
            f'{PERMIT} when {{ "\\\\" == "(" }};', 1, 1, id="escaped-backslash-ends-string"
        ),
        pytest.param(f'{PERMIT} when {{ "a\\nb" == "(" }};', 1, 1, id="escape-sequence"),
        pytest.param(f'{PERMIT} when {{ "\\u{{28}}" == "" }};', 1, 1, id="unicode-escape"),
        pytest.param(f'{PERMIT} when {{ "é(ü)漢" == "字" }};', 1, 1, id="unicode-in-string"),
        pytest.param("é ((( ü", 3, 0, id="unicode-outside-string"),
        pytest.param(f"// ((((( && ||\n{PERMIT};", 1, 0, id="line-comment"),
        pytest.param(f"// hi\r(( a && b )){PERMIT};", 2, 1, id="comment-ends-at-carriage-return"),
        pytest.param(f"// hi\u2028(( a )){PERMIT};", 2, 0, id="comment-ends-at-line-separator"),
        pytest.param(f'// a "quote\n{PERMIT} when {{ a && b }};', 1, 1, id="quote-in-comment"),
        pytest.param(f'{PERMIT} when {{ "//" == "(" }};', 1, 1, id="comment-marker-in-string"),
        pytest.param(f"{PERMIT} when {{ a / b }};", 1, 0, id="lone-slash-is-not-a-comment"),
        pytest.param('"unterminated ((( && ', 0, 0, id="unterminated-string-runs-to-end"),
        pytest.param('"ends in a backslash \\', 0, 0, id="unterminated-with-backslash"),
        pytest.param("))) (((", 3, 0, id="unbalanced-close-does-not-go-negative"),
        pytest.param("[{(", 3, 1, id="all-bracket-kinds"),
        pytest.param('context["a"]["b"]["c"]', 1, 3, id="each-index-is-an-operator"),
        pytest.param(
            "a && b || c == d != e < f <= g > h >= i + j - k * l ! m . n", 0, 13, id="symbols"
        ),
        pytest.param("if has like in is then else when", 0, 5, id="keyword-operators"),
        pytest.param("iffy hasten liken index island", 0, 0, id="keywords-inside-words"),
        pytest.param('Tool::"a" :: @id("x"), 1', 1, 0, id="not-operators"),
        pytest.param("a && b; c && d && e;", 0, 2, id="count-per-policy"),
        pytest.param("(a && b; c && d && e);", 1, 3, id="semicolon-in-brackets-ends-nothing"),
    ],
)
def test_the_tokenizer_measures(text: str, nesting: int, operators: int) -> None:
    shape = measure_policy_text(text)
    assert (shape.nesting, shape.operators) == (nesting, operators)


def test_policies_are_counted_at_semicolons_outside_brackets() -> None:
    assert measure_policy_text(f"{PERMIT}; {PERMIT}; ({PERMIT};)").policies == 2


def test_the_attack_of_nested_parentheses_is_refused_with_where_and_the_limit() -> None:
    text = f"{PERMIT} when {{\n  " + "(" * 700 + "true" + ")" * 700 + " };"
    with pytest.raises(PolicyBoundsError) as caught:
        check_policy_bounds(text)
    assert str(caught.value) == (
        f"nests brackets 701 deep (at line 2, column 702); at most {MAX_NESTING} levels of (, [ "
        "and { are allowed"
    )
    assert len(text.encode()) < 2_500


@pytest.mark.parametrize("line_end", ["\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"])
def test_nesting_hidden_after_a_comment_ended_by_another_line_end_is_refused(
    line_end: str,
) -> None:
    # Cedar's lexer ends a comment at `\r` too: a tokenizer ending it only at `\n` measured this
    # policy as one level deep, and cedarpy then overflowed its stack on it.
    text = f"{PERMIT} when {{ // hi{line_end}" + "(" * 2000 + "true" + ")" * 2000 + " };"
    with pytest.raises(PolicyBoundsError, match="nests brackets 2001 deep"):
        check_policy_bounds(text)


def test_the_attack_of_a_long_and_chain_is_refused_with_the_limit() -> None:
    text = f"{PERMIT};\n{PERMIT} when {{ " + " && ".join(["true"] * 20_000) + " };"
    with pytest.raises(PolicyBoundsError, match=f"long; at most {MAX_POLICY_LENGTH} are allowed"):
        check_policy_bounds(text)
    short = f"{PERMIT};\n{PERMIT} when {{ " + " && ".join(["true"] * 200) + " };"
    with pytest.raises(PolicyBoundsError) as caught:
        check_policy_bounds(short)
    assert str(caught.value).startswith(
        "has a policy with 199 operators (starting at line 2, column 1); at most "
        f"{MAX_OPERATORS} are allowed in one policy"
    )


def test_brackets_and_operators_in_strings_and_comments_never_count() -> None:
    inside = "(" * 1000 + " && " * 1000
    text = f'// {inside}\n{PERMIT} when {{ context.s == "{inside}" }};'
    check_policy_bounds(text)


def test_a_text_at_the_length_limit_passes_and_one_more_character_fails() -> None:
    text = PERMIT + ";" + " " * (MAX_POLICY_LENGTH - len(PERMIT) - 1)
    check_policy_bounds(text)
    with pytest.raises(PolicyBoundsError, match=f"at most {MAX_POLICY_LENGTH} are allowed"):
        check_policy_bounds(text + " ")


def test_the_entry_at_fault_is_named() -> None:
    deep = f"{PERMIT} when {{ " + "(" * 40 + "true" + ")" * 40 + " };"
    with pytest.raises(PolicyBoundsError, match=r"^nests brackets 41 deep") as caught:
        check_policies_bounds([f"{PERMIT};", deep])
    assert caught.value.field == "policies[1]"


def test_too_many_entries_are_refused() -> None:
    with pytest.raises(
        PolicyBoundsError, match=f"at most {MAX_POLICY_ENTRIES} are allowed"
    ) as caught:
        check_policies_bounds([f"{PERMIT};"] * (MAX_POLICY_ENTRIES + 1))
    assert caught.value.field == "policies"


def test_entries_that_only_nest_too_deeply_when_joined_are_refused() -> None:
    half = "(" * 20
    entries = [f"{PERMIT} when {{ {half}", f"{half} true" + ")" * 40 + " };"]
    for entry in entries:
        check_policy_bounds(entry)
    with pytest.raises(PolicyBoundsError, match="leaves a bracket or a string open") as caught:
        check_policies_bounds(entries)
    assert caught.value.field == "policies"


def test_an_open_string_carries_into_the_next_entry_when_joined() -> None:
    # Inside the string, the second entry's brackets do not count; what follows the closing
    # quote in the third entry does.
    entries = ['permit(principal, action, resource) when { context.s == "', "(" * 40, '" };']
    joined = measure_policy_text(join_policies(entries))
    assert joined.nesting == 1
    assert measure_policy_text(entries[1]).nesting == 40


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from('()[]{}"\\/;&|!.-+ \nifhasé字'), max_size=300))
def test_the_check_never_raises_anything_but_its_own_error_on_cedar_like_text(text: str) -> None:
    message = ""
    try:
        check_policies_bounds([text, text])
    except PolicyBoundsError as exc:
        message = str(exc)
    assert message == "" or "allowed" in message or "close every bracket" in message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_the_check_never_raises_anything_but_its_own_error_on_any_text(text: str) -> None:
    message = ""
    try:
        check_policy_bounds(text)
    except PolicyBoundsError as exc:
        message = str(exc)
    assert message == "" or "allowed" in message


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_characters='"\\'), max_size=500))
def test_anything_inside_a_string_literal_measures_as_nothing(inner: str) -> None:
    shape = measure_policy_text(f'"{inner}"')
    assert (shape.nesting, shape.operators) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=200))
def test_nesting_is_measured_exactly(levels: int) -> None:
    assert measure_policy_text("(" * levels + "x" + ")" * levels).nesting == levels


def test_an_index_chain_within_the_length_limit_is_refused() -> None:
    # 3,000 indexes fit in 16 KiB; Python's json.loads of Cedar's JSON gives up at about 500.
    text = f"{PERMIT} when {{ context" + '["a"]' * 3_000 + " == 1 };"
    assert len(text) < MAX_POLICY_LENGTH
    with pytest.raises(PolicyBoundsError, match="has a policy with 3001 operators"):
        check_policy_bounds(text)
