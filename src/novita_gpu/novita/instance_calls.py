"""The instance calls of `NovitaClient`: create, list, read, the lifecycle actions, migrate and utilization.

A create is never sent twice once Novita may have acted on it: its failures then become `AmbiguousCreate`,
and the caller looks the instance up by name. Listings reuse instances already parsed (`InstanceMemo`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypedDict, TypeVar, Unpack

from pydantic import ValidationError

from novita_gpu.novita.errors import AmbiguousCreate, NotFound, NovitaError
from novita_gpu.novita.models import (
    CreateInstanceRequest,
    InstanceMetrics,
    InstancePage,
    Listed,
    Migration,
    NovitaInstance,
)
from novita_gpu.novita.paging import LIST_CONCURRENCY, Page, walk_pages
from novita_gpu.novita.parsing import InstanceMemo, describe_validation, invalid_response, parse
from novita_gpu.novita.transport import Transport

INSTANCE_ENDPOINTS: tuple[str, ...] = (
    "instances.create",
    "instances.list",
    "instances.get",
    "instances.start",
    "instances.stop",
    "instances.restart",
    "instances.delete",
    "instances.migrate",
    "metrics.gpu",
)

T = TypeVar("T")


class InstanceQuery(TypedDict, total=False):
    """Which instances `list_instances_page` and `iter_instances` ask for; unset: every one."""

    name: str | None
    product_name: str | None
    status: str | None


class InstanceCalls:
    _transport: Transport
    _instances: InstanceMemo

    async def create_instance(self, request: CreateInstanceRequest) -> str:
        """Create an instance and return its id. Never repeats a request Novita may have acted on."""

        def ambiguous(error: NovitaError) -> NovitaError:
            return AmbiguousCreate.from_error(error, name=request.name)

        body = await self._transport.call(
            "instances.create",
            "POST",
            "/gpu/instance/create",
            json_body=request.to_payload(),
            ambiguous=ambiguous,
        )
        instance_id = body.get("id") if isinstance(body, dict) else None
        if instance_id is None or not str(instance_id).strip():
            raise AmbiguousCreate(200, "INVALID_RESPONSE", "create answered without an instance id", name=request.name)
        return str(instance_id)

    async def list_instances_page(
        self, *, page_num: int = 1, page_size: int = 100, **query: Unpack[InstanceQuery]
    ) -> InstancePage:
        params = {
            "pageNum": page_num,
            "pageSize": page_size,
            "name": query.get("name"),
            "productName": query.get("product_name"),
            "status": query.get("status"),
        }
        instances, page = await self._instances_page(params, self._instances.parse)
        page.instances = instances
        return page

    def iter_instances(self, *, page_size: int = 100, **query: Unpack[InstanceQuery]) -> AsyncIterator[NovitaInstance]:
        """Every matching instance, walking pages until `total` is reached or a page comes back short.

        Instances created or deleted meanwhile shift the pages; an id is yielded at most once.
        """
        return walk_pages(lambda n: self.list_instances_page(page_num=n, page_size=page_size, **query), page_size)

    def iter_listed(self, *, page_size: int = 100, concurrency: int = LIST_CONCURRENCY) -> AsyncIterator[Listed]:
        """Every instance of the account, as the few fields a reconciler compares (`Listed`), pages fetched
        `concurrency` at a time once the first has told the total. Each id at most once (instances created
        or deleted meanwhile shift the pages, as in `iter_instances`)."""
        return walk_pages(lambda n: self._listed_page(n, page_size), page_size, concurrency)

    async def _listed_page(self, page_num: int, page_size: int) -> Page[Listed]:
        listed, page = await self._instances_page({"pageNum": page_num, "pageSize": page_size}, Listed.parse)
        return Page(listed, page.total)

    async def _instances_page(
        self, params: dict[str, Any], parse_item: Callable[[Any], T]
    ) -> tuple[list[T], InstancePage]:
        """One page of `GET /gpu/instances`: its items read by `parse_item`, and the page itself (its
        `instances` left empty)."""
        body = await self._transport.call("instances.list", "GET", "/gpu/instances", params=params)
        if not isinstance(body, dict):
            raise invalid_response("expected a JSON object for InstancePage")
        items = body.get("instances")
        page = parse(InstancePage, {**body, "instances": []})
        if items in (None, "", {}):
            return [], page
        if not isinstance(items, list):
            raise invalid_response("expected a list in 'instances'")
        try:
            return [parse_item(item) for item in items], page
        except ValidationError as exc:
            raise invalid_response(describe_validation(NovitaInstance, exc)) from None

    async def get_instance(self, instance_id: str) -> NovitaInstance:
        body = await self._transport.call("instances.get", "GET", "/gpu/instance", params={"instanceId": instance_id})
        payload = body.get("instance") if isinstance(body, dict) and "id" not in body else None
        instance = parse(NovitaInstance, payload if isinstance(payload, dict) else body)
        if not instance.id:
            raise NotFound(200, "RESOURCE_NOT_FOUND", f"instance {instance_id!r} not found")
        return instance

    async def start_instance(self, instance_id: str) -> None:
        await self._action("start", instance_id)

    async def stop_instance(self, instance_id: str) -> None:
        await self._action("stop", instance_id)

    async def restart_instance(self, instance_id: str) -> None:
        await self._action("restart", instance_id)

    async def delete_instance(self, instance_id: str) -> None:
        await self._action("delete", instance_id)

    async def migrate_instance(self, instance_id: str) -> Migration:
        """Move an exited instance (a reclaimed spot instance) to another node: Novita makes an
        `instanceMigrate` job (`list_jobs`), the instance goes `migrating`, then `running` or back to
        `exited`, its system and local disks lost (network storage stays). Sent once: a repeat could start a
        second migration, so a failure after the request may have arrived (a timeout, a 5xx) is raised as it
        came, and the caller looks at the instance (and its jobs) before asking again. `moved_to` is the id
        the instance runs under afterwards: the same, unless Novita answers a `newInstanceId`."""
        body = await self._transport.send_once(
            "instances.migrate", "/gpu/instance/migrate", {"instanceId": instance_id}
        )
        answer = parse(Migration, body) if isinstance(body, dict) else Migration()
        return answer if answer.instance_id else answer.model_copy(update={"instance_id": instance_id})

    async def _action(self, action: str, instance_id: str) -> None:
        """Lifecycle actions answer `{}`, `{instanceId, state}`, a bare string or nothing: all mean done."""
        await self._transport.call(
            f"instances.{action}", "POST", f"/gpu/instance/{action}", json_body={"instanceId": instance_id}
        )

    async def get_instance_metrics(
        self,
        instance_id: str,
        *,
        start: float | None = None,
        end: float | None = None,
        interval: int | None = None,
    ) -> InstanceMetrics:
        """An instance's utilization series (percentages) between `start` and `end` (unix seconds; Novita's
        default is the last 60 s) at `interval` seconds (Novita: more than 15, default 15). Novita's data
        lags by about a minute, and it answers out-of-range parameters with its defaults rather than an
        error, so callers check which timestamps came back. Missing or odd fields read as no samples."""
        params = {
            "instanceId": instance_id,
            "startTime": None if start is None else int(start),
            "endTime": None if end is None else int(end),
            "interval": interval,
        }
        transport = self._transport
        body = await transport.call(
            "metrics.gpu", "GET", "/metrics/gpu/instance", params=params, root=transport.metrics_url
        )
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body = body["data"]  # a `{"data": {...}}` wrapper, as some Novita answers have
        if body is None:
            return InstanceMetrics()
        return parse(InstanceMetrics, body)
