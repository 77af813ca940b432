"""NovitaClient against a scripted peer on loopback: the edge cases a real Novita cannot produce on demand.

Requests, retries and error mapping are checked through what a caller sees: return values,
exceptions, the waits handed to the injected sleep, and the observer's per-attempt records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import aiohttp
import pytest
import uvicorn
from pydantic import ValidationError
from structlog.testing import capture_logs

from novita_gpu.kit.serving import free_port
from novita_gpu.novita import (
    AmbiguousCreate,
    BadRequest,
    CreateInstanceRequest,
    EnvVar,
    InsufficientResource,
    InvalidStateChange,
    Listed,
    NetworkStorageMount,
    NotFound,
    NovitaClient,
    NovitaError,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)
from novita_gpu.novita.answers import decode
from novita_gpu.novita.transport import KEEPALIVE_SECONDS, NOT_SENT
from tests.fixtures.novita_client import Observed, Sleeps
from tests.unit.novita.fake_novita import DISCONNECT, HANG, Call, FakeNovita, Reply

KEY = "sk_live_0123456789abcdef_SECRET"


@pytest.fixture
async def client(novita: FakeNovita, sleeps: Sleeps, observed: Observed) -> AsyncIterator[NovitaClient]:
    async with NovitaClient(
        novita.url, KEY, timeout=0.5, retry_deadline=30.0, max_attempts=4, observer=observed, sleep=sleeps
    ) as c:
        yield c


def envelope(status: int, reason: str, message: str, **headers: str) -> Reply:
    return Reply(status, json={"code": status, "reason": reason, "message": message, "metadata": {}}, headers=headers)


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


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_forms_and_headers(novita: FakeNovita, suffix: str) -> None:
    route = novita.route("GET", "/clusters", Reply(json={"data": [{"id": "5", "name": "EU-01"}]}))
    async with NovitaClient(novita.url + suffix, KEY) as client:
        clusters = await client.list_clusters()
    assert [(c.id, c.name) for c in clusters] == [("5", "EU-01")]
    [call] = route.calls
    assert call.path == "/gpu-instance/openapi/v1/clusters"
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["content-type"] == "application/json"


async def test_list_products_sends_novita_query_names(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("GET", "/products", Reply(json={"data": [{"id": "p1", "price": 35000, "spotPrice": "17500"}]}))
    products = await client.list_products(
        cluster_id="5", gpu_num=2, product_name="4090", min_rootfs_size=50, billing_method="spot"
    )
    assert products[0].spot_price == 17500
    assert route.calls[-1].params == {
        "clusterId": "5",
        "gpuNum": "2",
        "productName": "4090",
        "minRootFSSize": "50",
        "billingMethod": "spot",
    }


async def test_templates_list_get_and_iterate(novita: FakeNovita, client: NovitaClient) -> None:
    def pages(call: Call) -> Reply:
        num = int(call.params["pageNum"])
        items = [{"Id": str(i)} for i in range((num - 1) * 2, min(num * 2, 5))]
        return Reply(json={"template": items, "total": 5})

    route = novita.route("GET", "/templates", pages)
    novita.route("GET", "/template", Reply(json={"template": {"Id": "3", "name": "vllm"}}), templateId="3")

    page = await client.list_templates(channel="private", is_my_community=True, page_size=2)
    assert [t.id for t in page.templates] == ["0", "1"] and page.total == 5
    assert route.calls[0].params["isMyCommunity"] == "true"
    assert [t.id async for t in client.iter_templates(page_size=2)] == ["0", "1", "2", "3", "4"]
    assert route.calls[-1].params["channel"] == "official"
    assert (await client.get_template("3")).name == "vllm"


async def test_registry_auths(novita: FakeNovita, client: NovitaClient) -> None:
    novita.route(
        "GET",
        "/repository/auths",
        Reply(json={"data": [{"id": "75irlsvv", "name": "hub", "username": "me", "password": "regpw"}]}),
    )
    [auth] = await client.list_registry_auths()
    assert (auth.id, auth.password) == ("75irlsvv", "regpw")
    assert "regpw" not in repr(auth)


async def test_get_instance_is_unwrapped_and_missing_one_is_not_found(novita: FakeNovita, client: NovitaClient) -> None:
    novita.route(
        "GET", "/gpu/instance", Reply(json={"id": "abc", "status": "running", "gpuNum": "1"}), instanceId="abc"
    )
    novita.route("GET", "/gpu/instance", envelope(400, "RESOURCE_NOT_FOUND", "instance not found"), instanceId="gone")
    novita.route("GET", "/gpu/instance", Reply(json={}), instanceId="empty")
    instance = await client.get_instance("abc")
    assert (instance.id, instance.status, instance.gpu_num) == ("abc", "running", 1)
    with pytest.raises(NotFound):
        await client.get_instance("gone")
    with pytest.raises(NotFound):
        await client.get_instance("empty")


@pytest.mark.parametrize(
    "response",
    [
        Reply(json={}),
        Reply(json={"instanceId": "abc", "state": "toStop"}),
        Reply(json="ok"),
        Reply(text="OK"),
        Reply(),
    ],
)
async def test_lifecycle_actions_accept_any_success_body(
    novita: FakeNovita, client: NovitaClient, response: Reply
) -> None:
    routes = {
        action: novita.route("POST", f"/gpu/instance/{action}", response)
        for action in ("start", "stop", "restart", "delete")
    }
    await client.start_instance("abc")
    await client.stop_instance("abc")
    await client.restart_instance("abc")
    await client.delete_instance("abc")
    for route in routes.values():
        assert route.calls[-1].json() == {"instanceId": "abc"}


async def test_start_in_wrong_state_is_invalid_state_change_and_not_retried(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps
) -> None:
    route = novita.route("POST", "/gpu/instance/start", envelope(400, "", "invalid state change"))
    with pytest.raises(InvalidStateChange):
        await client.start_instance("abc")
    assert len(route.calls) == 1 and sleeps == []


async def test_create_sends_payload_and_returns_id(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("POST", "/gpu/instance/create", Reply(json={"id": "3560b7fec915bbf9"}))
    assert await client.create_instance(create_request()) == "3560b7fec915bbf9"
    sent = route.calls[-1].json()
    assert sent["envs"] == [{"key": "TOKEN", "value": "envsecret"}] and "env" not in sent
    assert sent["productId"] == "4090.16c62g" and sent["kind"] == "gpu"


# ---- pagination ----------------------------------------------------------------------------------


def paged(ids: list[str], *, send_total: bool = True, honour_page: bool = True) -> Any:
    def handler(call: Call) -> Reply:
        size = int(call.params["pageSize"])
        num = int(call.params["pageNum"]) if honour_page else 1
        chunk = ids[(num - 1) * size : num * size]
        body: dict[str, Any] = {"instances": [{"id": i, "status": "running"} for i in chunk]}
        if send_total:
            body["total"] = len(ids)
        return Reply(json=body)

    return handler


async def test_iter_instances_walks_every_page(novita: FakeNovita, client: NovitaClient) -> None:
    ids = [f"i{n}" for n in range(7)]
    route = novita.route("GET", "/gpu/instances", paged(ids))
    assert [i.id async for i in client.iter_instances(page_size=3, status="running")] == ids
    assert [c.params["pageNum"] for c in route.calls] == ["1", "2", "3"]
    assert route.calls[-1].params["status"] == "running"


async def test_iter_instances_exact_multiple_stops_at_total(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("GET", "/gpu/instances", paged([f"i{n}" for n in range(4)]))
    assert len([i async for i in client.iter_instances(page_size=2)]) == 4
    assert len(route.calls) == 2


async def test_iter_instances_without_total_stops_on_short_page(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("GET", "/gpu/instances", paged([f"i{n}" for n in range(5)], send_total=False))
    assert len([i async for i in client.iter_instances(page_size=2)]) == 5
    assert len(route.calls) == 3


async def test_iter_instances_stops_when_server_ignores_page_number(novita: FakeNovita, client: NovitaClient) -> None:
    ids = [f"i{n}" for n in range(6)]
    route = novita.route("GET", "/gpu/instances", paged(ids, send_total=False, honour_page=False))
    assert [i.id async for i in client.iter_instances(page_size=2)] == ["i0", "i1"]
    assert len(route.calls) == 2


async def test_listing_again_reuses_unchanged_instances_and_reads_changed_ones(
    novita: FakeNovita, client: NovitaClient
) -> None:
    statuses = {"a": "running", "b": "pulling"}
    novita.route(
        "GET",
        "/gpu/instances",
        lambda call: Reply(json={"instances": [{"id": k, "status": v} for k, v in statuses.items()], "total": 2}),
    )
    first = {i.id: i async for i in client.iter_instances()}
    statuses["b"] = "running"
    second = {i.id: i async for i in client.iter_instances()}
    assert second["a"] is first["a"]  # byte for byte the same: parsed once
    assert (first["b"].status, second["b"].status) == ("pulling", "running")
    with pytest.raises(ValidationError):
        second["a"].status = "exited"  # shared between listings, so nobody may change it
    novita.route(
        "GET",
        "/gpu/instances",
        # NaN: orjson refuses the page, Python's json reads it and keeps 2**70 exact, which orjson cannot
        # serialise again: that item is validated without the memo.
        Reply(json={"instances": [{"id": "huge", "status": "running", "n": 2**70, "x": float("nan")}], "total": 1}),
    )
    assert [(i.id, i.status) async for i in client.iter_instances()] == [("huge", "running")]


async def test_iter_listed_fetches_pages_a_few_at_a_time_and_keeps_only_what_a_reconciler_compares(
    novita: FakeNovita, client: NovitaClient
) -> None:
    ids = [f"i{n}" for n in range(23)]
    route = novita.route("GET", "/gpu/instances", paged(ids))
    listed = [i async for i in client.iter_listed(page_size=3, concurrency=4)]
    assert [i.id for i in listed] == ids
    assert sorted(int(c.params["pageNum"]) for c in route.calls) == list(range(1, 9))  # 8 pages, none twice
    assert listed[0] == Listed("i0", "", "running", "", False)


async def test_iter_listed_without_a_total_walks_one_page_at_a_time(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("GET", "/gpu/instances", paged([f"i{n}" for n in range(5)], send_total=False))
    assert len([i async for i in client.iter_listed(page_size=2, concurrency=4)]) == 5
    assert [c.params["pageNum"] for c in route.calls] == ["1", "2", "3"]


async def test_iter_listed_stops_when_server_ignores_page_number(novita: FakeNovita, client: NovitaClient) -> None:
    ids = [f"i{n}" for n in range(6)]
    novita.route("GET", "/gpu/instances", paged(ids, honour_page=False))
    assert [i.id async for i in client.iter_listed(page_size=2, concurrency=4)] == ["i0", "i1"]


async def test_listed_reads_novita_loose_types_as_instance_does(novita: FakeNovita, client: NovitaClient) -> None:
    items = [
        {"id": 17, "name": None, "status": "exited", "statusError": {"state": "", "message": "disk full"}},
        {"id": "b", "name": "x-1", "status": "running", "statusError": {}, "spotReclaimTime": "1764000000"},
        {"id": "c", "status": "", "statusError": "", "spotStatus": None, "spotReclaimTime": "-1"},
        {"id": "d", "status": "running", "spotStatus": "notified", "spotReclaimTime": 1764000030},
    ]
    novita.route("GET", "/gpu/instances", Reply(json={"instances": items, "total": "4"}))
    assert [i async for i in client.iter_listed()] == [
        Listed("17", "", "exited", "disk full", False),
        Listed("b", "x-1", "running", "", True, "", 1764000000),
        Listed("c", "", "", "", False),
        Listed("d", "", "running", "", True, "notified", 1764000030),
    ]
    full = [i async for i in client.iter_instances()]
    assert [Listed.of(i) for i in full] == [i async for i in client.iter_listed()]
    novita.route("GET", "/gpu/instances", Reply(json={"instances": [{"id": "d", "status": ["?"]}], "total": 1}))
    with pytest.raises(UpstreamUnavailable) as caught:
        [i async for i in client.iter_listed()]
    assert "status" in caught.value.message


async def test_malformed_listed_instance_fails_without_echoing_values(novita: FakeNovita, client: NovitaClient) -> None:
    items = [{"id": "ok"}, {"id": "bad", "gpuNum": "lots", "envs": [{"key": "T", "value": "envsecret"}]}]
    novita.route("GET", "/gpu/instances", Reply(json={"instances": items, "total": 2}))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.list_instances_page()
    assert "gpuNum" in caught.value.message and "envsecret" not in str(caught.value)
    novita.route("GET", "/gpu/instances", Reply(json={"instances": "nope", "total": 1}))
    with pytest.raises(UpstreamUnavailable):
        await client.list_instances_page()


async def test_proxy_from_the_environment_is_used_for_novita(
    novita: FakeNovita, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and NO_PROXY are honoured as curl would honour them."""
    proxy = await FakeNovita(prefix="").start()
    try:
        through_proxy = proxy.route("GET", "/gpu-instance/openapi/v1/clusters", Reply(json={"data": []}))
        direct = novita.route("GET", "/clusters", Reply(json={"data": []}))
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        async with NovitaClient(novita.url, KEY, max_attempts=1) as client:
            assert await client.list_clusters() == []
        assert [c.headers["host"] for c in through_proxy.calls] == [f"127.0.0.1:{novita.port}"]
        assert direct.calls == []
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with NovitaClient(novita.url, KEY, max_attempts=1) as client:
            assert await client.list_clusters() == []
        assert len(direct.calls) == 1 and len(through_proxy.calls) == 1
    finally:
        await proxy.stop()


# ---- retries -------------------------------------------------------------------------------------


async def test_idempotent_call_retries_5xx_then_succeeds(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps, observed: Observed
) -> None:
    # aiohttp repeats an idempotent request once by itself when the connection drops: drop it twice.
    dropped = [DISCONNECT, DISCONNECT]
    novita.route("GET", "/clusters", [envelope(503, "UNKNOWN", "busy"), *dropped, Reply(json={"data": []})])
    assert await client.list_clusters() == []
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)
    assert observed == [
        ("clusters.list", "server_error"),
        ("clusters.list", "network_error"),
        ("clusters.list", "ok"),
    ]


async def test_retry_after_seconds_and_http_date_are_honoured(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps
) -> None:
    novita.route(
        "POST",
        "/gpu/instance/stop",
        [
            envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "7"}),
            envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}),
            Reply(json={}),
        ],
    )
    await client.stop_instance("abc")
    assert sleeps == [7.0, 0.0]


async def test_retry_after_is_capped_at_the_remaining_deadline(novita: FakeNovita, sleeps: Sleeps) -> None:
    route = novita.route(
        "GET", "/gpu/instances", envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "3600"})
    )
    async with NovitaClient(novita.url, KEY, retry_deadline=10.0, max_attempts=50, sleep=sleeps) as client:
        with pytest.raises(RateLimited) as caught:
            await client.list_instances_page()
    assert caught.value.retry_after == 3600.0
    assert len(sleeps) == 1 and 9.0 < sleeps[0] <= 10.0
    assert len(route.calls) == 2


async def test_deadline_bounds_the_total_wait(novita: FakeNovita, sleeps: Sleeps) -> None:
    novita.route("GET", "/clusters", envelope(503, "", "down", **{"Retry-After": "4"}))
    async with NovitaClient(novita.url, KEY, retry_deadline=10.0, max_attempts=50, sleep=sleeps) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.list_clusters()
    assert sleeps[:2] == [4.0, 4.0] and len(sleeps) == 3 and sum(sleeps) <= 10.0


async def test_max_attempts_then_upstream_unavailable(novita: FakeNovita, client: NovitaClient, sleeps: Sleeps) -> None:
    route = novita.route("GET", "/gpu/instance", HANG)
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get_instance("abc")
    assert len(route.calls) == 4 and len(sleeps) == 3
    assert caught.value.reason == "TIMEOUT" and caught.value.status == 0


async def test_client_errors_are_never_retried(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps, observed: Observed
) -> None:
    route = novita.route("GET", "/products", envelope(400, "VALIDATOR_PARAM", "gpuNum out of range"))
    with pytest.raises(BadRequest) as caught:
        await client.list_products(gpu_num=99)
    assert len(route.calls) == 1 and sleeps == []
    assert observed == [("products.list", "client_error")]
    assert caught.value.reason == "VALIDATOR_PARAM"


# ---- create is never repeated blindly ------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        envelope(500, "UNKNOWN", "internal"),
        Reply(502, text="<html>bad gateway</html>"),
        HANG,
        DISCONNECT,
        Reply(json={"code": 503, "reason": "UNKNOWN", "message": "busy"}),
    ],
)
async def test_create_failure_after_sending_is_ambiguous(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps, failure: Reply
) -> None:
    route = novita.route("POST", "/gpu/instance/create", [failure, Reply(json={"id": "x"})])
    with pytest.raises(AmbiguousCreate) as caught:
        await client.create_instance(create_request("ng-42"))
    assert caught.value.name == "ng-42"
    assert len(route.calls) == 1 and sleeps == []


async def test_create_retries_after_a_429(novita: FakeNovita, client: NovitaClient) -> None:
    limited = envelope(429, "RATE_LIMIT_EXCEEDED", "slow down", **{"Retry-After": "2"})
    route = novita.route("POST", "/gpu/instance/create", [limited, Reply(json={"id": "new"})])
    assert await client.create_instance(create_request()) == "new"
    assert len(route.calls) == 2


async def test_create_retries_when_no_connection_could_be_made() -> None:
    """Nothing listens at first (refused: Novita cannot have acted); it starts during the client's wait."""
    novita = FakeNovita(port=free_port())
    route = novita.route("POST", "/gpu/instance/create", Reply(json={"id": "new"}))

    async def start_listening(_seconds: float) -> None:
        await novita.start()

    try:
        async with NovitaClient(novita.url, KEY, sleep=start_listening) as client:
            assert await client.create_instance(create_request()) == "new"
    finally:
        await novita.stop()
    assert len(route.calls) == 1


def test_only_failures_before_sending_count_as_not_sent() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("novita.test", 443, True, True, None, None, None)
    not_sent = [aiohttp.ClientConnectorError(key, OSError(111, "refused")), aiohttp.ConnectionTimeoutError()]
    sent = [aiohttp.ServerDisconnectedError(), aiohttp.SocketTimeoutError(), aiohttp.ClientPayloadError()]
    assert all(isinstance(exc, NOT_SENT) for exc in not_sent)
    assert not any(isinstance(exc, NOT_SENT) for exc in sent)


async def test_create_without_id_in_answer_is_ambiguous(novita: FakeNovita, client: NovitaClient) -> None:
    novita.route("POST", "/gpu/instance/create", Reply(json={}))
    with pytest.raises(AmbiguousCreate) as caught:
        await client.create_instance(create_request("ng-7"))
    assert caught.value.name == "ng-7"


async def test_create_business_errors_are_typed(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("POST", "/gpu/instance/create", envelope(400, "INSUFFICIENT_RESOURCE", "no 4090 left"))
    with pytest.raises(InsufficientResource):
        await client.create_instance(create_request())
    assert len(route.calls) == 1


async def test_create_connect_errors_exhausted_are_not_ambiguous(sleeps: Sleeps) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/gpu-instance/openapi"
    async with NovitaClient(nowhere, KEY, max_attempts=3, sleep=sleeps) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.create_instance(create_request())
    assert not isinstance(caught.value, AmbiguousCreate)
    assert caught.value.reason == "NETWORK_ERROR" and len(sleeps) == 2


# ---- bodies that are not Novita's envelope ---------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected", "fragment"),
    [
        (
            Reply(401, text="<html>401 Authorization Required</html>"),
            Unauthorized,
            "Authorization Required",
        ),
        (Reply(404), NotFound, "empty body"),
        (Reply(400, json=["weird"]), BadRequest, "non-Novita body"),
        (Reply(502, text="<html>bad gateway</html>"), UpstreamUnavailable, "bad gateway"),
        (Reply(200, text="<html>captive portal</html>"), UpstreamUnavailable, "JSON object"),
        (Reply(200, json={"data": "nope"}), UpstreamUnavailable, "list"),
        (
            Reply(200, json={"code": 400, "reason": "VALIDATOR_PARAM", "message": "bad"}),
            BadRequest,
            "bad",
        ),
    ],
)
async def test_non_envelope_answers_map_to_typed_errors(
    novita: FakeNovita, response: Reply, expected: type[NovitaError], fragment: str
) -> None:
    novita.route("GET", "/clusters", response)
    async with NovitaClient(novita.url, KEY, max_attempts=1) as client:
        with pytest.raises(expected) as caught:
            await client.list_clusters()
    assert fragment in caught.value.message


async def test_malformed_fields_fail_without_echoing_values(novita: FakeNovita, client: NovitaClient) -> None:
    novita.route(
        "GET",
        "/gpu/instance",
        Reply(json={"id": "abc", "gpuNum": "lots", "envs": [{"key": "T", "value": "envsecret"}]}),
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
        Reply(401, json={"code": 401, "reason": "UNAUTHORIZED", "message": f"bad key Bearer {KEY}"}),
        Reply(403, text=f"<html>denied for Authorization: Bearer {KEY}</html>"),
        Reply(503, text=f"upstream saw {KEY}", headers={"Retry-After": "1"}),
        DISCONNECT,
    ],
)
async def test_api_key_never_in_errors_reprs_or_logs(novita: FakeNovita, client: NovitaClient, failure: Reply) -> None:
    novita.route("GET", "/clusters", [failure] * 4)
    with capture_logs() as logs, pytest.raises(NovitaError) as caught:
        await client.list_clusters()
    assert not leaked(caught.value, logs)
    assert KEY not in repr(client)


async def test_retries_are_logged_without_the_key(novita: FakeNovita, client: NovitaClient) -> None:
    novita.route("GET", "/clusters", [envelope(503, "", "busy"), Reply(json={"data": []})])
    with capture_logs() as logs:
        await client.list_clusters()
    [entry] = [e for e in logs if e["event"] == "novita.retry"]
    assert (entry["endpoint"], entry["attempt"], entry["outcome"]) == ("clusters.list", 1, "server_error")
    assert "wait" in entry and KEY not in repr(logs)


async def test_empty_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        NovitaClient("https://novita.test/gpu-instance/openapi", "")


# ---- registry auths and network storage --------------------------------------------------------------


async def test_create_registry_auth_finds_the_new_id_by_listing(
    novita: FakeNovita, client: NovitaClient, observed: Observed
) -> None:
    old = {"id": "old", "name": "hub", "username": "me", "password": "pw0"}
    new = {"id": "75irlsvvsehnqdajg2r481mjk54ecodc", "name": "hub", "username": "me", "password": "pw1"}
    novita.route("GET", "/repository/auths", [Reply(json={"data": [old]}), Reply(json={"data": [old, new]})])
    save = novita.route("POST", "/repository/auth/save", Reply(json={}))
    auth = await client.create_registry_auth("hub", "me", "pw1")
    assert auth.id == new["id"]
    assert save.calls[0].json() == {"name": "hub", "username": "me", "password": "pw1"}
    assert ("registry_auths.create", "ok") in observed
    delete = novita.route("POST", "/repository/auth/delete", Reply(json={}))
    await client.delete_registry_auth(auth.id)
    assert delete.calls[0].json() == {"id": auth.id}


async def test_a_failed_registry_auth_save_is_not_repeated(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps
) -> None:
    novita.route("GET", "/repository/auths", Reply(json={"data": []}))
    save = novita.route("POST", "/repository/auth/save", [envelope(500, "UNKNOWN", "x"), Reply(json={})])
    with pytest.raises(UpstreamUnavailable):
        await client.create_registry_auth("hub", "me", "pw")
    assert len(save.calls) == 1 and sleeps == []


async def test_network_storage_list_create_update_delete(novita: FakeNovita, client: NovitaClient) -> None:
    item = {"storageId": "d4e8", "storageName": "data", "storageSize": 10, "clusterId": "5", "clusterName": "EU-01"}
    listing = novita.route("GET", "/networkstorages/list", Reply(json={"data": [item], "total": 1}))
    page = await client.list_network_storages(page_size=20, storage_name="data")
    assert [s.id for s in page.storages] == ["d4e8"] and page.total == 1
    assert listing.calls[0].params == {"pageNo": "1", "pageSize": "20", "storageName": "data"}

    create = novita.route("POST", "/networkstorage/create", Reply(json="d4e8"))  # a bare JSON string
    assert await client.create_network_storage("5", "data", 10) == "d4e8"
    assert create.calls[0].json() == {"clusterId": "5", "storageName": "data", "storageSize": 10}

    update = novita.route("POST", "/networkstorage/update", Reply(json={}))
    await client.update_network_storage("d4e8", "data", 20)
    assert update.calls[0].json() == {"storageId": "d4e8", "storageName": "data", "storageSize": 20}
    delete = novita.route("POST", "/networkstorage/delete", Reply(json={}))
    await client.delete_network_storage("d4e8")
    assert delete.calls[0].json() == {"storageId": "d4e8"}


@pytest.mark.parametrize("answer", [{"storageId": "d4e8"}, {"id": "d4e8"}, {}])
async def test_network_storage_create_takes_an_object_or_looks_the_name_up(
    novita: FakeNovita, client: NovitaClient, answer: dict[str, str]
) -> None:
    novita.route("POST", "/networkstorage/create", Reply(json=answer))
    other = {"storageId": "zzz", "storageName": "data", "clusterId": "1"}
    mine = {"storageId": "d4e8", "storageName": "data", "clusterId": "5"}
    novita.route("GET", "/networkstorages/list", Reply(json={"data": [other, mine], "total": 2}))
    assert await client.create_network_storage("5", "data", 10) == "d4e8"


async def test_create_instance_sends_registry_auth_and_mounts(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("POST", "/gpu/instance/create", Reply(json={"id": "i1"}))
    request = create_request().model_copy(
        update={"image_auth_id": "auth1", "network_storages": [NetworkStorageMount(id="d4e8", mount_point="/data")]}
    )
    await client.create_instance(request)
    sent = route.calls[0].json()
    assert sent["imageAuthId"] == "auth1" and sent["networkStorages"] == [{"Id": "d4e8", "mountPoint": "/data"}]


@pytest.mark.parametrize("node", [[{"maxRootfsSize": 500}], {"maxRootfsSize": 500}])
async def test_get_instance_reads_node_in_either_shape(novita: FakeNovita, client: NovitaClient, node: object) -> None:
    novita.route("GET", "/gpu/instance", Reply(json={"id": "abc", "status": "running", "node": node}), instanceId="abc")
    instance = await client.get_instance("abc")
    assert instance.node is not None and instance.node.max_rootfs_size == 500


def test_text_the_store_cannot_hold_is_replaced_in_novitas_answers() -> None:
    """A lone surrogate or a NUL from Novita (valid JSON) must never make a later write fail."""
    assert decode(b'{"a": "\\udc00x", "b": ["x\\u0000y"], "\\ud800": 1, "ok": "\\ud83d\\ude00"}') == {
        "a": "\ufffdx",
        "b": ["x\ufffdy"],
        "\ufffd": 1,
        "ok": "\U0001f600",
    }


async def test_idle_connections_are_dropped_before_the_emulator_server_drops_them(client: NovitaClient) -> None:
    """A create written on a connection the server is closing that instant gets no answer and stays in doubt
    until STARTUP_TIMEOUT (about 1 in 10,000 creates when aiohttp kept idle connections 15 s against
    uvicorn's 5 s): the client gives idle connections up first."""
    server_idle_limit = uvicorn.Config(app=None).timeout_keep_alive  # what the emulator and our service use
    assert server_idle_limit > KEEPALIVE_SECONDS
    connector = client._transport._http.connector
    assert isinstance(connector, aiohttp.TCPConnector)
    assert connector._keepalive_timeout == KEEPALIVE_SECONDS


# ---- migrate and jobs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "moved_to", "job_id"),
    [
        (Reply(json={"instanceId": "abc", "state": "migrating", "jobId": "j1"}), "abc", "j1"),
        (Reply(json={"instanceId": "abc", "newInstanceId": "def", "message": "ok"}), "def", ""),
        (Reply(json={}), "abc", ""),
        (Reply(), "abc", ""),  # no body at all
        (Reply(json="accepted"), "abc", ""),  # a bare string
    ],
)
async def test_migrate_reads_whatever_novita_answers(
    novita: FakeNovita, client: NovitaClient, answer: Reply, moved_to: str, job_id: str
) -> None:
    route = novita.route("POST", "/gpu/instance/migrate", answer)
    migration = await client.migrate_instance("abc")
    assert (migration.instance_id, migration.moved_to, migration.job_id) == ("abc", moved_to, job_id)
    assert route.calls[-1].json() == {"instanceId": "abc"}


@pytest.mark.parametrize("failure", [envelope(503, "SERVICE_UNAVAILABLE", "busy"), DISCONNECT])
async def test_migrate_is_not_sent_again_once_novita_may_have_acted(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps, failure: Reply
) -> None:
    route = novita.route("POST", "/gpu/instance/migrate", [failure, Reply(json={})])
    with pytest.raises(UpstreamUnavailable):
        await client.migrate_instance("abc")
    assert len(route.calls) == 1 and sleeps == []


async def test_migrate_is_retried_after_a_429(novita: FakeNovita, client: NovitaClient, sleeps: Sleeps) -> None:
    route = novita.route(
        "POST", "/gpu/instance/migrate", [envelope(429, "RATE_LIMIT_EXCEEDED", "slow down"), Reply(json={})]
    )
    assert (await client.migrate_instance("abc")).moved_to == "abc"
    assert len(route.calls) == 2 and len(sleeps) == 1


async def test_list_jobs_sends_the_documented_query(novita: FakeNovita, client: NovitaClient) -> None:
    job = {"Id": "j1", "type": "instanceMigrate", "state": {"state": "success"}, "instanceId": "abc"}
    route = novita.route("GET", "/jobs", Reply(json={"jobs": [job], "total": 1}))
    page = await client.list_jobs(
        page_num=2,
        page_size=20,
        job_id="j1",
        state="success",
        type="instanceMigrate",
        start_time=1711995567.9,
        end_time=1711999999,
        creators=["u1", "u2"],
    )
    assert [(j.id, j.state, j.instance_id) for j in page.jobs] == [("j1", "success", "abc")]
    assert route.calls[-1].params == {
        "pageNum": "2",
        "pageSize": "20",
        "jobId": "j1",
        "state": "success",
        "type": "instanceMigrate",
        "startTime": "1711995567",
        "endTime": "1711999999",
        "creators": "u1,u2",
    }
    assert [j.id async for j in client.iter_jobs()] == ["j1"]
    assert route.calls[-1].params == {"pageNum": "1", "pageSize": "100"}
