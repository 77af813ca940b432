"""HTTP routes of teams, their keys, and who the caller is. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from novita_gpu.kit.schemas import NO_NUL
from novita_gpu.teams.schemas import (
    KeyAnswer,
    KeyCreatedAnswer,
    KeyIn,
    KeysAnswer,
    MeAnswer,
    TeamAnswer,
    TeamIn,
    TeamsAnswer,
    TeamUpdateIn,
)
from novita_gpu.web.auth import CallerDep
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.responses import JSONResponse

router = APIRouter(tags=["teams"], route_class=StrictJSONRoute)

TeamRef = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL, description="A team id or name.")]
KeyId = Annotated[str, Path(pattern=r"^ak_[0-9a-f]{20}$", description="A key id (ak_…).")]


@router.get("/api/me", summary="Who this key is: its team and role", response_model=MeAnswer)
async def me(caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.me(caller))


@router.post("/api/teams", status_code=201, summary="Make a team (owner keys)", response_model=TeamAnswer)
async def create_team(body: TeamIn, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.create_team(caller, body.name), status_code=201)


@router.get("/api/teams", summary="Your team (every team, for an owner key)", response_model=TeamsAnswer)
async def list_teams(caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.list_teams(caller))


@router.get("/api/teams/{ref}", summary="A team, its quotas and its use of each", response_model=TeamAnswer)
async def get_team(ref: TeamRef, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.view(caller, ref))


@router.patch("/api/teams/{ref}", summary="Rename a team or change its quotas (admin)", response_model=TeamAnswer)
async def update_team(ref: TeamRef, body: TeamUpdateIn, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.update(caller, ref, body))


@router.post(
    "/api/keys",
    status_code=201,
    summary="Make a key (admin); its secret is shown this once",
    response_model=KeyCreatedAnswer,
)
async def create_key(body: KeyIn, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.create_key(caller, body), status_code=201)


@router.get("/api/keys", summary="The team's keys, never their secrets (admin)", response_model=KeysAnswer)
async def list_keys(
    caller: CallerDep,
    services: ServicesDep,
    team: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)] = None,
) -> JSONResponse:
    return JSONResponse(await services.teams.list_keys(caller, team))


@router.post(
    "/api/keys/{key_id}/rotate",
    summary="A new secret; the old one works for a grace period (admin)",
    response_model=KeyCreatedAnswer,
)
async def rotate_key(key_id: KeyId, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.rotate_key(caller, key_id))


@router.delete(
    "/api/keys/{key_id}",
    summary="Revoke a key: refused by every replica within a second or two",
    response_model=KeyAnswer,
)
async def revoke_key(key_id: KeyId, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.teams.revoke_key(caller, key_id))
