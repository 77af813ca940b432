"""Async client for Novita's GPU-instance v1 API (`.../gpu-instance/openapi/v1`).

Idempotent calls (reads, start/stop/restart/delete and the other deletes) are retried on 429, 5xx,
network errors and timeouts. Creates and updates are retried only when Novita cannot have acted on the
request (429, or the connection was never made); `create_instance` then raises `AmbiguousCreate`, and the
caller looks the instance up by name, while the other writes raise the error itself. The API key never
appears in errors, reprs or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, TypedDict, TypeVar, Unpack

import aiohttp
import orjson
import structlog
from pydantic import BaseModel, SecretStr, ValidationError

from novita_gpu.novita.errors import AmbiguousCreate, NotFound, NovitaError, UpstreamUnavailable, make_error
from novita_gpu.novita.models import (
    Cluster,
    CreateInstanceRequest,
    InstanceMetrics,
    InstancePage,
    Listed,
    NetworkStorage,
    NetworkStoragePage,
    NovitaInstance,
    Product,
    RegistryAuth,
    Template,
    TemplatePage,
)
from novita_gpu.novita.retry import Backoff, RetryBudget, parse_retry_after

log = structlog.get_logger(__name__)

Outcome = Literal["ok", "rate_limited", "server_error", "network_error", "timeout", "client_error"]
OUTCOMES: tuple[Outcome, ...] = (
    "ok",
    "rate_limited",
    "server_error",
    "network_error",
    "timeout",
    "client_error",
)
ENDPOINTS: tuple[str, ...] = (
    "clusters.list",
    "products.list",
    "templates.list",
    "templates.get",
    "registry_auths.list",
    "registry_auths.create",
    "registry_auths.delete",
    "network_storages.list",
    "network_storages.create",
    "network_storages.update",
    "network_storages.delete",
    "instances.create",
    "instances.list",
    "instances.get",
    "instances.start",
    "instances.stop",
    "instances.restart",
    "instances.delete",
    "metrics.gpu",
)
_RETRYABLE: frozenset[Outcome] = frozenset({"rate_limited", "server_error", "network_error", "timeout"})
# Transport failures that happen before any byte of the request left (no connection could be made, or
# none was free in time): safe to repeat even for create.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_SNIPPET = 200
# Calls in flight at once; more wait for a free connection (within the call's timeout).
MAX_CONNECTIONS = 64
# List pages fetched at once after the first (which gives the total): 10,000 instances are 100 pages, and
# fetched one after the other a listing took seconds even against the local emulator.
LIST_CONCURRENCY = 4
# Idle connections are closed here before the server closes them. A request written on a connection the
# server is closing at that moment gets no answer, and an unanswered create is in doubt (never sent again)
# until it shows up or STARTUP_TIMEOUT ends it: about 1 create in 10,000 with aiohttp's 15 s against
# uvicorn's 5 s (the emulator's). Front ends in front of APIs commonly close after 60-75 s.
KEEPALIVE_SECONDS = 4.0

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# How long a request a person waits on tries to reach Novita before it answers 503 (`answer_within`).
REQUEST_PATIENCE_SECONDS = 4.0

# When the calls of the current task must have given up, retries included (monotonic): set by `answer_within`.
_give_up_at: ContextVar[float | None] = ContextVar("novita_give_up_at", default=None)


@contextlib.contextmanager
def answer_within(seconds: float) -> Iterator[None]:
    """Novita calls made inside stop retrying, and stop trying to connect, once `seconds` have passed: for a
    request a person waits on, where an unreachable Novita must be a prompt 503 rather than half a minute
    of retries. An answer already arriving is not cut. Background work keeps the client's own deadline."""
    token = _give_up_at.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _give_up_at.reset(token)


class CallObserver(Protocol):
    """Told about every HTTP attempt (metrics, health): stable endpoint name, outcome, duration."""

    def __call__(self, endpoint: str, outcome: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class _Success:
    body: Any  # decoded JSON, or None for an empty or non-JSON body


@dataclass(frozen=True)
class _Failure:
    error: NovitaError
    outcome: Outcome
    sent: bool  # the request may have reached Novita
    retry_after: float | None = None


def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    root = root.removesuffix("/v1")
    return f"{root}/v1"


GPU_INSTANCE_ROOT = "/gpu-instance/openapi/v1"


def metrics_root(api_root: str) -> str:
    """Where the monitoring API lives: Novita serves it under `/openapi/v1`, beside (not under) the GPU
    instance API's `/gpu-instance/openapi/v1`. A base URL without that suffix (a proxy) is used as is."""
    if api_root.endswith(GPU_INSTANCE_ROOT):
        return api_root.removesuffix(GPU_INSTANCE_ROOT) + "/openapi/v1"
    return api_root


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


class TemplateQuery(TypedDict, total=False):
    """Which templates `list_templates` and `iter_templates` ask for; unset: `official`, not only mine,
    any name and type."""

    channel: str
    is_my_community: bool
    name: str | None
    type: str | None


class InstanceQuery(TypedDict, total=False):
    """Which instances `list_instances_page` and `iter_instances` ask for; unset: every one."""

    name: str | None
    product_name: str | None
    status: str | None


class NovitaClient:
    """One client per process; safe to share between tasks. Use as `async with` or call `aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 15.0,
        retry_deadline: float = 30.0,
        max_attempts: int = 6,
        observer: CallObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = _api_root(base_url)
        self.metrics_url = metrics_root(self.base_url)
        self._key = SecretStr(api_key)
        self._retry_deadline = retry_deadline
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._observer = observer
        self._sleep = sleep
        self._backoff = Backoff()
        self._proxy = _env_proxy(self.base_url)
        self._instances = _InstanceMemo()
        # When Novita last asked us to slow down (429), until when (monotonic): optional callers (the GPU
        # utilization poller) wait it out instead of adding calls while the reconciler's are being refused.
        self._rate_limited_until = 0.0
        # aiohttp rather than httpx: httpcore scans its pool and queue on every request and answer, an
        # order of magnitude more CPU per call, which a burst of creates or a listing per tick feels
        # (docs/performance.md).
        # Separate connect and read timeouts tell "never sent" from "sent, no answer" (see _NOT_SENT).
        self._http = aiohttp.ClientSession(
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            connector=aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS + LIST_CONCURRENCY, keepalive_timeout=KEEPALIVE_SECONDS
            ),
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout),
            # HTTPS_PROXY and friends are read once (`_proxy`): with trust_env aiohttp reads them, and
            # ~/.netrc, in a thread on every call.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def __repr__(self) -> str:
        return f"NovitaClient(base_url={self.base_url!r})"

    @property
    def host(self) -> str:
        """Where Novita is, as an error message names it (`api.novita.ai`, `127.0.0.1:4000`)."""
        return self.base_url.split("://", 1)[-1].split("/", 1)[0]

    async def __aenter__(self) -> NovitaClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.close()

    # ---- catalog -------------------------------------------------------------------------------

    async def list_clusters(self) -> list[Cluster]:
        body = await self._call("clusters.list", "GET", "/clusters")
        return self._parse_list(Cluster, body, "data")

    async def list_products(
        self,
        *,
        cluster_id: str | None = None,
        gpu_num: int | None = None,
        product_name: str | None = None,
        min_cpu_per_gpu: int | None = None,
        min_memory_per_gpu: int | None = None,
        min_rootfs_size: int | None = None,
        billing_method: str | None = None,
    ) -> list[Product]:
        params = _drop_none(
            {
                "clusterId": cluster_id,
                "gpuNum": gpu_num,
                "productName": product_name,
                "minCpuPerGpu": min_cpu_per_gpu,
                "minMemoryPerGpu": min_memory_per_gpu,
                "minRootFSSize": min_rootfs_size,
                "billingMethod": billing_method,
            }
        )
        body = await self._call("products.list", "GET", "/products", params=params)
        return self._parse_list(Product, body, "data")

    async def list_templates(
        self, *, page_size: int = 50, page_num: int = 1, **query: Unpack[TemplateQuery]
    ) -> TemplatePage:
        params = _drop_none(
            {
                "channel": query.get("channel", "official"),
                "isMyCommunity": "true" if query.get("is_my_community") else "false",
                "name": query.get("name"),
                "type": query.get("type"),
                "pageSize": page_size,
                "pageNum": page_num,
            }
        )
        body = await self._call("templates.list", "GET", "/templates", params=params)
        return self._parse(TemplatePage, body)

    async def iter_templates(self, *, page_size: int = 50, **query: Unpack[TemplateQuery]) -> AsyncIterator[Template]:
        """Every matching template, page by page."""

        async def page(page_num: int) -> tuple[list[Template], int]:
            got = await self.list_templates(page_size=page_size, page_num=page_num, **query)
            return got.templates, got.total

        async for template in _walk_pages(page, page_size):
            yield template

    async def get_template(self, template_id: str) -> Template:
        body = await self._call("templates.get", "GET", "/template", params={"templateId": template_id})
        payload = body.get("template") if isinstance(body, dict) else None
        template = self._parse(Template, payload if isinstance(payload, dict) else body)
        if not template.id:
            raise NotFound(200, "TEMPLATE_NOT_FOUND", f"template {template_id!r} not found")
        return template

    async def list_registry_auths(self) -> list[RegistryAuth]:
        body = await self._call("registry_auths.list", "GET", "/repository/auths")
        return self._parse_list(RegistryAuth, body, "data")

    async def create_registry_auth(self, name: str, username: str, password: str) -> RegistryAuth:
        """Save registry credentials and return them with their id. Novita answers the save with `{}`,
        so the id is the one auth with this name and username that the list did not hold before."""
        before = {auth.id for auth in await self.list_registry_auths()}
        await self._call(
            "registry_auths.create",
            "POST",
            "/repository/auth/save",
            json_body={"name": name, "username": username, "password": password},
            ambiguous=_as_is,
        )
        new = [
            auth
            for auth in await self.list_registry_auths()
            if auth.id not in before and auth.name == name and auth.username == username
        ]
        if len(new) != 1:
            raise _invalid_response(f"found {len(new)} new registry auths named {name!r} after saving one")
        return new[0]

    async def delete_registry_auth(self, auth_id: str) -> None:
        await self._call("registry_auths.delete", "POST", "/repository/auth/delete", json_body={"id": auth_id})

    # ---- network storage -----------------------------------------------------------------------

    async def list_network_storages(
        self,
        *,
        page_no: int = 1,
        page_size: int = 100,
        storage_name: str | None = None,
        storage_id: str | None = None,
    ) -> NetworkStoragePage:
        """One page; Novita names the page number `pageNo` here (not `pageNum`)."""
        params = _drop_none(
            {"pageNo": page_no, "pageSize": page_size, "storageName": storage_name, "storageId": storage_id}
        )
        body = await self._call("network_storages.list", "GET", "/networkstorages/list", params=params)
        return self._parse(NetworkStoragePage, body)

    async def iter_network_storages(
        self, *, storage_name: str | None = None, page_size: int = 100
    ) -> AsyncIterator[NetworkStorage]:
        async def page(page_no: int) -> tuple[list[NetworkStorage], int]:
            got = await self.list_network_storages(page_no=page_no, page_size=page_size, storage_name=storage_name)
            return got.storages, got.total

        async for storage in _walk_pages(page, page_size):
            yield storage

    async def create_network_storage(self, cluster_id: str, name: str, size_gb: int) -> str:
        """Create a network storage and return its id. Novita documents the answer as a bare JSON string
        (the id); an object with `storageId`/`id` is taken too, and an answer without one is resolved by
        the only storage of that name in that cluster."""
        body = await self._call(
            "network_storages.create",
            "POST",
            "/networkstorage/create",
            json_body={"clusterId": cluster_id, "storageName": name, "storageSize": size_gb},
            ambiguous=_as_is,
        )
        if isinstance(body, dict):
            body = body.get("storageId") or body.get("id") or body.get("data")
        if isinstance(body, str) and body.strip():
            return body.strip()
        found = [
            s
            async for s in self.iter_network_storages(storage_name=name)
            if s.storage_name == name and s.cluster_id == cluster_id
        ]
        if len(found) != 1:
            raise _invalid_response(f"create answered no id and {len(found)} storages are named {name!r}")
        return found[0].storage_id

    async def update_network_storage(self, storage_id: str, name: str, size_gb: int) -> None:
        """Rename and/or grow (Novita refuses to shrink). Sent once: a repeat could meet a changed size."""
        await self._call(
            "network_storages.update",
            "POST",
            "/networkstorage/update",
            json_body={"storageId": storage_id, "storageName": name, "storageSize": size_gb},
            ambiguous=_as_is,
        )

    async def delete_network_storage(self, storage_id: str) -> None:
        await self._call(
            "network_storages.delete", "POST", "/networkstorage/delete", json_body={"storageId": storage_id}
        )

    # ---- instances -----------------------------------------------------------------------------

    async def create_instance(self, request: CreateInstanceRequest) -> str:
        """Create an instance and return its id. Never repeats a request Novita may have acted on."""

        def ambiguous(error: NovitaError) -> NovitaError:
            return AmbiguousCreate.from_error(error, name=request.name)

        body = await self._call(
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
        params = _drop_none(
            {
                "pageNum": page_num,
                "pageSize": page_size,
                "name": query.get("name"),
                "productName": query.get("product_name"),
                "status": query.get("status"),
            }
        )
        instances, page = await self._instances_page(params, self._instances.parse)
        page.instances = instances
        return page

    async def iter_instances(
        self, *, page_size: int = 100, **query: Unpack[InstanceQuery]
    ) -> AsyncIterator[NovitaInstance]:
        """Every matching instance, walking pages until `total` is reached or a page comes back short.

        Instances created or deleted meanwhile shift the pages; an id is yielded at most once.
        """

        async def page(page_num: int) -> tuple[list[NovitaInstance], int]:
            got = await self.list_instances_page(page_num=page_num, page_size=page_size, **query)
            return got.instances, got.total

        async for instance in _walk_pages(page, page_size):
            yield instance

    async def iter_listed(self, *, page_size: int = 100, concurrency: int = LIST_CONCURRENCY) -> AsyncIterator[Listed]:
        """Every instance of the account, as the few fields a reconciler compares (`Listed`), pages fetched
        `concurrency` at a time once the first has told the total. Each id at most once (instances created
        or deleted meanwhile shift the pages, as in `iter_instances`)."""

        async def page(page_num: int) -> tuple[list[Listed], int]:
            listed, got = await self._instances_page({"pageNum": page_num, "pageSize": page_size}, Listed.parse)
            return listed, got.total

        async for item in _walk_pages(page, page_size, concurrency):
            yield item

    async def _instances_page(self, params: dict[str, Any], parse: Callable[[Any], T]) -> tuple[list[T], InstancePage]:
        """One page of `GET /gpu/instances`: its items read by `parse`, and the page itself (its `instances`
        left empty)."""
        body = await self._call("instances.list", "GET", "/gpu/instances", params=params)
        if not isinstance(body, dict):
            raise _invalid_response("expected a JSON object for InstancePage")
        items = body.get("instances")
        page = self._parse(InstancePage, {**body, "instances": []})
        if items in (None, "", {}):
            return [], page
        if not isinstance(items, list):
            raise _invalid_response("expected a list in 'instances'")
        try:
            return [parse(item) for item in items], page
        except ValidationError as exc:
            raise _invalid_response(_describe_validation(NovitaInstance, exc)) from None

    async def get_instance(self, instance_id: str) -> NovitaInstance:
        body = await self._call("instances.get", "GET", "/gpu/instance", params={"instanceId": instance_id})
        payload = body.get("instance") if isinstance(body, dict) and "id" not in body else None
        instance = self._parse(NovitaInstance, payload if isinstance(payload, dict) else body)
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

    async def _action(self, action: str, instance_id: str) -> None:
        """Lifecycle actions answer `{}`, `{instanceId, state}`, a bare string or nothing: all mean done."""
        await self._call(
            f"instances.{action}", "POST", f"/gpu/instance/{action}", json_body={"instanceId": instance_id}
        )

    # ---- monitoring ----------------------------------------------------------------------------

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
        params = _drop_none(
            {
                "instanceId": instance_id,
                "startTime": None if start is None else int(start),
                "endTime": None if end is None else int(end),
                "interval": interval,
            }
        )
        body = await self._call("metrics.gpu", "GET", "/metrics/gpu/instance", params=params, root=self.metrics_url)
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body = body["data"]  # a `{"data": {...}}` wrapper, as some Novita answers have
        if body is None:
            return InstanceMetrics()
        return self._parse(InstanceMetrics, body)

    def rate_limit_wait(self) -> float:
        """Seconds until Novita's last 429 (its Retry-After, or our backoff) has passed; 0 when none."""
        return max(0.0, self._rate_limited_until - time.monotonic())

    # ---- transport -----------------------------------------------------------------------------

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
        ambiguous: Callable[[NovitaError], NovitaError] | None = None,
        root: str | None = None,
    ) -> Any:
        """Send with retries; returns the decoded JSON body (None when empty or not JSON).

        `ambiguous` marks a non-idempotent call: failures after the request may have been received are
        not retried and are converted by it. `root` replaces the API root (the monitoring API's own).
        """
        give_up_at = _give_up_at.get()
        deadline = self._retry_deadline
        if give_up_at is not None:
            deadline = min(deadline, give_up_at - time.monotonic())
        budget = RetryBudget(max_attempts=self._max_attempts, deadline=deadline)
        while True:
            started = time.monotonic()
            left = None if give_up_at is None else max(0.05, give_up_at - started)
            result = await self._attempt(method, (root or self.base_url) + path, params, json_body, left)
            elapsed = time.monotonic() - started
            budget.record_attempt(elapsed)
            if isinstance(result, _Success):
                self._observe(endpoint, "ok", elapsed)
                return result.body
            outcome = result.outcome
            self._observe(endpoint, outcome, elapsed)
            if ambiguous is not None and result.sent and outcome in ("server_error", "network_error", "timeout"):
                raise ambiguous(result.error) from None
            if outcome not in _RETRYABLE:
                raise result.error from None
            desired = result.retry_after if result.retry_after is not None else self._backoff.wait(budget.attempts)
            if outcome == "rate_limited":
                self._rate_limited_until = max(self._rate_limited_until, time.monotonic() + desired)
            wait = budget.next_wait(desired)
            if wait is None:
                raise result.error from None
            log.warning(
                "novita.retry",
                endpoint=endpoint,
                attempt=budget.attempts,
                outcome=outcome,
                wait=round(wait, 3),
                status=result.error.status,
                reason=result.error.reason,
            )
            await self._sleep(wait)

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Mapping[str, Any] | None,
        left: float | None = None,
    ) -> _Success | _Failure:
        # Within `answer_within` only connecting is cut short: a healthy but long answer still arrives.
        # (aiohttp reads timeout=None as "no timeout at all": the session's own applies unless one is given.)
        extra: dict[str, Any] = {}
        if left is not None:
            extra["timeout"] = aiohttp.ClientTimeout(connect=min(left, self._timeout), sock_read=self._timeout)
        try:
            async with self._http.request(
                method, url, params=params, json=json_body, allow_redirects=False, proxy=self._proxy, **extra
            ) as response:
                content = await response.read()
                return self._interpret(response.status, response.headers, content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome: Outcome = "timeout" if isinstance(exc, TimeoutError) else "network_error"
            reason = "TIMEOUT" if outcome == "timeout" else "NETWORK_ERROR"
            message = self._redact(f"{type(exc).__name__}: {exc}")
            error = UpstreamUnavailable(0, reason, message)
            return _Failure(error, outcome, sent=not isinstance(exc, _NOT_SENT))

    def _interpret(self, status: int, headers: Mapping[str, str], content: bytes) -> _Success | _Failure:
        body = _decode(content)
        envelope = body if isinstance(body, dict) else {}
        code = envelope.get("code")
        if (
            200 <= status < 300
            and isinstance(code, int)
            and code >= 400
            and ("reason" in envelope or "message" in envelope)
        ):
            status = code  # an error envelope served with HTTP 200
        if 200 <= status < 300:
            return _Success(body)
        reason = str(envelope.get("reason") or "")
        message = str(envelope.get("message") or "") or _describe_body(status, headers, content, body)
        metadata = envelope.get("metadata")
        retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
        error = make_error(
            status,
            self._redact(reason),
            self._redact(message),
            metadata if isinstance(metadata, dict) else None,
            retry_after=retry_after,
        )
        outcome: Outcome
        if status == 429:
            outcome = "rate_limited"
        elif status >= 500:
            outcome = "server_error"
        else:
            outcome = "client_error"
        return _Failure(error, outcome, sent=True, retry_after=retry_after)

    def _redact(self, text: str) -> str:
        return text.replace(self._key.get_secret_value(), "***")

    def _observe(self, endpoint: str, outcome: Outcome, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(endpoint, outcome, seconds)
        except Exception:
            log.exception("novita.observer_failed", endpoint=endpoint)

    def _parse(self, model: type[M], body: Any) -> M:
        if not isinstance(body, dict):
            raise _invalid_response(f"expected a JSON object for {model.__name__}")
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise _invalid_response(_describe_validation(model, exc)) from None

    def _parse_list(self, model: type[M], body: Any, key: str) -> list[M]:
        if not isinstance(body, dict):
            raise _invalid_response(f"expected a JSON object with {key!r}")
        items = body.get(key) or []
        if not isinstance(items, list):
            raise _invalid_response(f"expected a list in {key!r}")
        try:
            return [model.model_validate(item) for item in items]
        except ValidationError as exc:
            raise _invalid_response(_describe_validation(model, exc)) from None


def _describe_body(status: int, headers: Mapping[str, str], content: bytes, body: Any) -> str:
    if isinstance(body, str):
        return body[:_SNIPPET]
    text = content.decode("utf-8", errors="replace").strip()
    kind = headers.get("Content-Type", "unknown content type")
    if not text:
        return f"HTTP {status} with an empty body"
    return f"HTTP {status} with a non-Novita body ({kind}): {text[:_SNIPPET]}"


def _decode(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses but Python's json reads (NaN, Infinity, lone surrogates)
            return _storable(json.loads(content))
        except ValueError:
            return None
    return _storable(body) if b"\\u0000" in content else body


def _storable(value: Any) -> Any:
    """`value` with the text our store cannot hold (lone surrogates, NUL) replaced by U+FFFD, so an odd
    answer from Novita can never make a write fail."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _env_proxy(base_url: str) -> str | None:
    """The proxy for Novita's host from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as curl would use."""
    scheme, _, rest = base_url.partition("://")
    host = rest.split("/", 1)[0]
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


class _InstanceMemo:
    """Instances from list pages, validated once per distinct payload.

    The reconciler lists every instance on each tick and nearly all come back byte for byte as on the
    last one; validating them again was the largest part of a tick's CPU. An item is reused only when
    its serialized form is identical (the models are frozen, so sharing them is safe).
    """

    MAX_ENTRIES = 20_000  # far above any account's instance count; past it, start afresh

    def __init__(self) -> None:
        self._seen: dict[str, tuple[bytes, NovitaInstance]] = {}

    def parse(self, item: Any) -> NovitaInstance:
        try:
            key = orjson.dumps(item) if isinstance(item, dict) else None
        except orjson.JSONEncodeError:  # an integer beyond 64 bits (read by the json fallback): not memoised
            key = None
        if key is None:
            return NovitaInstance.model_validate(item)  # a non-object raises the usual validation error
        instance_id = str(item.get("id"))
        known = self._seen.get(instance_id)
        if known is not None and known[0] == key:
            return known[1]
        instance = NovitaInstance.model_validate(item)
        if len(self._seen) >= self.MAX_ENTRIES:
            self._seen.clear()
        self._seen[instance_id] = (key, instance)
        return instance


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=_Identified)


async def _walk_pages(
    fetch: Callable[[int], Awaitable[tuple[list[Item], int]]], page_size: int, concurrency: int = 1
) -> AsyncIterator[Item]:
    """Items of pages 1, 2, ... (each id at most once: items created or deleted meanwhile shift pages).

    Stops on a short page, at `total`, or when a page brings nothing new (a server ignoring pageNum).
    Fetches up to `concurrency` pages at once up to the total the latest page gave; one at a time
    without a total.
    """
    seen: set[str] = set()
    page_num, total = 0, 0
    while True:
        remaining = -(-total // page_size) - page_num if total > 0 else 1
        window = range(page_num + 1, page_num + 1 + max(1, min(concurrency, remaining)))
        pages = await asyncio.gather(*(fetch(n) for n in window)) if len(window) > 1 else [await fetch(window[0])]
        for page_num, (items, total) in zip(window, pages, strict=True):
            fresh = [item for item in items if item.id not in seen]
            for item in fresh:
                seen.add(item.id)
                yield item
            if len(items) < page_size or not fresh or (total > 0 and page_num * page_size >= total):
                return


def _as_is(error: NovitaError) -> NovitaError:
    """For a write that must not be repeated once sent: its failure is raised as it came."""
    return error


def _invalid_response(message: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(200, "INVALID_RESPONSE", message)


def _describe_validation(model: type[BaseModel], exc: ValidationError) -> str:
    """Field locations and error types only: input values may hold secrets (env values, passwords)."""
    problems = ", ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['type']}" for error in exc.errors()[:5]
    )
    return f"unexpected {model.__name__} payload ({problems})"
