"""Request bodies parsed strictly, once, before FastAPI validates them.

Every string of a body may end up in the store and be served back (names, labels, env, URLs, paths),
so a body is refused with 400 before anything is written when it holds what the API cannot store or
serve: a lone surrogate (`"\\udc00"` is valid JSON but not Unicode text: it made the row unservable),
a NUL character (PostgreSQL text cannot hold one, nor can a process environment), a number
beyond the float range (`1e999` parsed as infinity), NaN/Infinity (not JSON), or a key given twice
(the last one silently won). The check runs on the parsed value (one walk over a body of at most
MAX_BODY_BYTES), and FastAPI then reads the parsed value instead of parsing the body again.
"""

from __future__ import annotations

import email.message
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from novita_gpu.web.errors import ApiError


class _DuplicateKey(dict[str, Any]):
    """An object that named `key` more than once (reported with its path by the walk)."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _DuplicateKey(pairs, key)
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs means a repeated key")


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored and served back, or None."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (an unpaired \\uD800-\\uDFFF escape), which is not Unicode text"
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    return None


def _shown(key: str) -> str:
    """A key as it can be shown in an error's field path (escaped when it cannot be served)."""
    return key.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")


def _problem(value: Any) -> dict[str, str] | None:
    """The first part of a parsed body that the API cannot store or serve, as an error detail."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return {"field": path or "body", "message": problem}
        elif isinstance(item, dict):
            if isinstance(item, _DuplicateKey):
                return {"field": _join(path, _shown(item.key)), "message": "this key is given more than once"}
            for key, child in item.items():
                problem = text_problem(key)
                if problem:
                    return {"field": _join(path, _shown(key)), "message": f"the key {problem}"}
                stack.append((_join(path, key), child))
        elif isinstance(item, list):
            stack.extend((_join(path, str(index)), child) for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return {"field": path or "body", "message": "the number is beyond the range of a 64-bit float"}
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_body(body: bytes) -> Any:
    """The JSON value of `body`, or ApiError 400 (INVALID_JSON, or VALIDATION_ERROR with the field)."""
    try:
        value = json.loads(body, object_pairs_hook=_object, parse_constant=_not_json)
    except RecursionError:
        raise _invalid_json("it is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, undecodable bytes, integers beyond 4300 digits
        raise _invalid_json(str(exc)) from None
    problem = _problem(value)
    if problem is not None:
        raise ApiError(400, "VALIDATION_ERROR", "The request is invalid; see details.", details=[problem])
    return value


def _invalid_json(reason: str) -> ApiError:
    return ApiError(
        400,
        "INVALID_JSON",
        "The request body is not valid JSON.",
        details=[{"field": "body", "message": reason[:200]}],
    )


def _not_declared_json(content_type: str | None) -> ApiError:
    """A body without a JSON content type is not read (FastAPI's strict_content_type: a cross-site form
    post cannot act), and saying so beats "Input should be a valid dictionary", which was all it got."""
    given = f"this request's is {content_type!r}" if content_type else "this request has none"
    message = f"A request body must be JSON sent with Content-Type: application/json; {given}."
    return ApiError(400, "VALIDATION_ERROR", message, details=[{"field": "Content-Type", "message": message}])


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI will read the body as JSON: its own rule, application/json or application/*+json
    (and no content type at all is not JSON: FastAPI's strict_content_type, the default)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class StrictJSONRoute(APIRoute):
    """A route whose JSON body goes through `parse_body` first (routes without a body are untouched)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict_handler(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            body = await request.body()
            if _is_json(content_type):
                if body:
                    request._json = parse_body(body)  # what FastAPI's `await request.json()` returns
            elif body:
                raise _not_declared_json(content_type)
            return await handler(request)

        return strict_handler
