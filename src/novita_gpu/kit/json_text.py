"""JSON as this service writes it (orjson: fast, datetimes and dataclasses handled), with text made servable.

Request bodies with text that is not Unicode are refused (web/json_body.py), but rows stored before that
check may hold some: a lone surrogate kept as a JSON escape. orjson cannot encode it, so one such row
answered 500 to every page that showed it. `servable` swaps each lone surrogate for U+FFFD;
the instance views and webhook payloads (instances/rendering.py), the event stream, webhook bodies and
every JSONResponse (web/responses.py) go through it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_OPTIONS = orjson.OPT_NON_STR_KEYS


def _servable_text(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def servable(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (and keys) replaced by U+FFFD; `value` itself when
    there is none. orjson tells (a trial encoding costs a tenth of a walk in Python)."""
    try:
        orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return _replaced(value)
    return value


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return _servable_text(value)
    if isinstance(value, dict):
        return {_servable_text(k) if isinstance(k, str) else k: _replaced(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(item) for item in value]
    return value


def dump_json(content: Any) -> bytes:
    """orjson's bytes of `content`; text it cannot encode is replaced (see `servable`) instead of failing."""
    try:
        return orjson.dumps(content, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return orjson.dumps(_replaced(content), option=_OPTIONS)
