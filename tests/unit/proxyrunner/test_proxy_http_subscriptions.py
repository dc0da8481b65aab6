"""What each session subscribed through an HTTP backend, and what a policy change takes away."""

from __future__ import annotations

from moorage_proxyrunner.backends.reverse.subscriptions import SessionSubscriptions
from moorage_proxyrunner.protocol.pipeline import Identity
from moorage_proxyrunner.protocol.revocation import (
    listen_ended_error,
    revoked_uris,
    subscription_ended_notice,
)

ALICE = Identity(subject="alice")
BOB = Identity(subject="bob")


def forbids(*pairs: tuple[str | None, str]) -> object:
    def allowed(identity: Identity, uri: str) -> bool:
        return (identity.subject, uri) not in pairs

    return allowed


def test_revoke_drops_only_what_each_owner_may_no_longer_read() -> None:
    held = SessionSubscriptions()
    held.subscribed("s1", ALICE, "test://a")
    held.subscribed("s1", ALICE, "test://b")
    held.subscribed("s2", BOB, "test://a")
    lost = held.revoke(forbids(("alice", "test://a")))  # type: ignore[arg-type]
    assert lost == {"s1": ["test://a"]}
    assert held.uris("s1") == {"test://b"}
    assert held.uris("s2") == {"test://a"}
    assert held.revoke(forbids(("alice", "test://a"))) == {}  # type: ignore[arg-type]


def test_unsubscribed_and_forgotten_sessions_lose_nothing_later() -> None:
    held = SessionSubscriptions()
    held.subscribed("s1", ALICE, "test://a")
    held.set_level("s1", ALICE, "error")
    held.unsubscribed("s1", "test://a")
    held.subscribed("s2", BOB, "test://a")
    held.forget("s2")
    assert held.level("s1") == "error"
    assert held.revoke(lambda identity, uri: False) == {}
    assert held.uris("s2") == set()
    assert held.level("s2") is None


def test_revoked_uris_are_sorted_and_the_notice_names_the_uri() -> None:
    assert revoked_uris({"b", "a", "c"}, ALICE, lambda identity, uri: uri == "c") == ["a", "b"]
    notice = subscription_ended_notice("test://a")
    assert notice["method"] == "notifications/message"
    assert notice["params"]["level"] == "warning"
    assert "subscription to test://a has ended" in notice["params"]["data"]


def test_a_listen_stream_ends_with_forbidden_naming_every_uri_it_lost() -> None:
    assert listen_ended_error("L1", ["test://a", "test://b"]) == {
        "jsonrpc": "2.0",
        "id": "L1",
        "error": {
            "code": -32003,
            "message": "Forbidden: the access policy no longer allows reading test://a, test://b",
        },
    }
