"""Turn an HTTP answer into the call's result, or into an `ApiError` (never a raw httpx error)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from novita_gpu_client.calls import Call, Json
from novita_gpu_client.errors import ApiError, ServiceConnectionError
from novita_gpu_client.retry_timing import parse_retry_after


def result(call: Call, response: httpx.Response) -> Json:
    """The answer's JSON object; an `ApiError` for an error status or an answer that is not a JSON object."""
    if not (response.is_success or response.status_code in call.accept):
        raise api_error(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.is_success and isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise api_error(response)  # an accepted status (503 for /health) whose body is an error, not the answer
    if not isinstance(body, dict):
        raise ApiError(
            response.status_code,
            "INVALID_RESPONSE",
            "The service answered with something other than a JSON object.",
            response.headers.get("x-request-id"),
        )
    return body


def named(page: Json, name: str) -> Json:
    """The instance called `name` from a list page filtered by that name (newest first, so the live one)."""
    for instance in page.get("instances", []):
        if instance.get("name") == name:
            return dict(instance)
    raise ApiError(404, "INSTANCE_NOT_FOUND", f"No instance named {name!r}.")


def api_error(response: httpx.Response) -> ApiError:
    """The envelope `{"error": {code, message, requestId, details?}}`; something sensible for any other body
    (a proxy's HTML page, an empty 502)."""
    request_id = response.headers.get("x-request-id")
    retry_after = retry_after_seconds(response)
    try:
        error = response.json()["error"]
        return ApiError(
            response.status_code,
            str(error["code"]),
            str(error["message"]),
            error.get("requestId") or request_id,
            error.get("details"),
            retry_after,
        )
    except (ValueError, LookupError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, f"HTTP_{response.status_code}", text, request_id, None, retry_after)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the service sends seconds; the rules are retry_timing.py's)."""
    return parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))


def connection_error(base_url: str, exc: httpx.TransportError) -> ServiceConnectionError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ServiceConnectionError(f"the service at {base_url} did not answer in time ({detail})")
    return ServiceConnectionError(f"cannot reach the service at {base_url} ({detail})")
