"""What went wrong, in the domain's words. Services and workers raise these; `web/errors.py` alone turns
each class into its HTTP status and the error envelope, so nothing here knows HTTP.

Each class is named for what happened and carries the API's stable UPPER_SNAKE `code`, a sentence for
humans, optional `details` (one per field at fault) and optional `retry_after` (whole seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class DomainError(Exception):
    """The base: raise a subclass (web/errors.py gives each one its status)."""

    default_code: ClassVar[str] = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[dict[str, str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = list(details) if details else None
        # Whole seconds, at least one (what a Retry-After header can say).
        self.retry_after = None if retry_after is None else max(1, round(retry_after))


class InvalidInput(DomainError):
    """The request names something that cannot be: `code` says what, `field` where."""

    default_code = "VALIDATION_ERROR"

    def __init__(self, code: str, message: str, *, field: str, field_message: str | None = None) -> None:
        super().__init__(message, code=code, details=[{"field": field, "message": field_message or message}])


class InstanceNotFound(DomainError):
    """No instance of this id or name among the caller's (another key's instance is not found either)."""

    default_code = "INSTANCE_NOT_FOUND"

    def __init__(self, ref: str) -> None:
        super().__init__(f"No instance {ref!r}.")
        self.ref = ref


class VolumeNotFound(DomainError):
    """No volume of this id or name among the caller's (another key's volume is not found either)."""

    default_code = "VOLUME_NOT_FOUND"

    def __init__(self, ref: str) -> None:
        super().__init__(f"No volume {ref!r}.")


class Forbidden(DomainError):
    """The caller's key may not do this."""

    default_code = "FORBIDDEN"


class BudgetLocked(Forbidden):
    def __init__(self) -> None:
        super().__init__("An administrator set this budget; only an admin key may change or remove it.")


class BudgetExceeded(Forbidden):
    """The key's monthly budget is spent: creates (and, under stopAll, starts) are refused."""

    default_code = "BUDGET_EXCEEDED"


class NameTaken(DomainError):
    default_code = "NAME_TAKEN"

    def __init__(self, name: str, taken_by: str | None) -> None:
        super().__init__(f"An instance named {name!r} already exists ({taken_by}); names are unique.")


class VolumeNameTaken(NameTaken):
    def __init__(self, name: str) -> None:
        DomainError.__init__(self, f"A volume named {name!r} already exists; names are unique among your volumes.")


class VolumeInUse(DomainError):
    """Instances that are not terminated mount the volume (`details` names each one)."""

    default_code = "VOLUME_IN_USE"

    def __init__(self, name: str, instances: list[tuple[str, str]]) -> None:
        named = ", ".join(f"{instance_name} ({instance_id})" for instance_id, instance_name in instances)
        super().__init__(
            f"Volume {name!r} is mounted by {named}; delete (terminate) those instances first.",
            details=[{"field": "instanceId", "message": instance_id} for instance_id, _ in instances],
        )


class InvalidTransition(DomainError):
    """The instance's status does not allow the action (e.g. starting a terminated instance)."""

    default_code = "INVALID_STATE"


class IdempotencyConflict(DomainError):
    default_code = "IDEMPOTENCY_CONFLICT"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used with a different request body.")


class TooManyStreams(DomainError):
    """The key already has its share of event streams open on this process."""

    default_code = "TOO_MANY_STREAMS"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


class UpstreamUnavailable(DomainError):
    """Novita could not be reached for something the request needs now; retry after `retry_after`."""

    default_code = "UPSTREAM_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


class ShuttingDown(DomainError):
    default_code = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("The server is shutting down; reconnect.", retry_after=1)


class TeamNotFound(DomainError):
    """No team of this id or name that the caller may see (another team is not found either)."""

    default_code = "TEAM_NOT_FOUND"

    def __init__(self, ref: str) -> None:
        super().__init__(f"No team {ref!r}.")


class KeyNotFound(DomainError):
    """No API key of this id that the caller may manage."""

    default_code = "KEY_NOT_FOUND"

    def __init__(self, ref: str) -> None:
        super().__init__(f"No API key {ref!r}.")


class PoolNotFound(DomainError):
    """No pool of this name among the caller's team's (another team's pool is not found either)."""

    default_code = "POOL_NOT_FOUND"

    def __init__(self, ref: str) -> None:
        super().__init__(f"No pool {ref!r}.")


class PoolNameTaken(NameTaken):
    def __init__(self, name: str) -> None:
        DomainError.__init__(self, f"A pool named {name!r} already exists; names are unique among your pools.")


class PoolExhausted(DomainError):
    """Every member the pool may have is claimed (or being replaced): a claim cannot be served."""

    default_code = "POOL_EXHAUSTED"


class PoolSpecConflict(DomainError):
    """A create naming a pool asks for what the pool's spec says otherwise (409: the pool is as it is)."""

    def __init__(self, code: str, message: str, *, field: str) -> None:
        super().__init__(message, code=code, details=[{"field": field, "message": message}])
