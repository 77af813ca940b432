"""Costs and budgets over HTTP: GET /api/costs, and GET/PUT/DELETE /api/budget (plus its events)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from novita_gpu.costs.report import GROUP_BY_PATTERN, cost_report, month_start
from novita_gpu.costs.schemas import AccountEventsAnswer, BudgetAnswer, CostsAnswer
from novita_gpu.instances.schemas import WebhookUrl
from novita_gpu.web.auth import Caller, CallerDep, require
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.errors import ApiError
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.query_params import date_time
from novita_gpu.web.responses import JSONResponse

router = APIRouter(prefix="/api", tags=["costs"], route_class=StrictJSONRoute)

API_KEY_ID_PATTERN = r"^(key-[0-9a-f]{12}|default)$"
MAX_BUDGET_USD = 1_000_000_000
ApiKeyId = Annotated[
    str | None,
    Query(
        alias="apiKey",
        pattern=API_KEY_ID_PATTERN,
        description="Admin keys only: another key's id (key-..., as cost reports show it). Default: your own.",
    ),
]


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    monthly_limit_usd: Annotated[
        float,
        Field(
            alias="monthlyLimitUsd", strict=True, ge=0, le=MAX_BUDGET_USD, description="USD per calendar month (UTC)."
        ),
    ]
    on_exceeded: Annotated[
        Literal["refuseCreates", "stopAll"],
        Field(
            alias="onExceeded",
            description="Either way creates are refused once spend reaches the limit; stopAll also stops every "
            "instance of the key and refuses starts.",
        ),
    ] = "refuseCreates"
    webhook_url: WebhookUrl = None


def _target(caller: Caller, api_key: str | None) -> str:
    """Whose budget a request is about: the caller's own, or (admin keys only) the one named."""
    if api_key is None or api_key == caller.owner:
        return caller.owner
    if not caller.admin:
        raise ApiError(
            403,
            "FORBIDDEN",
            "Only an owner key (ADMIN_API_KEYS, or a stored key of role owner) may act on another team's budget.",
        )
    return api_key


@router.get(
    "/costs",
    summary="What Novita billed over a period: totals, groups and per-instance and per-volume rows",
    response_model=CostsAnswer,
)
async def costs(
    caller: CallerDep,
    services: ServicesDep,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            description="RFC 3339 date-time; default: the start of this month (UTC).",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(alias="to", description="RFC 3339 date-time; default: now.", json_schema_extra={"format": "date-time"}),
    ] = None,
    group_by: Annotated[
        str,
        Query(alias="groupBy", pattern=GROUP_BY_PATTERN, description="product, apiKey or label:<key>."),
    ] = "product",
) -> JSONResponse:
    """Your instances' and volumes' costs; an admin key's report covers every key. A period ending before it
    starts is empty."""
    now = services.clock.now()
    first = date_time(start, "from") or month_start(now)
    last = date_time(end, "to") or now
    report = await cost_report(
        services.db,
        start=first,
        end=max(first, last),
        now=now,
        group_by=group_by,
        owner=None if caller.admin else caller.owner,
    )
    return JSONResponse(report)


@router.get("/budget", summary="Your budget, spend this month and the projected month end", response_model=BudgetAnswer)
async def get_budget(caller: CallerDep, services: ServicesDep, api_key: ApiKeyId = None) -> JSONResponse:
    return JSONResponse(await services.budgets.view(_target(caller, api_key)))


@router.put("/budget", summary="Set a monthly budget (admin keys: for any key)", response_model=BudgetAnswer)
async def put_budget(
    caller: CallerDep, services: ServicesDep, body: BudgetIn, api_key: ApiKeyId = None
) -> JSONResponse:
    target = _target(caller, api_key)
    require(caller, "admin", "set the team's budget")
    answer = await services.budgets.put(
        target,
        limit=body.monthly_limit_usd,
        on_exceeded=body.on_exceeded,
        webhook_url=body.webhook_url,
        by_admin=caller.admin and target != caller.owner,  # a key's own budget stays its own to change
    )
    return JSONResponse(answer)


@router.delete("/budget", summary="Remove a budget", response_model=BudgetAnswer)
async def delete_budget(caller: CallerDep, services: ServicesDep, api_key: ApiKeyId = None) -> JSONResponse:
    target = _target(caller, api_key)
    require(caller, "admin", "remove the team's budget")
    return JSONResponse(await services.budgets.delete(target, by_admin=caller.admin))


@router.get(
    "/budget/events", summary="budget.exceeded events and their webhook deliveries", response_model=AccountEventsAnswer
)
async def budget_events(caller: CallerDep, services: ServicesDep, api_key: ApiKeyId = None) -> JSONResponse:
    return JSONResponse(await services.budgets.events(_target(caller, api_key)))
