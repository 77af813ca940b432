"""The base of every answer model shown in the OpenAPI document (each package's `schemas.py`, e.g.
instances/schemas.py); below the web layer, so services may use their package's models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Answer(BaseModel):
    """camelCase keys, as the API sends them. extra="forbid": validating a real answer (the tests do)
    fails on any key the model does not show, so the document cannot drift from the API."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
