"""JSON responses rendered with orjson, text made servable on the way (json_text.py)."""

from __future__ import annotations

from typing import Any

from starlette import responses

from novita_gpu.kit.json_text import dump_json


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse (so the OpenAPI document shows each route's answer model), orjson inside."""

    def render(self, content: Any) -> bytes:
        return dump_json(content)
