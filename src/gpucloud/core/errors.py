"""Errors callers handle are types; the API maps each to one HTTP status in one place."""

from __future__ import annotations


class GpucloudError(Exception):
    """Base of every error a user may see. ``str(err)`` says what was wrong and what to do."""

    code = "error"


class InvalidRequest(GpucloudError):
    """The request is malformed or a value is out of range."""

    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(GpucloudError):
    code = "not_found"

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id!r} not found")
        self.kind = kind
        self.object_id = object_id


class NeverFits(GpucloudError):
    """No node of the fleet could ever hold this request, even empty."""

    code = "never_fits"


class ExceedsQuota(NeverFits):
    """The request is larger than a quota or budget of its tenant allows, even unused."""

    code = "exceeds_quota"


class Conflict(GpucloudError):
    """The request clashes with the current state (e.g. a name already taken)."""

    code = "conflict"


class IdempotencyMismatch(Conflict):
    code = "idempotency_key_reused"


class IllegalTransition(Conflict):
    code = "illegal_transition"

    def __init__(self, object_id: str, current: str, target: str) -> None:
        super().__init__(f"{object_id} cannot go from {current} to {target}")
        self.object_id = object_id
        self.current = current
        self.target = target


class InsufficientFunds(GpucloudError):
    """The wallet cannot pay for what was asked; the message says how much is missing."""

    code = "insufficient_funds"


class Unauthenticated(GpucloudError):
    code = "unauthenticated"


class Forbidden(GpucloudError):
    code = "forbidden"


class EngineError(GpucloudError):
    """The execution engine refused or failed an operation."""

    code = "engine_error"


class EngineUnavailable(GpucloudError):
    """The engine did not answer (it may be restarting): try again later. Not an EngineError,
    which is a refusal: a launch that meets this is retried (launches are idempotent), never
    failed."""

    code = "engine_unavailable"


class RateLimited(GpucloudError):
    """Too many failed token checks from one address: answered 429 with Retry-After."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
