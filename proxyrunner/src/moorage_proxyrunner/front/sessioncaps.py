"""Rules every backend applies to legacy sessions: who may use one, and how many may be open.

With authentication on, a session belongs to the subject that opened it and serves no other
(`is_session_owner`). Sessions are capped in total and per authenticated subject
(`check_session_caps`); unauthenticated callers share the total only. The stdio bridge applies
both to the sessions it keeps, the HTTP reverse proxy to the sessions it relays.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from moorage_proxyrunner.protocol.pipeline import Identity

log = structlog.get_logger(__name__)


def is_session_owner(
    owner: str | None, identity: Identity, *, session_id: str, transport: str
) -> bool:
    """Whether the caller's subject is the one that opened the session (`owner`; None for both
    without authentication).

    A caller who is not is to be answered exactly like one presenting an unknown session id:
    the id alone must not let a different subject in. The mismatch is logged with the id's
    prefix and both subjects, never the credential.
    """
    if owner == identity.subject:
        return True
    log.info(
        "session_subject_mismatch",
        session=session_id[:8],
        transport=transport,
        subject=identity.subject,
        owner=owner,
    )
    return False


class SessionLimit(Exception):
    """One more session would pass a cap: the subject's own (`per_subject`) or the total."""

    def __init__(self, *, per_subject: bool, limit: int) -> None:
        super().__init__(f"session limit {limit} reached")
        self.per_subject = per_subject
        self.limit = limit


def check_session_caps(
    counts: Mapping[str | None, int], subject: str | None, *, total: int, per_subject: int
) -> None:
    """Raise `SessionLimit` if `subject` may not open one more session, given the sessions
    open per subject (`counts`; None: unauthenticated)."""
    if subject is not None and counts.get(subject, 0) >= per_subject:
        raise SessionLimit(per_subject=True, limit=per_subject)
    if sum(counts.values()) >= total:
        raise SessionLimit(per_subject=False, limit=total)
