"""Novita's error envelope `{code, reason, message, metadata}` (go-kratos); `code` is the HTTP status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class EmulatedError(Exception):
    """A failure answered in Novita's envelope. `reason` is one of the reasons of Novita's error table.

    `metadata` is go-kratos's string map: Novita's console fills the `${0}` of its error texts from it
    (e.g. `NETWORK_STORAGE_TOO_LARGE`: "Maximum storage(${0} GB) capacity exceeded"), so the emulator
    puts such a value under the key "0" [INF: the key]."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}
        self.metadata = metadata or {}

    def response(self) -> JSONResponse:
        return envelope(self.status, self.reason, self.message, self.headers, self.metadata)


def envelope(
    status: int,
    reason: str,
    message: str,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "reason": reason, "message": message, "metadata": dict(metadata or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def invalid_param(message: str) -> EmulatedError:
    return EmulatedError(400, "VALIDATOR_PARAM", message)


def invalid_state_change() -> EmulatedError:
    return EmulatedError(400, "CONFLICT", "invalid state change")


def storage_too_large(message: str, max_gb: int) -> EmulatedError:
    """`NETWORK_STORAGE_TOO_LARGE`, whose console text is "Maximum storage(${0} GB) capacity exceeded":
    `max_gb` is that maximum (the most this request could have had)."""
    return EmulatedError(400, "NETWORK_STORAGE_TOO_LARGE", message, metadata={"0": str(max_gb)})
