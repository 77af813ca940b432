"""Novita's error envelope `{code, reason, message, metadata}` (go-kratos); `code` is the HTTP status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class EmulatedError(Exception):
    """A failure answered in Novita's envelope. `reason` is one of the reasons of Novita's error table."""

    def __init__(self, status: int, reason: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return envelope(self.status, self.reason, self.message, self.headers)


def envelope(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "reason": reason, "message": message, "metadata": {}}
    return JSONResponse(body, status_code=status, headers=headers)


def invalid_param(message: str) -> EmulatedError:
    return EmulatedError(400, "VALIDATOR_PARAM", message)


def invalid_state_change() -> EmulatedError:
    return EmulatedError(400, "CONFLICT", "invalid state change")
