"""The small syntaxes the rules rely on: globs, git refs and URLs, names, quantities, Cedar."""

from __future__ import annotations

import fnmatch
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_webhook.validation.cedarpolicies import check_entities_json, check_policy_text
from moorage_webhook.validation.globs import glob_problem
from moorage_webhook.validation.locations import (
    git_commit_problem,
    git_ref_problem,
    git_repository_problem,
    https_url_problem,
)
from moorage_webhook.validation.names import (
    config_key_problem,
    dns1035_label_problem,
    dns1123_label_problem,
    dns1123_subdomain_problem,
    env_name_problem,
    label_value_problem,
    port_name_problem,
    qualified_name_problem,
)
from moorage_webhook.validation.quantities import QuantityError, parse_quantity
from moorage_webhook.validation.verdict import Findings, Problem, Verdict, quoted

# -- globs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["*", "io.github.*", "a?c", "[abc]", "[^abc]", "[a-z]*", "[\\]]", "\\*", "[a\\-z]", "[z-a]"],
)
def test_valid_globs(pattern: str) -> None:
    assert glob_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("[abc", "never closed", id="unclosed"),
        pytest.param("[]", 'unescaped "]"', id="empty-class"),
        pytest.param("[^]", 'unescaped "]"', id="empty-negated-class"),
        pytest.param("x[]a]", 'unescaped "]" at position 3', id="bracket-first-in-class"),
        pytest.param("[-a]", 'unescaped "-"', id="leading-dash"),
        pytest.param("[a-]", 'unescaped "]"', id="dangling-range"),
        pytest.param("abc\\", "unfinished escape", id="trailing-backslash"),
        pytest.param("[a\\", "unfinished escape", id="escape-in-class"),
    ],
)
def test_invalid_globs_say_why(pattern: str, reason: str) -> None:
    problem = glob_problem(pattern)
    assert problem is not None
    assert reason in problem


@given(st.text(alphabet="ab*?[]^-\\", max_size=12))
@settings(max_examples=2000)
def test_glob_checker_never_crashes_and_plain_patterns_are_valid(pattern: str) -> None:
    problem = glob_problem(pattern)
    if pattern and not set(pattern) & set("[\\"):
        assert problem is None
    if problem is None and pattern:
        # Whatever we accept, Python's matcher can use without error.
        re.compile(fnmatch.translate(pattern))


# -- git and URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/repo.git",
        "https://gitlab.example.com:8443/group/sub/repo",
        "ssh://git@example.com/org/repo.git",
        "git@github.com:org/repo.git",
        "file:///tmp/registry",
    ],
)
def test_supported_repository_urls(url: str) -> None:
    assert git_repository_problem(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "must not be empty"),
        ("https://github.com/org/my repo", "whitespace"),
        ("ftp://example.com/r", "not a supported repository URL"),
        ("github.com/org/repo", "not a supported repository URL"),
        ("git@github.com", "not a valid git@host:path"),
        ("ssh:///path", "has no host"),
        ("file://host/path", "absolute path"),
    ],
)
def test_unsupported_repository_urls(url: str, reason: str) -> None:
    problem = git_repository_problem(url)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("ref", ["main", "release/v1.2", "v1.0.0", "feature/x-y_z", "a@b"])
def test_valid_ref_names(ref: str) -> None:
    assert git_ref_problem(ref) is None


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "/a",
        "a/",
        "a//b",
        "a.",
        "@",
        "a@{1}",
        ".hidden",
        "x/.y",
        "x.lock",
        "x\x01",
    ],
)
def test_invalid_ref_names(ref: str) -> None:
    assert git_ref_problem(ref) is not None


def test_commits_are_full_lowercase_shas() -> None:
    assert git_commit_problem("a" * 40) is None
    assert git_commit_problem("b" * 64) is None
    for bad in ("a" * 39, "a" * 41, "A" * 40, "g" * 40, "abc1234"):
        assert git_commit_problem(bad) is not None, bad


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://issuer.example.com", None),
        ("https://issuer.example.com/realms/a?x=1", None),
        ("http://localhost:8080", None),
        ("http://127.0.0.2", None),
        ("http://dev.localhost", None),
        ("http://issuer.example.com", "must use https://"),
        ("https://", "has no host"),
        ("issuer.example.com", "expected an https:// URL"),
        ("https://a.example.com/#x", "must not have a #fragment"),
        ("https://u@a.example.com", "must not carry credentials"),
        ("https://a.example.com:http", "expected an https:// URL"),
        ("https://a b", "whitespace"),
    ],
)
def test_https_urls(url: str, fragment: str | None) -> None:
    problem = https_url_problem(url, what="URL")
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        pytest.param(
            dns1123_label_problem, ["a", "a-1", "1a"], ["A", "a.b", "-a", "a" * 64], id="label"
        ),
        pytest.param(dns1035_label_problem, ["a", "a-1"], ["1a", "a-", "a" * 64], id="1035"),
        pytest.param(
            dns1123_subdomain_problem, ["a.b-c", "x"], ["a..b", "A", "a" * 254], id="subdomain"
        ),
        pytest.param(env_name_problem, ["A", "_x.y-z", "a1"], ["1a", "a b", "a=b", ""], id="env"),
        pytest.param(config_key_problem, ["a.json", "_x-1"], ["a/b", "..", "", "a b"], id="key"),
        pytest.param(
            qualified_name_problem,
            ["app", "example.com/app", "a_b.c-d"],
            ["", "/a", "a/", "Ex.com/a", "a/b/c", "-a", "a" * 64],
            id="qualified",
        ),
        pytest.param(label_value_problem, ["", "v1", "a_b.c"], ["-a", "a b", "a" * 64], id="value"),
        pytest.param(
            port_name_problem, ["http", "h-2"], ["HTTP", "a--b", "123", "x" * 16], id="port"
        ),
    ],
)
def test_name_syntaxes(check: object, good: list[str], bad: list[str]) -> None:
    assert callable(check)
    for value in good:
        assert check(value) is None, value
    for value in bad:
        assert check(value) is not None, value


# -- quantities -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("2", Decimal(2)),
        (2, Decimal(2)),
        (0.25, Decimal("0.25")),
        ("1e3", Decimal(1000)),
        ("1.5k", Decimal(1500)),
        (".5", Decimal("0.5")),
        ("-1", Decimal(-1)),
        ("100n", Decimal("0.0000001")),
    ],
)
def test_quantity_values(value: object, expected: Decimal) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "1.2.3", "1gi", "1 Gi", "Gi", "1e", "1e999", True, None, []])
def test_quantity_rejects_non_quantities(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(value)


# -- cedar ------------------------------------------------------------------------------------


def test_cedar_results_are_memoised_by_text() -> None:
    text = 'permit(principal, action == Action::"get_prompt", resource) when { 1 == 1 };'
    check_policy_text.cache_clear()
    first = check_policy_text(text)
    second = check_policy_text(text)
    assert first is second
    assert check_policy_text.cache_info().hits == 1
    assert first.error is None


def test_cedar_action_groups_are_not_second_guessed() -> None:
    check = check_policy_text('permit(principal, action in Action::"readers", resource);')
    assert check.warnings == ()
    check = check_policy_text('permit(principal, action in [Ns::Action::"call_tool"], resource);')
    assert 'names Ns::Action::"call_tool", which Moorage never evaluates' in check.warnings[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", None),
        ('[{"uid": {"type": "Client", "id": "a"}, "attrs": {"n": 1}, "parents": []}]', None),
        ("not json", "is not JSON"),
        ("{}", "must be a JSON list"),
        ("[1]", "entity [0] must be an object"),
        ('[{"uid": {"id": "a"}, "attrs": {}, "parents": []}]', "uid.type must be a non-empty"),
        (
            '[{"uid": {"type": "T", "id": 1}, "attrs": {}, "parents": []}]',
            "uid.id must be a string",
        ),
        ('[{"uid": {"type": "T", "id": "a"}, "parents": []}]', "attrs must be an object"),
        ('[{"uid": {"type": "T", "id": "a"}, "attrs": {}}]', "parents must be a list"),
        ('[{"uid": {"type": "T", "id": "a"}, "attrs": {}, "parents": [1]}]', "parents[0] must be"),
        (
            '[{"uid": {"type": "T T", "id": "a"}, "attrs": {}, "parents": []}]',
            "is not a valid Cedar entities document",
        ),
    ],
)
def test_cedar_entities(text: str, fragment: str | None) -> None:
    problem = check_entities_json(text)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem


# -- verdicts ---------------------------------------------------------------------------------


def test_verdict_message_joins_errors_with_their_paths() -> None:
    verdict = Verdict(errors=(Problem("spec.a", "bad"), Problem("spec.b", "worse")))
    assert verdict.message() == "spec.a: bad; spec.b: worse"
    assert not verdict.allowed


def test_findings_keep_warnings_unique_and_count_extra_errors() -> None:
    out = Findings()
    out.warn("x", "y")
    out.warn("x", "y")
    for index in range(25):
        out.error(f"e{index}", "bad")
    verdict = out.verdict()
    assert verdict.warning_texts() == ["x: y"]
    assert (len(verdict.errors), verdict.omitted_errors) == (20, 5)


def test_quoted_uses_double_quotes_like_kubernetes() -> None:
    assert quoted('a"b') == '"a\\"b"'
    assert quoted("é") == '"é"'
