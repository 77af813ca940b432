"""Typed errors for Novita's v1 API, mapped from its go-kratos envelope `{code, reason, message, metadata}`.

Mapping order: HTTP class first where the status alone decides (401, 403, 429, 5xx), then the `reason`,
then the `message` (Novita answers a wrong-state transition with 400 and only the message
"invalid state change"), then the status (404 -> NotFound, other 4xx -> BadRequest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from novita_gpu.kit import errors as domain


class NovitaError(Exception):
    """An error answered by (or on the way to) Novita. `status` is 0 when no HTTP response arrived."""

    def __init__(self, status: int, reason: str, message: str, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(status, reason, message)
        self.status = status
        self.reason = reason
        self.message = message
        self.metadata: dict[str, Any] = dict(metadata or {})

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"Novita HTTP {self.status}{reason}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, reason={self.reason!r}, message={self.message!r})"


class InsufficientResource(NovitaError):
    """No capacity for the product / GPU count (retry later or pick another product or cluster)."""


class NotFound(NovitaError):
    """The instance (or template) does not exist, or no longer does."""


class InvalidStateChange(NovitaError):
    """The action is not allowed in the instance's current status (e.g. start while running)."""


class RateLimited(NovitaError):
    """HTTP 429; `retry_after` is Novita's Retry-After in seconds when it sent one."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, reason, message, metadata)
        self.retry_after = retry_after


class Unauthorized(NovitaError):
    """Missing or invalid API key."""


class Forbidden(NovitaError):
    """The key is valid but not allowed to do this."""


class BadRequest(NovitaError):
    """Any other 4xx: validation errors, quotas, billing problems."""


class UpstreamUnavailable(NovitaError):
    """5xx, network failures, timeouts or an unreadable answer: Novita could not be used right now."""


class AmbiguousCreate(NovitaError):
    """Create failed after the request may have reached Novita: look the instance up by `name` first."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        name: str,
    ) -> None:
        super().__init__(status, reason, message, metadata)
        self.name = name

    @property
    def unanswered(self) -> bool:
        """No answer from Novita itself (a timeout, a dropped connection, a gateway that gave up): the
        create may still be in progress there and complete at any later time. Any other error was
        Novita's own answer, so whatever it did is done and shows in its list."""
        return self.status in (0, 502, 504)

    @classmethod
    def from_error(cls, error: NovitaError, *, name: str) -> AmbiguousCreate:
        return cls(error.status, error.reason, error.message, error.metadata, name=name)

    def __repr__(self) -> str:
        return (
            f"AmbiguousCreate(status={self.status!r}, reason={self.reason!r}, "
            f"message={self.message!r}, name={self.name!r})"
        )


_BY_REASON: dict[str, type[NovitaError]] = {
    "INSUFFICIENT_RESOURCE": InsufficientResource,
    "MIGRATE_INSUFFICIENT_RESOURCE": InsufficientResource,
    "RESOURCE_NOT_FOUND": NotFound,
    "TEMPLATE_NOT_FOUND": NotFound,
    "JOB_NOT_FOUND": NotFound,
    "UNAUTHORIZED": Unauthorized,
    "FORBIDDEN": Forbidden,
    "RATE_LIMIT_EXCEEDED": RateLimited,
    # Reasons that name a missing *dependency* of the request, not the addressed resource.
    "IMAGE_NOT_FOUND": BadRequest,
    "NETWORK_STORAGE_NOT_FOUND": BadRequest,
    "NETWORK_NOT_FOUND": BadRequest,
    "INSTANCE_LOCAL_STORAGE_NOT_FOUND": BadRequest,
    "VALIDATOR_PARAM": BadRequest,
}

_BY_MESSAGE: tuple[tuple[str, type[NovitaError]], ...] = (
    ("invalid state change", InvalidStateChange),
    ("insufficient_resource", InsufficientResource),
    ("insufficient resource", InsufficientResource),
    ("not found", NotFound),
)


def error_class(status: int, reason: str, message: str) -> type[NovitaError]:
    """The error class for an HTTP status and Novita's reason/message."""
    if status >= 500:
        return UpstreamUnavailable
    by_status: dict[int, type[NovitaError]] = {401: Unauthorized, 403: Forbidden, 429: RateLimited}
    if status in by_status:
        return by_status[status]
    if reason.upper() in _BY_REASON:
        return _BY_REASON[reason.upper()]
    lowered = message.lower()
    for fragment, cls in _BY_MESSAGE:
        if fragment in lowered:
            return cls
    return NotFound if status == 404 else BadRequest


def make_error(
    status: int,
    reason: str,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    retry_after: float | None = None,
) -> NovitaError:
    """Build the typed error for a non-2xx answer (or a 2xx whose envelope carries code >= 400)."""
    cls = error_class(status, reason, message)
    if cls is RateLimited:
        return RateLimited(status, reason, message, metadata, retry_after=retry_after)
    return cls(status, reason, message, metadata)


def describe_fault(error: NovitaError) -> str:
    """What went wrong on the way to Novita, in a few words a person can act on (no secret in them)."""
    if isinstance(error, RateLimited):
        return "it asks us to slow down (HTTP 429)"
    if error.status >= 500:
        return f"it answered HTTP {error.status}"
    if error.reason == "TIMEOUT":
        return "no answer in time"
    if error.status == 0:
        text = error.message
        # aiohttp: "Cannot connect to host api.novita.ai:443 ssl:default [Connection refused]"
        cause = text[text.rfind("[") + 1 : text.rfind("]")] if text.endswith("]") and "[" in text else text
        return cause.strip() or "the connection failed"
    return f"it answered HTTP {error.status} {error.reason}".rstrip()


def unreachable_message(host: str, error: NovitaError, purpose: str = "") -> str:
    """`Novita (api.novita.ai) could not be reached to look up the catalog: Connection refused.`"""
    doing = f" to {purpose}" if purpose else ""
    if isinstance(error, Unauthorized | Forbidden):
        return f"Novita ({host}) refused the API key (HTTP {error.status}): check NOVITA_API_KEY."
    return f"Novita ({host}) could not be reached{doing}: {describe_fault(error)}."


def unavailable_for(host: str, error: NovitaError, purpose: str) -> domain.UpstreamUnavailable:
    """The answer to a request that needed Novita now and could not have it: 503 naming the host and what
    was being done, Retry-After Novita's own when it rate-limited, else 5 s."""
    retry_after = error.retry_after if isinstance(error, RateLimited) and error.retry_after else 5.0
    return domain.UpstreamUnavailable(
        unreachable_message(host, error, purpose) + " Try again shortly.", retry_after=retry_after
    )
