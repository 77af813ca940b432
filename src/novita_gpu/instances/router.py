"""HTTP routes of the instances API. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query
from starlette.responses import Response

from novita_gpu.instances.lifecycle import Status
from novita_gpu.instances.rendering import instance_view
from novita_gpu.instances.schemas import (
    ActionAnswer,
    CreatedAnswer,
    CreateInstanceIn,
    EventsAnswer,
    InstanceAnswer,
    InstanceNameIn,
    InstancePageAnswer,
    LastUsedIn,
    StartByNameIn,
    StartIn,
    StopByNameIn,
    StopIn,
    SyncAnswer,
    SyncIn,
    TouchAnswer,
    UpdateInstanceIn,
)
from novita_gpu.instances.service import ActionResult
from novita_gpu.instances.sync import sync_for
from novita_gpu.kit.cursor import CURSOR_PATTERN, decode_cursor
from novita_gpu.web.auth import Owner
from novita_gpu.web.deps import ServicesDep
from novita_gpu.web.errors import ApiError, method_not_allowed
from novita_gpu.web.json_body import StrictJSONRoute
from novita_gpu.web.responses import JSONResponse
from novita_gpu_client.vocabulary import NAME_PATTERN

# A list page's size: what the route allows, and what the cached-reads shortcut answers (cached_reads.py).
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 500

router = APIRouter(prefix="/api/instances", tags=["instances"], route_class=StrictJSONRoute)

_STATUSES = {s.value for s in Status}
_ONE_STATUS = "|".join(sorted(_STATUSES, key=lambda s: (-len(s), s)))
# One status or several, comma-separated, spaces allowed around each: what the document states and the
# handlers check (with their own messages), so `?waitFor=` or `?status=sleeping` is 400 by both.
STATUSES_PATTERN = rf"^ *(?:{_ONE_STATUS}) *(?:, *(?:{_ONE_STATUS}) *)*$"
STATUS_FILTER_PATTERN = rf"^(?: *(?:{_ONE_STATUS}) *(?:, *(?:{_ONE_STATUS}) *)*)?$"  # empty: every status
_STATUSES_RE = re.compile(STATUSES_PATTERN)
_STATUS_FILTER_RE = re.compile(STATUS_FILTER_PATTERN)
# Our ids are inst_ + 20 hex digits; any id of these characters is looked up (and may be 404). Text that
# cannot be an id is 400 before the store sees it (PostgreSQL answered 500 to a NUL in a comparison).
INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
InstanceId = Annotated[
    str, Path(pattern=INSTANCE_ID_PATTERN, description="An instanceId, e.g. inst_0123456789abcdef0123")
]
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
# ?label=KEY=VALUE: a label key (1-63 characters, here without "=") and its value (0-255), no NUL.
LABEL_FILTER_PATTERN = r"^[^=\x00]{1,63}=[^\x00]{0,255}$"
_LABEL_FILTER_RE = re.compile(LABEL_FILTER_PATTERN)
MAX_LABEL_FILTERS = 20
# Start, stop and delete answer 202 when accepted and 200 when the instance is already so, alike.
_ACTION_ROUTE: dict[str, Any] = {
    "status_code": 202,
    "response_model": ActionAnswer,
    "responses": {200: {"model": ActionAnswer, "description": "Already in that state"}},
}


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _acted(result: ActionResult) -> JSONResponse:
    """202 when the action was recorded, 200 when the instance already was (or was going) there."""
    return _json(202 if result.changed else 200, result.answer)


# The by-name actions own their paths: GET, DELETE or PATCH there is 405 (the document's answer: a concrete path
# is matched before /{instance_id}), not a look-up of an instance called "start".
for _action in ("start", "stop", "delete", "sync"):
    router.add_api_route(
        f"/{_action}",
        method_not_allowed,
        methods=["GET", "DELETE", "PATCH"],
        include_in_schema=False,
        response_model=None,
    )


@router.get(
    "/{instance_id}",
    summary="One instance; long-poll with ?waitFor=ready&timeout=30",
    response_model=InstanceAnswer,
)
async def get_instance(
    instance_id: InstanceId,
    owner: Owner,
    services: ServicesDep,
    wait_for: Annotated[
        str | None,
        Query(
            alias="waitFor",
            description="Answer once the instance is in one of these statuses (or failed/terminated), or at timeout.",
            json_schema_extra={"pattern": STATUSES_PATTERN},
        ),
    ] = None,
    timeout: Annotated[float, Query(ge=0, le=60)] = 30,
) -> Response:
    if wait_for is None:
        cached = await services.instances.view(owner, instance_id)
        return Response(cached.body, media_type=JSONResponse.media_type)
    if not _STATUSES_RE.fullmatch(wait_for):
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            "waitFor must be one or more statuses, e.g. ready.",
            details=[{"field": "waitFor", "message": "unknown status"}],
        )
    wanted = {s.strip() for s in wait_for.split(",")}
    row = await services.instances.wait_for(owner, instance_id, wanted, timeout)
    return _json(200, instance_view(row))


@router.post(
    "",
    status_code=201,
    summary="Create an instance from a GPU product name and a template",
    responses={
        201: {"model": CreatedAnswer},
        200: {"model": CreatedAnswer, "description": "Replayed (same Idempotency-Key)"},
    },
)
async def create_instance(
    body: CreateInstanceIn,
    owner: Owner,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Printable ASCII; a repeat with the same body within IDEMPOTENCY_TTL_SECONDS replays the answer.",
        ),
    ] = None,
) -> JSONResponse:
    if body.pool is not None:
        created = await services.pools.claim_by_create(owner, body, idempotency_key)
    else:
        created = await services.instances.create(owner, body, idempotency_key)
    return _json(201 if created.replayed_status is None else created.replayed_status, created.answer)


@router.get(
    "",
    summary="List instances (from the store; filters and cursor pagination)",
    response_model=InstancePageAnswer,
)
async def list_instances(
    owner: Owner,
    services: ServicesDep,
    status: Annotated[
        str | None,
        Query(
            description="One status or several, comma-separated",
            json_schema_extra={"pattern": STATUS_FILTER_PATTERN},
        ),
    ] = None,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            description="A page's nextCursor, as it is; anything else is 400 INVALID_CURSOR.",
            # Stated, not enforced by FastAPI: decode_cursor refuses with its own code.
            json_schema_extra={"pattern": CURSOR_PATTERN},
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        Query(
            description="KEY=VALUE: only instances with this label; repeat for several (all must match).",
            max_length=MAX_LABEL_FILTERS,
            # Stated, and checked below with a message of its own.
            json_schema_extra={"items": {"type": "string", "pattern": LABEL_FILTER_PATTERN}},
        ),
    ] = None,
) -> Response:
    if cursor is not None:
        decode_cursor(cursor)  # refuse before the read cache keys a page by it
    labels: list[tuple[str, str]] = []
    for item in label or []:
        if not _LABEL_FILTER_RE.fullmatch(item):
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "label must be KEY=VALUE: a label key (1-63 characters, no '=') and its value (at most 255).",
                details=[{"field": "label", "message": "not KEY=VALUE"}],
            )
        key, _, value = item.partition("=")
        labels.append((key, value))
    if status is not None and not _STATUS_FILTER_RE.fullmatch(status):
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"status must be statuses separated by commas, each one of: {', '.join(sorted(_STATUSES))}.",
            details=[{"field": "status", "message": "unknown status"}],
        )
    statuses = sorted({s.strip() for s in status.split(",")}) if status and status.strip() else []
    page = await services.instances.list_page(
        owner, statuses=statuses, name=name, limit=limit, cursor=cursor, labels=tuple(sorted(set(labels)))
    )
    return Response(page.body, media_type=JSONResponse.media_type)


@router.post("/start", summary="Start an instance by name", **_ACTION_ROUTE)
async def start_by_name(body: StartByNameIn, owner: Owner, services: ServicesDep) -> JSONResponse:
    return _acted(await services.instances.start(owner, body.instance_name, body, by_name=True))


@router.post("/stop", summary="Stop an instance by name", **_ACTION_ROUTE)
async def stop_by_name(body: StopByNameIn, owner: Owner, services: ServicesDep) -> JSONResponse:
    return _acted(
        await services.instances.stop(owner, body.instance_name, by_name=True, return_to_pool=body.return_to_pool)
    )


@router.post("/delete", summary="Delete an instance by name", **_ACTION_ROUTE)
async def delete_by_name(body: InstanceNameIn, owner: Owner, services: ServicesDep) -> JSONResponse:
    return _acted(await services.instances.delete(owner, body.instance_name, by_name=True))


@router.post("/sync", summary="Reconcile with Novita now (the counts are the caller's own)", response_model=SyncAnswer)
async def sync(owner: Owner, services: ServicesDep, body: Annotated[SyncIn | None, Body()] = None) -> JSONResponse:
    return _json(200, await sync_for(services.db, services.reconciler, services.prober, owner))


@router.post("/{instance_id}/start", summary="Start an instance by id", **_ACTION_ROUTE)
async def start_by_id(
    instance_id: InstanceId, owner: Owner, services: ServicesDep, body: Annotated[StartIn | None, Body()] = None
) -> JSONResponse:
    return _acted(await services.instances.start(owner, instance_id, body or StartIn(), by_name=False))


@router.post("/{instance_id}/stop", summary="Stop an instance by id", **_ACTION_ROUTE)
async def stop_by_id(
    instance_id: InstanceId, owner: Owner, services: ServicesDep, body: Annotated[StopIn | None, Body()] = None
) -> JSONResponse:
    back = body is not None and body.return_to_pool
    return _acted(await services.instances.stop(owner, instance_id, by_name=False, return_to_pool=back))


@router.delete("/{instance_id}", summary="Delete an instance (the record is kept)", **_ACTION_ROUTE)
async def delete_by_id(instance_id: InstanceId, owner: Owner, services: ServicesDep) -> JSONResponse:
    return _acted(await services.instances.delete(owner, instance_id, by_name=False))


@router.patch(
    "/{instance_id}",
    summary="Change an instance's auto-stop policy or runtime limit",
    response_model=InstanceAnswer,
)
async def update_instance(
    instance_id: InstanceId, body: UpdateInstanceIn, owner: Owner, services: ServicesDep
) -> JSONResponse:
    return _json(200, await services.instances.update(owner, instance_id, body))


@router.put(
    "/{instance_id}/last-used",
    summary="Mark the instance used now (defers auto-stop)",
    response_model=TouchAnswer,
)
async def mark_used(
    instance_id: InstanceId, owner: Owner, services: ServicesDep, body: Annotated[LastUsedIn | None, Body()] = None
) -> JSONResponse:
    return _json(200, await services.instances.touch(owner, instance_id))


@router.get("/{instance_id}/events", summary="Status history and webhook deliveries", response_model=EventsAnswer)
async def instance_events(instance_id: InstanceId, owner: Owner, services: ServicesDep) -> JSONResponse:
    return _json(200, await services.instances.events(owner, instance_id))
