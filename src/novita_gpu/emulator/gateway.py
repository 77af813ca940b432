"""What Novita's gateway does before a request reaches an endpoint: counting, faults and auth.

It runs at the outermost ASGI layer so that a "drop" can abort the connection itself: under uvicorn
the `send` callable is bound to the request cycle, whose transport we abort (the client sees the
connection reset with no response). Under a server without that handle it hangs instead.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from novita_gpu.emulator.errors import envelope
from novita_gpu.emulator.faults import PathFailure
from novita_gpu.emulator.world import World

API_PREFIX = "/gpu-instance/openapi/v1"
# Novita's monitoring API sits beside the GPU instance API; its paths (`/metrics/...`) are named below
# this prefix in stats and faults, and no GPU instance path has that name.
METRICS_PREFIX = "/openapi/v1"
HANG_SECONDS = 3600.0


def api_path(scope: Scope) -> str | None:
    """The path below the API prefix, or None when the request is not for the Novita API."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    for prefix in (API_PREFIX, METRICS_PREFIX):
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix) :] or "/"
    return None


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" else ""
    return ""


def authorized(key: str, accepted: list[str]) -> bool:
    if not key:
        return False
    if not accepted:
        return True
    return any(hmac.compare_digest(key.encode(), ok.encode()) for ok in accepted)


async def _drop(send: Send) -> None:
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        await asyncio.sleep(HANG_SECONDS)
        return
    transport.abort()
    # Let the protocol see the connection as lost, so uvicorn does not try to answer a 500.
    for _ in range(3):
        await asyncio.sleep(0)


async def gate(world: World, scope: Scope, receive: Receive, send: Send) -> Send | None:
    """Handle the request here (fault or auth failure) and return None, or return the `send` to serve it
    with: the caller's own, or one that replaces a success by a scripted failure (`mode: after`)."""
    path = api_path(scope)
    if path is None or scope["type"] != "http":
        return send
    method: str = scope["method"]
    world.count_request(f"{method} {path}")
    faults = world.faults.sample(path)
    if faults.latency_seconds:
        await asyncio.sleep(faults.latency_seconds)
    if faults.kind == "drop":
        await _drop(send)
        return None
    response: Response | None = None
    if faults.kind == "rate_limit":
        retry_after = world.faults.config.retry_after_seconds
        response = envelope(
            429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded", {"Retry-After": str(math.ceil(retry_after))}
        )
    elif faults.kind == "server_error":
        response = envelope(500, "UNKNOWN", "unknown error")
    elif faults.kind == "unavailable":
        response = envelope(503, "SERVICE_UNAVAILABLE", "service unavailable")
    elif not authorized(_bearer(scope), world.config.api_keys):
        response = envelope(401, "UNAUTHORIZED", "invalid or missing API key")
    elif (failure := world.faults.failure_for(method, path)) is not None:
        if failure.mode == "after":
            return _fail_after_success(world, failure, scope, send)
        if world.faults.consume(failure):
            response = _failure_response(world, failure)
    if response is None:
        return send
    await response(scope, receive, send)
    return None


def _failure_response(world: World, failure: PathFailure) -> Response:
    headers = {}
    if failure.status == 429:
        headers["Retry-After"] = str(math.ceil(world.faults.config.retry_after_seconds))
    return envelope(failure.status, failure.answer_reason, failure.answer_message, headers)


def _fail_after_success(world: World, failure: PathFailure, scope: Scope, send: Send) -> Send:
    """A `send` that lets the endpoint act, then answers `failure` instead of its success (an error the
    endpoint answered itself goes through, and leaves the failure for a later request)."""
    replaced = False

    async def send_instead(message: Message) -> None:
        nonlocal replaced
        if message["type"] == "http.response.start":
            if 200 <= message["status"] < 300 and world.faults.consume(failure):
                replaced = True
                await _failure_response(world, failure)(scope, _nothing_to_receive, send)
                return
        elif message["type"] == "http.response.body" and replaced:
            return
        await send(message)

    return send_instead


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}
