"""The base of every answer model shown in the OpenAPI document (each package's `schemas.py`, e.g.
instances/schemas.py); below the web layer, so services may use their package's models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# A string holding no NUL: no request body may (web/json_body.py); PostgreSQL refuses it in text.
NO_NUL = r"^[^\x00]*$"


class Body(BaseModel):
    """The base of every request body: an unknown field is 400, and fields take their camelCase aliases."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Answer(BaseModel):
    """camelCase keys, as the API sends them. extra="forbid": validating a real answer (the tests do)
    fails on any key the model does not show, so the document cannot drift from the API."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def whole(value: Any) -> Any:
    """A JSON number with no fraction is an integer (JSON Schema's rule: 8.0 is an integer)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
