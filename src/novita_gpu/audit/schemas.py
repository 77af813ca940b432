"""The audit trail's answers (GET /api/audit), as the OpenAPI document shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from novita_gpu.kit.schemas import Answer


class AuditEventAnswer(Answer):
    id: int
    at: datetime
    team: str | None = Field(description="The team acted in; null for what concerns no team (retention).")
    actor: str = Field(description="A key's id (ak_..., key-...), or system:<worker> for an automatic action.")
    actor_name: str | None = Field(description="The key's name; null for a worker.")
    action: str = Field(description="What was done, e.g. instance.stop (docs/audit.md lists them).")
    target: str | None = Field(description="The instance, volume, key or team acted on, when there is one.")
    outcome: str = Field(description="ok, or the error's code (FORBIDDEN, QUOTA_EXCEEDED, ...).")
    request_id: str | None = Field(description="The request's X-Request-Id; null for a worker's action.")
    details: dict[str, Any] | None = Field(description="The HTTP status of a request; a worker's reason and figures.")


class AuditPageAnswer(Answer):
    events: list[AuditEventAnswer]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")
