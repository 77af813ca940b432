"""Auto-stop endpoints: live figures and an on-demand sweep (a dry run unless asked otherwise)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from novita_gpu.autostop.schemas import AutoStopStatsAnswer, TriggerAnswer
from novita_gpu.web.auth import Owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.responses import JSONResponse

router = APIRouter(prefix="/api/instances/auto-stop", tags=["auto-stop"], route_class=StrictJSONRoute)


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dry_run: Annotated[StrictBool, Field(alias="dryRun")] = True


@router.get(
    "/stats",
    summary="Auto-stop figures: watched, eligible, next deadline, stopped and saved",
    response_model=AutoStopStatsAnswer,
)
async def stats(owner: Owner, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.sweeper.stats(owner))


@router.post(
    "/trigger",
    summary="Run a sweep now over your instances (dryRun defaults to true)",
    response_model=TriggerAnswer,
)
async def trigger(
    owner: Owner, services: ServicesDep, body: Annotated[TriggerIn | None, Body()] = None
) -> JSONResponse:
    dry_run = True if body is None else body.dry_run
    return JSONResponse(await services.sweeper.sweep(dry_run=dry_run, owner=owner))
