"""JSON responses rendered with orjson (fast; datetimes and dataclasses handled)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette import responses


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse (so the OpenAPI document shows each route's answer model), orjson inside."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
