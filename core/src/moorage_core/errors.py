"""Our error hierarchy for Kubernetes API failures.

The kube client wrapper (`moorage_core.kube`) is the one place that turns HTTP failures of the
apiserver into these types; nothing else looks at raw status codes. Each error keeps the
apiserver's `Status` body so callers can read `reason`, `details` and the human message.
"""

from __future__ import annotations

from typing import Any


class KubeError(Exception):
    """A request to the Kubernetes API failed.

    `status` is the HTTP status code (0 when the request never got an answer), `reason` the
    `Status.reason` the apiserver gave (e.g. `AlreadyExists`, `Invalid`), `body` the decoded
    `Status` object when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.body = body or {}

    def __str__(self) -> str:
        if self.status:
            return f"{self.status} {self.reason}: {self.message}"
        return self.message


class BadRequest(KubeError):
    """400: the request itself was malformed."""


class Unauthorized(KubeError):
    """401: the credentials were missing or rejected."""


class Forbidden(KubeError):
    """403: RBAC or an admission webhook said no."""


class NotFound(KubeError):
    """404: the object (or its namespace, or the resource type) does not exist."""


class Conflict(KubeError):
    """409: a resourceVersion precondition failed, an object already exists, or an apply conflict."""


class Gone(KubeError):
    """410: the resourceVersion asked for is too old; list again."""


class Invalid(KubeError):
    """422: the apiserver's validation (schema, CEL, immutability) rejected the object."""

    @property
    def causes(self) -> list[dict[str, Any]]:
        """The field-level causes from `Status.details.causes`."""
        details = self.body.get("details") or {}
        causes = details.get("causes") or []
        return [c for c in causes if isinstance(c, dict)]


class TooManyRequests(KubeError):
    """429: priority and fairness or a rate limit pushed back; retry later."""


class ServerError(KubeError):
    """5xx, or no answer at all (connection refused, timeout)."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_for_status(status: int, body: dict[str, Any] | None, *, fallback: str) -> KubeError:
    """Build the right `KubeError` subclass for an HTTP status and a decoded `Status` body."""
    body = body or {}
    message = str(body.get("message") or fallback)
    reason = str(body.get("reason") or "")
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 or status == 0 else KubeError
    return cls(message, status=status, reason=reason, body=body)
