"""Request bodies and answers of /api/teams, /api/keys and /api/me."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictFloat, StrictInt, StrictStr

from novita_gpu.kit.schemas import NO_NUL, Answer, Body, whole
from novita_gpu.teams.keys import Role

TeamName = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="'default' and names starting with 'key-' are the service's own (409 NAME_TAKEN).",
    ),
]
KeyName = Annotated[StrictStr, Field(min_length=1, max_length=63, pattern=NO_NUL)]


class TeamIn(Body):
    name: TeamName


class QuotasIn(Body):
    """A team's limits; a field left out keeps its value, null removes the limit."""

    max_gpus: Annotated[
        StrictInt | None,
        Field(alias="maxGpus", ge=0, le=100_000, description="GPUs held at once."),
        BeforeValidator(whole),
    ] = None
    max_usd_per_hour: Annotated[
        StrictFloat | StrictInt | None,
        Field(alias="maxUsdPerHour", ge=0, le=1_000_000, description="Hourly prices of held instances, summed."),
    ] = None
    monthly_budget_usd: Annotated[
        StrictFloat | StrictInt | None,
        Field(alias="monthlyBudgetUsd", ge=0, le=10_000_000, description="The team's budget (as /api/budget)."),
    ] = None


class TeamUpdateIn(Body):
    name: TeamName | None = None
    quotas: QuotasIn | None = None


class KeyIn(Body):
    name: KeyName
    team: Annotated[
        StrictStr | None, Field(max_length=64, pattern=NO_NUL, description="Id or name; yours by default.")
    ] = None
    role: Role
    expires_at: Annotated[datetime | None, Field(alias="expiresAt")] = None


class QuotaUse(Answer):
    limit: float | None
    used: float


class TeamAnswer(Answer):
    id: str
    name: str
    quotas: dict[str, Any] = Field(description="{maxGpus, maxUsdPerHour, monthlyBudgetUsd}: null is no limit.")
    use: dict[str, QuotaUse] = Field(description="gpus, usdPerHour, monthUsd: use against each quota.")
    keys: int
    created_at: datetime
    updated_at: datetime


class TeamsAnswer(Answer):
    teams: list[TeamAnswer]


class KeyAnswer(Answer):
    id: str
    name: str
    prefix: str = Field(description="The secret's first characters, to recognise it; never the secret.")
    team: str
    team_name: str
    role: Role
    created_at: datetime
    created_by: str | None
    rotated_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    previous_valid_until: datetime | None = Field(description="A rotated key's old secret works until then.")


class KeyCreatedAnswer(KeyAnswer):
    secret: str = Field(description="Shown this once: the store keeps only its hash.")


class KeysAnswer(Answer):
    keys: list[KeyAnswer]


class MeAnswer(Answer):
    team: str
    team_name: str | None
    key_id: str
    key_name: str
    role: Role
