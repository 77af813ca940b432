"""NovitaClient against respx: the edge cases a real peer cannot produce on demand.

Requests, retries and error mapping are checked through what a caller sees: return values,
exceptions, the waits handed to the injected sleep, and the observer's per-attempt records.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from novita_gpu.novita import (
    AmbiguousCreate,
    BadRequest,
    CreateInstanceRequest,
    EnvVar,
    InsufficientResource,
    InvalidStateChange,
    NotFound,
    NovitaClient,
    NovitaError,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)

KEY = "sk_live_0123456789abcdef_SECRET"
ROOT = "https://novita.test/gpu-instance/openapi"
API = f"{ROOT}/v1"


class Sleeps(list[float]):
    """Injected sleep: records the waits, returns at once."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Observed(list[tuple[str, str]]):
    def __call__(self, endpoint: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.append((endpoint, outcome))


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def observed() -> Observed:
    return Observed()


@pytest.fixture
async def client(sleeps: Sleeps, observed: Observed) -> AsyncIterator[NovitaClient]:
    async with NovitaClient(ROOT, KEY, retry_deadline=30.0, max_attempts=4, observer=observed, sleep=sleeps) as c:
        yield c


def envelope(status: int, reason: str, message: str, **headers: str) -> httpx.Response:
    body = {"code": status, "reason": reason, "message": message, "metadata": {}}
    return httpx.Response(status, json=body, headers=headers)


def create_request(name: str = "ng-123") -> CreateInstanceRequest:
    return CreateInstanceRequest(
        name=name,
        product_id="4090.16c62g",
        gpu_num=1,
        rootfs_size=60,
        image_url="img:1",
        envs=[EnvVar(key="TOKEN", value="envsecret")],
    )


# ---- requests and parsing ----------------------------------------------------------------------


@pytest.mark.parametrize("base", [ROOT, f"{ROOT}/", f"{ROOT}/v1", f"{ROOT}/v1/"])
async def test_base_url_forms_and_headers(router: respx.MockRouter, base: str) -> None:
    route = router.get("/clusters").respond(json={"data": [{"id": "5", "name": "EU-01"}]})
    async with NovitaClient(base, KEY) as client:
        clusters = await client.list_clusters()
    assert [(c.id, c.name) for c in clusters] == [("5", "EU-01")]
    request = route.calls.last.request
    assert str(request.url) == f"{API}/clusters"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"


async def test_list_products_sends_novita_query_names(router: respx.MockRouter, client: NovitaClient) -> None:
    route = router.get("/products").respond(json={"data": [{"id": "p1", "price": 35000, "spotPrice": "17500"}]})
    products = await client.list_products(
        cluster_id="5", gpu_num=2, product_name="4090", min_rootfs_size=50, billing_method="spot"
    )
    assert products[0].spot_price == 17500
    assert dict(route.calls.last.request.url.params) == {
        "clusterId": "5",
        "gpuNum": "2",
        "productName": "4090",
        "minRootFSSize": "50",
        "billingMethod": "spot",
    }


async def test_templates_list_get_and_iterate(router: respx.MockRouter, client: NovitaClient) -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        num = int(request.url.params["pageNum"])
        items = [{"Id": str(i)} for i in range((num - 1) * 2, min(num * 2, 5))]
        return httpx.Response(200, json={"template": items, "total": 5})

    route = router.get("/templates").mock(side_effect=pages)
    router.get("/template", params={"templateId": "3"}).respond(json={"template": {"Id": "3", "name": "vllm"}})

    page = await client.list_templates(channel="private", is_my_community=True, page_size=2)
    assert [t.id for t in page.templates] == ["0", "1"] and page.total == 5
    assert route.calls.last.request.url.params["isMyCommunity"] == "true"
    assert [t.id async for t in client.iter_templates(page_size=2)] == ["0", "1", "2", "3", "4"]
    assert route.calls.last.request.url.params["channel"] == "official"
    assert (await client.get_template("3")).name == "vllm"


async def test_registry_auths(router: respx.MockRouter, client: NovitaClient) -> None:
    router.get("/repository/auths").respond(
        json={"data": [{"id": "75irlsvv", "name": "hub", "username": "me", "password": "regpw"}]}
    )
    [auth] = await client.list_registry_auths()
    assert (auth.id, auth.password) == ("75irlsvv", "regpw")
    assert "regpw" not in repr(auth)


async def test_get_instance_is_unwrapped_and_missing_one_is_not_found(
    router: respx.MockRouter, client: NovitaClient
) -> None:
    router.get("/gpu/instance", params={"instanceId": "abc"}).respond(
        json={"id": "abc", "status": "running", "gpuNum": "1"}
    )
    router.get("/gpu/instance", params={"instanceId": "gone"}).mock(
        return_value=envelope(400, "RESOURCE_NOT_FOUND", "instance not found")
    )
    router.get("/gpu/instance", params={"instanceId": "empty"}).respond(json={})
    instance = await client.get_instance("abc")
    assert (instance.id, instance.status, instance.gpu_num) == ("abc", "running", 1)
    with pytest.raises(NotFound):
        await client.get_instance("gone")
    with pytest.raises(NotFound):
        await client.get_instance("empty")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={}),
        httpx.Response(200, json={"instanceId": "abc", "state": "toStop"}),
        httpx.Response(200, json="ok"),
        httpx.Response(200, text="OK"),
        httpx.Response(200),
    ],
)
async def test_lifecycle_actions_accept_any_success_body(
    router: respx.MockRouter, client: NovitaClient, response: httpx.Response
) -> None:
    routes = {
        action: router.post(f"/gpu/instance/{action}").mock(return_value=response)
        for action in ("start", "stop", "restart", "delete")
    }
    await client.start_instance("abc")
    await client.stop_instance("abc")
    await client.restart_instance("abc")
    await client.delete_instance("abc")
    for route in routes.values():
        assert json.loads(route.calls.last.request.content) == {"instanceId": "abc"}


async def test_start_in_wrong_state_is_invalid_state_change_and_not_retried(
    router: respx.MockRouter, client: NovitaClient, sleeps: Sleeps
) -> None:
    route = router.post("/gpu/instance/start").mock(return_value=envelope(400, "", "invalid state change"))
    with pytest.raises(InvalidStateChange):
        await client.start_instance("abc")
    assert route.call_count == 1 and sleeps == []


async def test_create_sends_payload_and_returns_id(router: respx.MockRouter, client: NovitaClient) -> None:
    route = router.post("/gpu/instance/create").respond(json={"id": "3560b7fec915bbf9"})
    assert await client.create_instance(create_request()) == "3560b7fec915bbf9"
    sent = json.loads(route.calls.last.request.content)
    assert sent["envs"] == [{"key": "TOKEN", "value": "envsecret"}] and "env" not in sent
    assert sent["productId"] == "4090.16c62g" and sent["kind"] == "gpu"


# ---- pagination ----------------------------------------------------------------------------------


def paged(ids: list[str], *, send_total: bool = True, honour_page: bool = True) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        size = int(request.url.params["pageSize"])
        num = int(request.url.params["pageNum"]) if honour_page else 1
        chunk = ids[(num - 1) * size : num * size]
        body: dict[str, Any] = {"instances": [{"id": i, "status": "running"} for i in chunk]}
        if send_total:
            body["total"] = len(ids)
        return httpx.Response(200, json=body)

    return handler


async def test_iter_instances_walks_every_page(router: respx.MockRouter, client: NovitaClient) -> None:
    ids = [f"i{n}" for n in range(7)]
    route = router.get("/gpu/instances").mock(side_effect=paged(ids))
    assert [i.id async for i in client.iter_instances(page_size=3, status="running")] == ids
    assert [c.request.url.params["pageNum"] for c in route.calls] == ["1", "2", "3"]
    assert route.calls.last.request.url.params["status"] == "running"


async def test_iter_instances_exact_multiple_stops_at_total(router: respx.MockRouter, client: NovitaClient) -> None:
    route = router.get("/gpu/instances").mock(side_effect=paged([f"i{n}" for n in range(4)]))
    assert len([i async for i in client.iter_instances(page_size=2)]) == 4
    assert route.call_count == 2


async def test_iter_instances_without_total_stops_on_short_page(router: respx.MockRouter, client: NovitaClient) -> None:
    route = router.get("/gpu/instances").mock(side_effect=paged([f"i{n}" for n in range(5)], send_total=False))
    assert len([i async for i in client.iter_instances(page_size=2)]) == 5
    assert route.call_count == 3


async def test_iter_instances_stops_when_server_ignores_page_number(
    router: respx.MockRouter, client: NovitaClient
) -> None:
    ids = [f"i{n}" for n in range(6)]
    route = router.get("/gpu/instances").mock(side_effect=paged(ids, send_total=False, honour_page=False))
    assert [i.id async for i in client.iter_instances(page_size=2)] == ["i0", "i1"]
    assert route.call_count == 2


# ---- retries -------------------------------------------------------------------------------------


async def test_idempotent_call_retries_5xx_then_succeeds(
    router: respx.MockRouter, client: NovitaClient, sleeps: Sleeps, observed: Observed
) -> None:
    router.get("/clusters").mock(
        side_effect=[
            envelope(503, "UNKNOWN", "busy"),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"data": []}),
        ]
    )
    assert await client.list_clusters() == []
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)
    assert observed == [
        ("clusters.list", "server_error"),
        ("clusters.list", "network_error"),
        ("clusters.list", "ok"),
    ]


async def test_retry_after_seconds_and_http_date_are_honoured(
    router: respx.MockRouter, client: NovitaClient, sleeps: Sleeps
) -> None:
    router.post("/gpu/instance/stop").mock(
        side_effect=[
            envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "7"}),
            envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}),
            httpx.Response(200, json={}),
        ]
    )
    await client.stop_instance("abc")
    assert sleeps == [7.0, 0.0]


async def test_retry_after_is_capped_at_the_remaining_deadline(router: respx.MockRouter, sleeps: Sleeps) -> None:
    route = router.get("/gpu/instances").mock(
        return_value=envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "3600"})
    )
    async with NovitaClient(ROOT, KEY, retry_deadline=10.0, max_attempts=50, sleep=sleeps) as client:
        with pytest.raises(RateLimited) as caught:
            await client.list_instances_page()
    assert caught.value.retry_after == 3600.0
    assert len(sleeps) == 1 and 9.0 < sleeps[0] <= 10.0
    assert route.call_count == 2


async def test_deadline_bounds_the_total_wait(router: respx.MockRouter, sleeps: Sleeps) -> None:
    router.get("/clusters").mock(return_value=envelope(503, "", "down", **{"Retry-After": "4"}))
    async with NovitaClient(ROOT, KEY, retry_deadline=10.0, max_attempts=50, sleep=sleeps) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.list_clusters()
    assert sleeps[:2] == [4.0, 4.0] and len(sleeps) == 3 and sum(sleeps) <= 10.0


async def test_max_attempts_then_upstream_unavailable(
    router: respx.MockRouter, client: NovitaClient, sleeps: Sleeps
) -> None:
    route = router.get("/gpu/instance").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get_instance("abc")
    assert route.call_count == 4 and len(sleeps) == 3
    assert caught.value.reason == "TIMEOUT" and caught.value.status == 0


async def test_client_errors_are_never_retried(
    router: respx.MockRouter, client: NovitaClient, sleeps: Sleeps, observed: Observed
) -> None:
    route = router.get("/products").mock(return_value=envelope(400, "VALIDATOR_PARAM", "gpuNum out of range"))
    with pytest.raises(BadRequest) as caught:
        await client.list_products(gpu_num=99)
    assert route.call_count == 1 and sleeps == []
    assert observed == [("products.list", "client_error")]
    assert caught.value.reason == "VALIDATOR_PARAM"


# ---- create is never repeated blindly ------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        envelope(500, "UNKNOWN", "internal"),
        httpx.Response(502, text="<html>bad gateway</html>", headers={"Content-Type": "text/html"}),
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(200, json={"code": 503, "reason": "UNKNOWN", "message": "busy"}),
    ],
)
async def test_create_failure_after_sending_is_ambiguous(
    router: respx.MockRouter, client: NovitaClient, sleeps: Sleeps, failure: Any
) -> None:
    route = router.post("/gpu/instance/create").mock(side_effect=[failure, httpx.Response(200, json={"id": "x"})])
    with pytest.raises(AmbiguousCreate) as caught:
        await client.create_instance(create_request("ng-42"))
    assert caught.value.name == "ng-42"
    assert route.call_count == 1 and sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "2"}),
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
    ],
)
async def test_create_retries_only_when_novita_cannot_have_acted(
    router: respx.MockRouter, client: NovitaClient, failure: Any
) -> None:
    route = router.post("/gpu/instance/create").mock(side_effect=[failure, httpx.Response(200, json={"id": "new"})])
    assert await client.create_instance(create_request()) == "new"
    assert route.call_count == 2


async def test_create_without_id_in_answer_is_ambiguous(router: respx.MockRouter, client: NovitaClient) -> None:
    router.post("/gpu/instance/create").respond(json={})
    with pytest.raises(AmbiguousCreate) as caught:
        await client.create_instance(create_request("ng-7"))
    assert caught.value.name == "ng-7"


async def test_create_business_errors_are_typed(router: respx.MockRouter, client: NovitaClient) -> None:
    route = router.post("/gpu/instance/create").mock(
        return_value=envelope(400, "INSUFFICIENT_RESOURCE", "no 4090 left")
    )
    with pytest.raises(InsufficientResource):
        await client.create_instance(create_request())
    assert route.call_count == 1


async def test_create_connect_errors_exhausted_are_not_ambiguous(
    router: respx.MockRouter, client: NovitaClient
) -> None:
    router.post("/gpu/instance/create").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.create_instance(create_request())
    assert not isinstance(caught.value, AmbiguousCreate)


# ---- bodies that are not Novita's envelope ---------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected", "fragment"),
    [
        (
            httpx.Response(401, text="<html>401 Authorization Required</html>"),
            Unauthorized,
            "Authorization Required",
        ),
        (httpx.Response(404), NotFound, "empty body"),
        (httpx.Response(400, json=["weird"]), BadRequest, "non-Novita body"),
        (httpx.Response(502, text="<html>bad gateway</html>"), UpstreamUnavailable, "bad gateway"),
        (httpx.Response(200, text="<html>captive portal</html>"), UpstreamUnavailable, "JSON object"),
        (httpx.Response(200, json={"data": "nope"}), UpstreamUnavailable, "list"),
        (
            httpx.Response(200, json={"code": 400, "reason": "VALIDATOR_PARAM", "message": "bad"}),
            BadRequest,
            "bad",
        ),
    ],
)
async def test_non_envelope_answers_map_to_typed_errors(
    router: respx.MockRouter, response: httpx.Response, expected: type[NovitaError], fragment: str
) -> None:
    router.get("/clusters").mock(return_value=response)
    async with NovitaClient(ROOT, KEY, max_attempts=1) as client:
        with pytest.raises(expected) as caught:
            await client.list_clusters()
    assert fragment in caught.value.message


async def test_malformed_fields_fail_without_echoing_values(router: respx.MockRouter, client: NovitaClient) -> None:
    router.get("/gpu/instance").respond(
        json={"id": "abc", "gpuNum": "lots", "envs": [{"key": "T", "value": "envsecret"}]}
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get_instance("abc")
    assert "gpuNum" in caught.value.message and "envsecret" not in str(caught.value)


# ---- the key never leaks -------------------------------------------------------------------------


def leaked(error: BaseException, logs: list[MutableMapping[str, Any]]) -> bool:
    texts = [str(error), repr(error), repr(error.args), repr(vars(error)), repr(logs)]
    return any(KEY in text for text in texts)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(401, json={"code": 401, "reason": "UNAUTHORIZED", "message": f"bad key Bearer {KEY}"}),
        httpx.Response(403, text=f"<html>denied for Authorization: Bearer {KEY}</html>"),
        httpx.Response(503, text=f"upstream saw {KEY}", headers={"Retry-After": "1"}),
        httpx.ConnectError(f"proxy rejected {KEY}"),
    ],
)
async def test_api_key_never_in_errors_reprs_or_logs(
    router: respx.MockRouter, client: NovitaClient, failure: Any
) -> None:
    router.get("/clusters").mock(side_effect=[failure] * 4)
    with capture_logs() as logs, pytest.raises(NovitaError) as caught:
        await client.list_clusters()
    assert not leaked(caught.value, logs)
    assert KEY not in repr(client)


async def test_retries_are_logged_without_the_key(router: respx.MockRouter, client: NovitaClient) -> None:
    router.get("/clusters").mock(side_effect=[envelope(503, "", "busy"), httpx.Response(200, json={"data": []})])
    with capture_logs() as logs:
        await client.list_clusters()
    [entry] = [e for e in logs if e["event"] == "novita.retry"]
    assert (entry["endpoint"], entry["attempt"], entry["outcome"]) == ("clusters.list", 1, "server_error")
    assert "wait" in entry and KEY not in repr(logs)


async def test_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        NovitaClient(ROOT, "")
