"""Reading Novita's decoded answers into models. An answer of the wrong shape is `UpstreamUnavailable`
(`INVALID_RESPONSE`), described by field locations only: payloads may hold secrets (env values, passwords).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from novita_gpu.novita.errors import UpstreamUnavailable
from novita_gpu.novita.models import NovitaInstance

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise invalid_response(f"expected a JSON object for {model.__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_response(describe_validation(model, exc)) from None


def parse_list(model: type[M], body: Any, key: str) -> list[M]:
    if not isinstance(body, dict):
        raise invalid_response(f"expected a JSON object with {key!r}")
    items = body.get(key) or []
    if not isinstance(items, list):
        raise invalid_response(f"expected a list in {key!r}")
    try:
        return [model.model_validate(item) for item in items]
    except ValidationError as exc:
        raise invalid_response(describe_validation(model, exc)) from None


def invalid_response(message: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(200, "INVALID_RESPONSE", message)


def describe_validation(model: type[BaseModel], exc: ValidationError) -> str:
    """Field locations and error types only: input values may hold secrets (env values, passwords)."""
    problems = ", ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['type']}" for error in exc.errors()[:5]
    )
    return f"unexpected {model.__name__} payload ({problems})"


class InstanceMemo:
    """Instances from list pages, validated once per distinct payload.

    The reconciler lists every instance on each tick and nearly all come back byte for byte as on the
    last one; validating them again was the largest part of a tick's CPU. An item is reused only when
    its serialized form is identical (the models are frozen, so sharing them is safe).
    """

    MAX_ENTRIES = 20_000  # far above any account's instance count; past it, start afresh

    def __init__(self) -> None:
        self._seen: dict[str, tuple[bytes, NovitaInstance]] = {}

    def parse(self, item: Any) -> NovitaInstance:
        try:
            key = orjson.dumps(item) if isinstance(item, dict) else None
        except orjson.JSONEncodeError:  # an integer beyond 64 bits (read by the json fallback): not memoised
            key = None
        if key is None:
            return NovitaInstance.model_validate(item)  # a non-object raises the usual validation error
        instance_id = str(item.get("id"))
        known = self._seen.get(instance_id)
        if known is not None and known[0] == key:
            return known[1]
        instance = NovitaInstance.model_validate(item)
        if len(self._seen) >= self.MAX_ENTRIES:
            self._seen.clear()
        self._seen[instance_id] = (key, instance)
        return instance
