"""Cedar survives every policy the bounds admit: the worst shapes at exactly the limits.

Each shape is built to pass `check_policies_bounds` with nothing to spare (a test below says so),
then handed to every cedarpy entry point Moorage calls (parse, JSON conversion and Python's
`json.loads` of it, `is_authorized`, `is_authorized_batch`, `is_authorized_partial`) in a
subprocess, on a thread whose stack is an eighth of the default 8 MiB. A stack overflow there
kills the subprocess with a signal instead of the test run; surviving shows the limits leave a
margin of at least eight times. Shapes one step over the limits must be refused by the check.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from moorage_api.cedarbounds import (
    MAX_NESTING,
    MAX_OPERATORS,
    PolicyBoundsError,
    check_policies_bounds,
    measure_policy_text,
)

HEAD = "permit(principal, action, resource) when { "
TAIL = " };"
# Brackets left for the condition: the braces of `when { ... }` are one level.
INNER = MAX_NESTING - 1


def _nested(open_: str, close: str, inner: str, levels: int = INNER) -> str:
    return open_ * levels + inner + close * levels


def _chain(operator: str, term: str, *, terms: int = MAX_OPERATORS + 1) -> str:
    return f" {operator} ".join([term] * terms)


def _ifs(levels: int) -> str:
    return "if true then " * levels + "true" + " else false" * levels


SHAPES: dict[str, str] = {
    "parentheses": _nested("(", ")", "context.b"),
    "sets": _nested("[", "]", "1") + " == context.x",
    "records": _nested("{a: ", "}", "1") + " == context.x",
    "contains-in-contains": "[true].contains(" * INNER + "true" + ")" * INNER,
    "if-then-else": _ifs(MAX_OPERATORS),
    "and-chain": _chain("&&", "true"),
    "or-chain": _chain("||", "false"),
    "plus-chain": "1" + " + 1" * (MAX_OPERATORS - 1) + " == 0",
    "minus-chain": "1" + " - 1" * (MAX_OPERATORS - 1) + " == 0",
    "times-chain": "1" + " * 2" * (MAX_OPERATORS - 1) + " == 0",
    "attribute-chain": "context" + ".a" * (MAX_OPERATORS - 1) + " == 1",
    "index-chain": "context" + '["a"]' * (MAX_OPERATORS - 1) + " == 1",
    # A term of k operators joined by `&&`: n terms hold n * (k + 1) - 1 operators.
    "has-chain": _chain("&&", "principal has a", terms=(MAX_OPERATORS + 1) // 2),
    "like-chain": _chain("&&", 'resource like "*"', terms=(MAX_OPERATORS + 1) // 2),
    "in-chain": _chain("&&", "principal in resource", terms=(MAX_OPERATORS + 1) // 2),
    "not-and-unary-minus": _chain("&&", "!!!!(-1 < 0)", terms=(MAX_OPERATORS + 1) // 7),
    "and-chain-inside-parentheses": _nested("(", ")", _chain("&&", "true"), levels=INNER),
    "ifs-inside-parentheses": _nested("(", ")", _ifs(MAX_OPERATORS), levels=INNER),
    "unknown-context-chain": _chain("&&", "context.b", terms=(MAX_OPERATORS + 1) // 2),
}

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    import cedarpy

    text = sys.stdin.read()
    failures = []

    def run():
        try:
            policies = cedarpy.PolicySet.from_str(text)
            json.loads(cedarpy.policies_to_json_str(text))
            entities = cedarpy.Entities.from_json_str("[]")
            request = {
                "principal": 'Client::"a"', "action": 'Action::"call_tool"',
                "resource": 'Tool::"t"', "context": {"b": True, "x": 1},
            }
            cedarpy.is_authorized(request, policies, entities)
            cedarpy.is_authorized_batch([request, request], policies, entities)
            partial = {k: v for k, v in request.items() if k != "context"}
            cedarpy.is_authorized_partial(partial, policies, entities)
        except BaseException as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    threading.stack_size(1 << 20)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    print("\\n".join(failures) or "survived")
    """
)


def _policy(shape: str) -> str:
    return HEAD + SHAPES[shape] + TAIL


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_shape_is_admitted_by_the_bounds(shape: str) -> None:
    check_policies_bounds([_policy(shape)])


@pytest.mark.parametrize(
    "shape",
    [
        "parentheses",
        "if-then-else",
        "and-chain",
        "attribute-chain",
        "index-chain",
        "ifs-inside-parentheses",
    ],
)
def test_the_shape_is_exactly_at_a_limit(shape: str) -> None:
    measured = measure_policy_text(_policy(shape))
    assert measured.nesting == MAX_NESTING or measured.operators == MAX_OPERATORS


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(HEAD + _nested("(", ")", "true", levels=INNER + 1) + TAIL, id="one-deeper"),
        pytest.param(HEAD + _chain("&&", "true", terms=MAX_OPERATORS + 2) + TAIL, id="longer"),
    ],
)
def test_one_step_over_a_limit_is_refused(policy: str) -> None:
    with pytest.raises(PolicyBoundsError):
        check_policies_bounds([policy])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_cedar_survives_the_shape_on_an_eighth_of_the_stack(shape: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=_policy(shape),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"cedarpy died with {done.returncode}: {done.stderr[-500:]}"
    assert done.stdout.strip() == "survived"
