"""Novita's answers map to typed errors: reason first, message second, status last."""

from __future__ import annotations

import pytest

from novita_gpu.novita import (
    AmbiguousCreate,
    BadRequest,
    Forbidden,
    InsufficientResource,
    InvalidStateChange,
    NotFound,
    NovitaError,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)
from novita_gpu.novita.errors import make_error


@pytest.mark.parametrize(
    ("status", "reason", "message", "expected"),
    [
        (400, "INSUFFICIENT_RESOURCE", "no capacity", InsufficientResource),
        (400, "", "create failed: INSUFFICIENT_RESOURCE", InsufficientResource),
        (400, "RESOURCE_NOT_FOUND", "container not found", NotFound),
        (404, "", "", NotFound),
        (400, "", "instance not found", NotFound),
        (400, "", "invalid state change", InvalidStateChange),
        (400, "CONFLICT", "Invalid State Change", InvalidStateChange),
        (429, "RATE_LIMIT_EXCEEDED", "slow down", RateLimited),
        (401, "UNAUTHORIZED", "bad key", Unauthorized),
        (401, "", "", Unauthorized),
        (403, "FORBIDDEN", "no permission", Forbidden),
        (400, "VALIDATOR_PARAM", "gpuNum must be in [1,8]", BadRequest),
        (400, "IMAGE_NOT_FOUND", "image not found", BadRequest),
        (400, "BALANCE_NOT_ENOUGH", "top up", BadRequest),
        (500, "UNKNOWN", "boom", UpstreamUnavailable),
        (503, "", "", UpstreamUnavailable),
    ],
)
def test_mapping(status: int, reason: str, message: str, expected: type[NovitaError]) -> None:
    error = make_error(status, reason, message, {"k": "v"})
    assert type(error) is expected
    assert (error.status, error.reason, error.message, error.metadata) == (
        status,
        reason,
        message,
        {"k": "v"},
    )


def test_rate_limited_carries_retry_after() -> None:
    error = make_error(429, "RATE_LIMIT_EXCEEDED", "slow down", retry_after=3.0)
    assert isinstance(error, RateLimited) and error.retry_after == 3.0


def test_ambiguous_create_keeps_name_and_cause_fields() -> None:
    error = AmbiguousCreate.from_error(UpstreamUnavailable(0, "TIMEOUT", "ReadTimeout"), name="ng-1")
    assert (error.name, error.status, error.reason) == ("ng-1", 0, "TIMEOUT")
    assert "ng-1" in repr(error) and "TIMEOUT" in str(error)
