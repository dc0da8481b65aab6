"""Bounds on Cedar policy text, checked before any Cedar parser sees it.

Pure: no I/O, and no Cedar engine. The Cedar parser, its JSON conversion and its evaluator
recurse on the native stack once per level of the expression tree, and overflowing that stack
kills the process (SIGSEGV): no exception reaches Python. Measured with cedarpy 4.12 on an 8 MiB
stack (the default main-thread stack), the process dies at about

- 660 nested `(`, `[` or `{` (parse, about 12 KiB of stack per level);
- 4,400 nested `if ... then ... else`;
- 10,000 terms of a `&&`, `||`, `+`, `*`, `<`, `has`, `like`, `in`, `.` or `["a"]` chain when
  converted to JSON (`policies_to_json_str`), 65,000 when parsed or evaluated;

and Python's `json.loads` of that JSON (two levels per tree level) raises RecursionError from
about 500 chained terms. `!` and unary `-` are refused by Cedar itself beyond four in a row.

Every text the webhook, the operator or the proxy runner hands to Cedar therefore passes
`check_policies_bounds` first. A small tokenizer that knows Cedar's string literals and `//`
comments (so brackets or operators inside a string or a comment do not count) measures, for each
policy (up to `;` outside brackets), how deeply brackets nest and how many operators it holds.
Every level of a Cedar expression tree is a bracket or an operator (`if` counts as one, and so
does an index `[`, whose brackets close at once), so the tree is at most
`MAX_NESTING + MAX_OPERATORS` deep: 160 levels, about 330 levels of JSON, and
under 1 MiB of native stack in the worst shapes measured (32 brackets take about 400 KiB, 128
chained `if`s about 250 KiB). A test runs Cedar at exactly these limits in a subprocess, on a
thread with an eighth of the default stack, and checks that it survives.

The same limits are stated in the CRD schema (`maxLength`, `maxItems`) so that the apiserver
refuses an oversized policy before anything parses it; the webhook, the operator (for
`authzConfig.configMap`) and the proxy runner (for a live RunConfig change) apply this check.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import AfterValidator, Field

MAX_POLICY_LENGTH: Final = 16_384
"""Characters in one entry of `policies` (an entry may hold several policies)."""
MAX_POLICY_ENTRIES: Final = 64
"""Entries in `policies`."""
MAX_ENTITIES_JSON_LENGTH: Final = 65_536
"""Characters in `entitiesJson` (Cedar itself refuses entities nested more than ~125 deep)."""
MAX_NESTING: Final = 32
"""How deeply `(`, `[` and `{` may nest, the braces around a condition included."""
MAX_OPERATORS: Final = 128
"""Operators in one policy: `&&` `||` `==` `!=` `<` `<=` `>` `>=` `+` `-` `*` `!` `.` `[` and the
keywords `if`, `has`, `like`, `in`, `is`. Permit policies combine with "or", so a longer policy
can always be split into several."""

POLICIES_SEPARATOR: Final = "\n"
"""How the entries of `policies` are joined into the one text the proxy runner parses."""

_KEYWORD_OPERATORS: Final = frozenset({"if", "has", "like", "in", "is"})

# Alternatives are tried left to right at each position; characters no alternative matches
# (spaces, digits, `:`, `,`, `@`, a lone `/`, anything non-ASCII outside a string) are skipped.
# A comment ends at the first character any lexer might take for a line end (Cedar's also ends
# at `\r`): ending it too early can only count more, never less.
# A string runs to the next unescaped quote, or to the end of the text when it is not closed
# (the parser then refuses the text; nothing after the quote can nest). Linear: no backtracking.
_TOKEN: Final = re.compile(
    r"""
     (?P<string>"(?:[^"\\]|\\.)*"?)
    |(?P<comment>//[^\n\r\x0b\x0c\x85\u2028\u2029]*)
    |(?P<word>[A-Za-z_][A-Za-z_0-9]*)
    |(?P<open>[(\[{])
    |(?P<close>[)\]}])
    |(?P<operator>&&|\|\||==|!=|<=|>=|[<>+\-*!.&|])
    |(?P<end>;)
    """,
    re.VERBOSE | re.DOTALL,
)


class PolicyBoundsError(ValueError):
    """A policy text exceeds a bound; the message says which, where, and how to fix it.

    `index`: the entry of `policies` at fault, or None when it is the list as a whole.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index

    @property
    def field(self) -> str:
        """`policies[i]` or `policies`, to prefix with the path of the list."""
        return "policies" if self.index is None else f"policies[{self.index}]"


@dataclass(frozen=True, slots=True)
class PolicyShape:
    """What the tokenizer measured in one text.

    Invariants: `nesting` is the deepest bracket level reached (0 for none), `operators` the most
    operators in any one policy; `*_at` are offsets into the text of the bracket that first
    reached `nesting` and of the start of the policy with `operators` (0 when the count is 0).
    """

    nesting: int
    nesting_at: int
    operators: int
    operators_at: int
    policies: int
    """Policy ends (`;` outside brackets) seen."""


@functools.lru_cache(maxsize=512)
def measure_policy_text(text: str) -> PolicyShape:
    """Bracket nesting and operators per policy of `text`; never raises."""
    depth = nesting = nesting_at = 0
    count = most = most_at = policy_at = policies = 0
    starting = True
    for token in _TOKEN.finditer(text):
        kind = token.lastgroup
        if starting and kind != "comment":
            # A policy starts at its first token, not at the space or comment before it.
            policy_at, starting = token.start(), False
        if kind == "open":
            depth += 1
            if depth > nesting:
                nesting, nesting_at = depth, token.start()
            # `x["a"]["b"]...` deepens the tree one level per index with the brackets closed
            # at once, so every `[` is an operator too (a set literal costs one).
            if token.group() == "[":
                count += 1
                if count > most:
                    most, most_at = count, policy_at
        elif kind == "close":
            # An unbalanced close is the parser's to report; it must not hide a later opening.
            depth = max(depth - 1, 0)
        elif kind == "operator" or (kind == "word" and token.group() in _KEYWORD_OPERATORS):
            count += 1
            if count > most:
                most, most_at = count, policy_at
        elif kind == "end" and depth == 0:
            policies += 1
            count, starting = 0, True
    return PolicyShape(nesting, nesting_at, most, most_at, policies)


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def check_policy_bounds(text: str) -> None:
    """`PolicyBoundsError` when one policy text is too long, too deeply nested or too complex."""
    if len(text) > MAX_POLICY_LENGTH:
        raise PolicyBoundsError(
            f"is {len(text)} characters long; at most {MAX_POLICY_LENGTH} are allowed "
            "(split the policies over several entries)"
        )
    shape = measure_policy_text(text)
    if shape.nesting > MAX_NESTING:
        raise PolicyBoundsError(
            f"nests brackets {shape.nesting} deep (at {_position(text, shape.nesting_at)}); "
            f"at most {MAX_NESTING} levels of (, [ and {{ are allowed"
        )
    if shape.operators > MAX_OPERATORS:
        raise PolicyBoundsError(
            f"has a policy with {shape.operators} operators (starting at "
            f"{_position(text, shape.operators_at)}); at most {MAX_OPERATORS} are allowed in one "
            'policy (split it into several policies, or test a set: ["a", "b"].contains(x))'
        )


def join_policies(policies: Sequence[str]) -> str:
    """The one text the entries of `policies` make together (what the proxy runner parses)."""
    return POLICIES_SEPARATOR.join(policies)


def check_policies_bounds(policies: Sequence[str]) -> None:
    """`PolicyBoundsError` (with the entry's `index`) when an entry of `policies` exceeds a bound.

    Entries are checked one by one and then joined: an entry that leaves a bracket or a string
    open continues into the next one in the joined text.
    """
    if len(policies) > MAX_POLICY_ENTRIES:
        raise PolicyBoundsError(
            f"has {len(policies)} entries; at most {MAX_POLICY_ENTRIES} are allowed"
        )
    for index, text in enumerate(policies):
        try:
            check_policy_bounds(text)
        except PolicyBoundsError as exc:
            raise PolicyBoundsError(str(exc), index=index) from None
    shape = measure_policy_text(join_policies(policies))
    if shape.nesting > MAX_NESTING or shape.operators > MAX_OPERATORS:
        raise PolicyBoundsError(
            "an entry leaves a bracket or a string open, and joined with the next entries it "
            f"nests {shape.nesting} deep with up to {shape.operators} operators in one policy "
            f"(limits {MAX_NESTING} and {MAX_OPERATORS}); close every bracket and string within "
            "its entry"
        )


def _bounded_policy(text: str) -> str:
    check_policy_bounds(text)
    return text


def _bounded_policies(policies: list[str]) -> list[str]:
    check_policies_bounds(policies)
    return policies


CedarPolicyText = Annotated[
    str, Field(max_length=MAX_POLICY_LENGTH), AfterValidator(_bounded_policy)
]
"""One entry of `policies`: the schema bounds its length, validation the rest of the bounds."""

CedarPolicies = Annotated[
    list[CedarPolicyText],
    Field(min_length=1, max_length=MAX_POLICY_ENTRIES),
    AfterValidator(_bounded_policies),
]
"""The `policies` list of an MCPServer, an authz ConfigMap document and a RunConfig."""

CedarEntitiesJson = Annotated[str, Field(max_length=MAX_ENTITIES_JSON_LENGTH)]
"""`entitiesJson`: a JSON array of Cedar entities, bounded in length."""
