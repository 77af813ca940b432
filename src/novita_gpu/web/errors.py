"""One error envelope for every failure: {"error": {code, message, requestId, details?}}.

Validation problems are 400 (never FastAPI's 422), unknown routes 404, and unexpected exceptions a
500 without internals. Services raise domain errors (novita_gpu/kit/errors.py), which `DOMAIN_STATUS` maps
to their status here, in one table; ApiError is for what only HTTP knows (a malformed header or query
parameter), raised by routers and the rest of web/.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NoReturn

import asyncpg
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from novita_gpu.kit.errors import (
    DomainError,
    Forbidden,
    IdempotencyConflict,
    InstanceNotFound,
    InvalidInput,
    InvalidTransition,
    KeyNotFound,
    NameTaken,
    PoolExhausted,
    PoolNotFound,
    PoolSpecConflict,
    ShuttingDown,
    TeamNotFound,
    TooManyStreams,
    UpstreamUnavailable,
    VolumeInUse,
    VolumeNotFound,
)
from novita_gpu.web.responses import JSONResponse

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """An error with a status, a stable UPPER_SNAKE code and a sentence for humans."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Sequence[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details) if details else None
        self.headers = headers or {}


# The status of each domain error; a subclass takes its nearest listed ancestor's (BudgetExceeded: 403).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    Forbidden: 403,
    InstanceNotFound: 404,
    VolumeNotFound: 404,
    TeamNotFound: 404,
    KeyNotFound: 404,
    PoolNotFound: 404,
    PoolExhausted: 409,
    PoolSpecConflict: 409,
    VolumeInUse: 409,
    NameTaken: 409,
    InvalidTransition: 409,
    IdempotencyConflict: 409,
    TooManyStreams: 429,
    UpstreamUnavailable: 503,
    ShuttingDown: 503,
}


def domain_status(error: type[DomainError]) -> int | None:
    """The HTTP status of a domain error class; None for one missing from the table (a bug: answered 500)."""
    return next((DOMAIN_STATUS[cls] for cls in error.__mro__ if cls in DOMAIN_STATUS), None)


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    code: str
    message: str
    request_id: str
    details: list[ErrorDetail] | None = None


class ErrorAnswer(BaseModel):
    """The envelope of every error, as the OpenAPI document shows it."""

    error: ErrorBody


# For the OpenAPI document of every route: one envelope for all errors, and no 422 (bad input is 400).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorAnswer, "description": "400 (bad input, never 422), 401, 403, 404, 409, 413 or 429"},
    "5XX": {
        "model": ErrorAnswer,
        "description": "500, or 503 with Retry-After while Novita or the database is unavailable",
    },
}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or request.headers.get("x-request-id", ""))


def error_response(request: Request, error: ApiError) -> JSONResponse:
    """The envelope of `error`: every handler below answers what it caught as an ApiError."""
    body: dict[str, Any] = {"code": error.code, "message": error.message, "requestId": request_id_of(request)}
    if error.details:
        body["details"] = error.details
    return JSONResponse({"error": body}, status_code=error.status, headers=error.headers)


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_details(exc: RequestValidationError) -> tuple[str, str, list[dict[str, str]]]:
    details = []
    malformed = False
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            malformed = True
        details.append({"field": _field_path(err.get("loc", ())), "message": str(err.get("msg", "invalid"))})
    if malformed:
        return "INVALID_JSON", "The request body is not valid JSON.", details
    return "VALIDATION_ERROR", "The request is invalid; see details.", details


async def method_not_allowed() -> NoReturn:
    """The endpoint of a path and methods that must answer 405 although another route's template matches."""
    raise StarletteHTTPException(405)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _documented_paths(app: FastAPI) -> list[tuple[re.Pattern[str], int, frozenset[str]]]:
    """Each path of the app's OpenAPI document as (regex, number of parameters, methods), built once."""
    table: list[tuple[re.Pattern[str], int, frozenset[str]]] | None = getattr(app.state, "documented_paths", None)
    if table is None:
        table = []
        try:
            paths = app.openapi().get("paths", {})
        except Exception:  # a route the generator cannot describe: Starlette's Allow, not a 500
            log.exception("openapi_document_failed")
            paths = {}
        for template, item in paths.items():
            regex = re.compile("^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template)) + "$")
            methods = frozenset(method.upper() for method in item if method in _HTTP_METHODS)
            table.append((regex, template.count("{"), methods))
        app.state.documented_paths = table
    return table


def allowed_methods(request: Request, routed: str | None) -> str:
    """The Allow header of the request's path: the methods the OpenAPI document gives the path, taking a
    concrete path before templated ones as OpenAPI does (/api/instances/start, not /{instance_id}).

    Starlette's own 405 (`routed`) names only the first route matching the path, so OPTIONS
    /api/instances/start said `Allow: GET`, from /{instance_id}; it stays the answer for the
    few routes outside the document (/docs, /openapi.json). OPTIONS is answered on every path."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]  # what the routes match under a mount
    matches = [(params, methods) for regex, params, methods in _documented_paths(request.app) if regex.match(path)]
    if matches:
        fewest = min(params for params, _ in matches)
        allowed = set().union(*(methods for params, methods in matches if params == fewest))
    else:
        allowed = {method.strip() for method in (routed or "").split(",") if method.strip()}
    return ", ".join(sorted(allowed | {"OPTIONS"}))


# The database refusing work for a while, not a fault of the request or of our code: PostgreSQL out of
# connections or restarting, the pool's checkout timing out, SQLite's lock held past its busy timeout.
_STORE_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.PostgresConnectionError,
    ConnectionRefusedError,
)
STORE_RETRY_AFTER_SECONDS = 2


def unexpected(exc: Exception) -> tuple[int, str, str, dict[str, str]]:
    """Status, code, message and headers for an exception no handler claimed, logged: 503
    STORE_UNAVAILABLE with Retry-After when the database refuses work for a while, else 500."""
    if isinstance(exc, _STORE_UNAVAILABLE):
        log.warning("store_unavailable", error_type=type(exc).__name__, error=str(exc)[:200])
        message = "The database is not accepting work right now; retry shortly."
        return 503, "STORE_UNAVAILABLE", message, {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return 500, "INTERNAL_ERROR", "An unexpected error occurred.", {}


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    status, code, message, headers = unexpected(exc)
    return error_response(request, ApiError(status, code, message, headers=headers))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, exc: DomainError) -> JSONResponse:
        status = domain_status(type(exc))
        if status is None:
            return _unexpected_error(request, exc)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return error_response(request, ApiError(status, exc.code, exc.message, details=exc.details, headers=headers))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = _validation_details(exc)
        return error_response(request, ApiError(400, code, message, details=details))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "ERROR")
        message = "No such route." if exc.status_code == 404 else str(exc.detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # A path with routes but none for this method. OPTIONS asks which methods there are: answer it.
            allow = {"Allow": allowed_methods(request, (headers or {}).get("Allow"))}
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=allow)
            headers = {**(headers or {}), **allow}
        return error_response(request, ApiError(exc.status_code, code, message, headers=headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _unexpected_error(request, exc)
