"""What the SDK raises: one type per way a call can fail, all under `NovitaGpuError`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class NovitaGpuError(Exception):
    """Base class of every SDK error."""


class ApiError(NovitaGpuError):
    """The service answered with an error: its HTTP status and the envelope's code, message and request id."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or []
        self.retry_after = retry_after

    @property
    def explanation(self) -> str:
        """The message with the details' reasons (`name: String should match ...`): the server's message
        alone is often "The request is invalid; see details.", which tells a person nothing."""
        reasons = [f"{d.get('field') or 'body'}: {d.get('message')}" for d in self.details if d.get("message")]
        if not reasons:
            return self.message
        if self.message.rstrip(".").endswith("see details") or all(
            d.get("message") == self.message for d in self.details
        ):
            return "; ".join(reasons)
        return f"{self.message} ({'; '.join(reasons)})"

    def __str__(self) -> str:
        request = f", request {self.request_id}" if self.request_id else ""
        return f"{self.code}: {self.explanation} (HTTP {self.status}{request})"

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, code={self.code!r}, request_id={self.request_id!r})"


class ServiceConnectionError(NovitaGpuError, ConnectionError):
    """The service could not be reached, or the connection broke before an answer arrived."""


class InstanceFailed(NovitaGpuError):
    """A wait ended because the instance reached `failed` or `terminated` instead of the wanted status (or,
    as `InstanceStopped`, sits in `stopped`, which it leaves only when it is started or deleted)."""

    def __init__(self, instance: dict[str, Any], wanted: Iterable[str]) -> None:
        self.instance = instance
        self.wanted = frozenset(wanted)
        status, reason = instance.get("status"), instance.get("statusReason")
        because = f" ({reason})" if reason else ""
        super().__init__(f"instance {_named(instance)} is {status}{because}, not {_either(self.wanted)}{self._end()}")

    def _end(self) -> str:
        if self.instance.get("status") == "terminated":
            return ", and never will be: a terminated instance does not change again"
        return _why(self.instance)


class InstanceStopped(InstanceFailed):
    """A wait ended because the instance is `stopped`, which it leaves only when someone starts (or deletes)
    it: waiting for `ready` (or any status but `stopped`) would only sit out the timeout."""

    @property
    def needs(self) -> str:
        """What would move it on: "started", or "deleted" when only terminating/terminated are wanted."""
        return "deleted" if self.wanted <= {"terminating", "terminated"} else "started"

    def _end(self) -> str:
        return f", and will not be until it is {self.needs}{_why(self.instance)}"


class WaitTimeout(NovitaGpuError, TimeoutError):
    """A wait's deadline passed; `instance` is the last view seen."""

    def __init__(self, instance: dict[str, Any], wanted: Iterable[str], timeout: float) -> None:
        self.instance = instance
        super().__init__(_still(f"instance {_named(instance)}", instance, wanted, timeout))


class VolumeFailed(NovitaGpuError):
    """A wait for a volume ended in a status it never leaves for the wanted one: `failed` (Novita refused
    the create: its `statusMessage` says why), or `deleting`/`deleted` (someone deleted it meanwhile)."""

    def __init__(self, volume: dict[str, Any], wanted: Iterable[str]) -> None:
        self.volume = volume
        self.wanted = frozenset(wanted)
        super().__init__(
            f"volume {_volume(volume)} is {volume.get('status')}, not {_either(self.wanted)}{_why(volume)}"
        )


class VolumeWaitTimeout(NovitaGpuError, TimeoutError):
    """A wait for a volume's status ran out of time; `volume` is the last view seen."""

    def __init__(self, volume: dict[str, Any], wanted: Iterable[str], timeout: float) -> None:
        self.volume = volume
        super().__init__(_still(f"volume {_volume(volume)}", volume, wanted, timeout))


def _volume(volume: dict[str, Any]) -> str:
    name = volume.get("name")
    return f"{volume.get('volumeId')} ({name})" if name else str(volume.get("volumeId"))


def _either(statuses: Iterable[str]) -> str:
    return " or ".join(sorted(statuses))


def _named(instance: dict[str, Any]) -> str:
    name = instance.get("name")
    return f"{instance.get('instanceId')} ({name})" if name else str(instance.get("instanceId"))


def _still(what: str, view: dict[str, Any], wanted: Iterable[str], timeout: float) -> str:
    """A wait's timeout, said of an instance or a volume (`what`: its kind and name) and its last view."""
    return f"{what} is still {view.get('status')} after {timeout:g} s (waiting for {_either(wanted)}){_why(view)}"


def _why(instance: dict[str, Any]) -> str:
    """The instance's (or volume's) own account of where it is (`statusMessage`, e.g. no capacity in any
    region): the status alone does not say what to do about it."""
    message = instance.get("statusMessage")
    return f": {message}" if message else ""
