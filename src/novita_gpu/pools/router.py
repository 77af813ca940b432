"""HTTP routes of warm pools. Thin: parse, call the service, shape the answer.

Reads take any key of the team; a claim is a member's (it is a create); making, changing and deleting a
pool set the team's standing spend, so they are an admin's (docs/teams.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path

from novita_gpu.instances.router import IDEMPOTENCY_KEY_PATTERN
from novita_gpu.pools.schemas import (
    POOL_NAME_PATTERN,
    ClaimAnswer,
    ClaimIn,
    PoolAnswer,
    PoolIn,
    PoolsAnswer,
    PoolUpdateIn,
)
from novita_gpu.web.auth import CallerDep, Owner, require
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.responses import JSONResponse

router = APIRouter(prefix="/api/pools", tags=["pools"], route_class=StrictJSONRoute)

PoolName = Annotated[str, Path(pattern=POOL_NAME_PATTERN, description="The pool's name.")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)]


@router.post("", status_code=201, summary="Make a warm pool (admin)", response_model=PoolAnswer)
async def create_pool(body: PoolIn, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    require(caller, "admin", "make a pool")
    return JSONResponse(await services.pools.create(caller.team, body), status_code=201)


@router.get("", summary="Your team's pools, with members, claims and idle cost", response_model=PoolsAnswer)
async def list_pools(owner: Owner, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.pools.list_pools(owner))


@router.get(
    "/{name}", summary="A pool: members by state, claims per hour, hit rates, idle cost", response_model=PoolAnswer
)
async def get_pool(name: PoolName, owner: Owner, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await services.pools.view(owner, name))


@router.patch("/{name}", summary="Change a pool's targets and policies (admin)", response_model=PoolAnswer)
async def update_pool(name: PoolName, body: PoolUpdateIn, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    require(caller, "admin", "change a pool")
    return JSONResponse(await services.pools.update(caller.team, name, body))


@router.delete(
    "/{name}",
    status_code=202,
    summary="Drain and delete a pool: idle members are deleted, claimed ones stay (admin)",
    response_model=PoolAnswer,
)
async def delete_pool(name: PoolName, caller: CallerDep, services: ServicesDep) -> JSONResponse:
    require(caller, "admin", "delete a pool")
    return JSONResponse(await services.pools.delete(caller.team, name), status_code=202)


@router.post(
    "/{name}/claim",
    status_code=201,
    summary="Claim an instance: a ready member at once, else a stopped one started, else one made cold",
    response_model=ClaimAnswer,
)
async def claim(
    name: PoolName,
    body: ClaimIn,
    owner: Owner,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    claimed = await services.pools.claim(owner, name, body, idempotency_key)
    return JSONResponse(claimed.answer, status_code=claimed.replayed_status or 201)
