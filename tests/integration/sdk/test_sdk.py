"""The Python SDK against the real service and emulator over loopback HTTP, as a user drives it.

The sync client runs in a worker thread (the service is served by the test loop); the async client is
awaited directly. One service serves the module (each test uses its own instance names); tests that
need other settings start their own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from novita_gpu.kit.serving import free_port
from novita_gpu_client import (
    ApiError,
    AsyncClient,
    Client,
    InstanceFailed,
    RetryPolicy,
    ServiceConnectionError,
    WaitTimeout,
    verify_webhook,
)
from novita_gpu_client.signing import signature_headers
from tests.fixtures.live_service import LiveService, live_service

PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
API_KEY = "sk-sdk-test-key-0123456789"

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_create_wait_for_ready_then_get_by_id_and_name(live: LiveService, client: Client) -> None:
    created = await asyncio.to_thread(client.create, "sdk-one", PRODUCT, TEMPLATE, auto_stop_minutes=45)
    assert created["status"] == "creating" and created["name"] == "sdk-one"
    instance_id = created["instanceId"]

    ready = await live.while_driving(lambda: client.wait_for(instance_id, timeout=30))
    assert ready["status"] == "ready" and ready["connectionDetails"]["ports"]

    by_id = await asyncio.to_thread(client.get, instance_id)
    by_name = await asyncio.to_thread(client.get_by_name, "sdk-one")
    assert by_id["instanceId"] == by_name["instanceId"] == instance_id
    assert by_id["autoStop"]["idleMinutes"] == 45
    # Already there: the wait answers at once.
    assert (await asyncio.to_thread(client.wait_for, instance_id, timeout=5))["status"] == "ready"


async def test_wait_for_times_out_on_an_instance_that_is_not_ready(live: LiveService, client: Client) -> None:
    created = await asyncio.to_thread(client.create, "slow", PRODUCT, TEMPLATE)
    with pytest.raises(WaitTimeout) as caught:
        await live.while_clock_moves(lambda: client.wait_for(created["instanceId"], timeout=0.3, poll_timeout=0.1))
    assert caught.value.instance["status"] == "creating"
    assert isinstance(caught.value, TimeoutError) and "still creating" in str(caught.value)


async def test_retried_create_makes_one_instance(live: LiveService, client: Client) -> None:
    first = await asyncio.to_thread(client.create, "once", PRODUCT, TEMPLATE, idempotency_key="retry-me")
    again = await asyncio.to_thread(client.create, "once", PRODUCT, TEMPLATE, idempotency_key="retry-me")
    assert again["instanceId"] == first["instanceId"]
    with pytest.raises(ApiError) as conflict:
        await asyncio.to_thread(client.create, "other", PRODUCT, TEMPLATE, idempotency_key="retry-me")
    assert conflict.value.status == 409 and conflict.value.code == "IDEMPOTENCY_CONFLICT"
    # Without a key of the caller's, each create gets its own: a second create of a taken name is refused.
    with pytest.raises(ApiError) as taken:
        await asyncio.to_thread(client.create, "once", PRODUCT, TEMPLATE)
    assert taken.value.code == "NAME_TAKEN"
    await live.harness.tick(3)
    assert [i["name"] for i in live.harness.live_upstream() if i["name"].startswith("once-")] == [
        f"once-{first['instanceId'][5:13]}"
    ]


async def test_list_pages_and_iterates_over_every_page(live: LiveService, client: Client) -> None:
    ids = []
    for i in range(5):
        live.harness.clock.advance(1)  # distinct creation times: newest first is then exactly reversed order
        ids.append((await asyncio.to_thread(client.create, f"page-{i}", PRODUCT, TEMPLATE))["instanceId"])
    page = await asyncio.to_thread(client.list_instances, limit=2)
    assert len(page["instances"]) == 2 and page["nextCursor"] and page["total"] >= 5
    following = await asyncio.to_thread(client.list_instances, limit=2, cursor=page["nextCursor"])
    assert {i["instanceId"] for i in following["instances"]}.isdisjoint(i["instanceId"] for i in page["instances"])

    every = await asyncio.to_thread(lambda: [i["instanceId"] for i in client.iter_instances(page_size=2)])
    assert len(every) == len(set(every)) == page["total"]
    assert every[:5] == ids[::-1]  # newest first, each once
    named = await asyncio.to_thread(lambda: list(client.iter_instances(name="page-3")))
    assert [i["instanceId"] for i in named] == [ids[3]]
    creating = await asyncio.to_thread(lambda: [i["instanceId"] for i in client.iter_instances(status="creating")])
    assert set(ids) <= set(creating)
    settled = await asyncio.to_thread(lambda: list(client.iter_instances(status=["ready", "stopped"])))
    assert not set(ids) & {i["instanceId"] for i in settled}


async def test_stop_start_and_delete_by_id_and_by_name(live: LiveService, client: Client) -> None:
    h = live.harness
    instance_id = (await h.create(name="actions"))["instanceId"]
    await h.until_status(instance_id, "ready")

    stopping = await asyncio.to_thread(client.stop_by_name, "actions")
    assert stopping["status"] == "stopping" and stopping["operationId"]
    await h.until_status(instance_id, "stopped")
    assert (await asyncio.to_thread(client.stop, instance_id))["status"] == "stopped"  # already: 200

    assert (await asyncio.to_thread(client.start, instance_id))["status"] == "starting"
    await h.until_status(instance_id, "ready")
    assert (await asyncio.to_thread(client.start_by_name, "actions"))["status"] == "ready"

    assert (await asyncio.to_thread(client.delete_by_name, "actions"))["status"] == "terminating"
    await h.until_status(instance_id, "terminated")
    assert (await asyncio.to_thread(client.delete, instance_id))["status"] == "terminated"
    with pytest.raises(InstanceFailed) as ended:
        await asyncio.to_thread(client.wait_for, instance_id, timeout=5)
    assert ended.value.instance["status"] == "terminated" and "not ready" in str(ended.value)


async def test_touch_events_sync_catalog_and_service_calls(live: LiveService, client: Client) -> None:
    h = live.harness
    instance_id = (await h.create(name="misc", autoStopMinutes=30))["instanceId"]
    await h.until_status(instance_id, "ready")

    touched = await asyncio.to_thread(client.touch, instance_id)
    assert touched["instanceId"] == instance_id and touched["autoStop"]["stopsAt"] > touched["lastUsedAt"]
    events = (await asyncio.to_thread(client.events, instance_id))["events"]
    assert events[0]["to"] == "creating" and events[-1]["to"] == "ready"
    assert set(await asyncio.to_thread(client.sync)) >= {"claimed", "changed", "ready"}

    products = (await asyncio.to_thread(client.products, "4090"))["products"]
    assert any(p["productName"] == PRODUCT for p in products)
    templates = (await asyncio.to_thread(client.templates))["templates"]
    assert any(t["name"] == TEMPLATE for t in templates)
    assert (await asyncio.to_thread(client.health))["status"] in ("healthy", "degraded")
    assert (await asyncio.to_thread(client.autostop_stats))["watched"] >= 1
    assert "wouldStop" in await asyncio.to_thread(client.autostop_trigger)
    assert "requests" in await asyncio.to_thread(client.metrics)
    assert "products" in (await asyncio.to_thread(client.cache_stats))["caches"]
    assert "products" in (await asyncio.to_thread(client.clear_cache, "products"))["cleared"]


async def test_async_client_mirrors_the_sync_one(live: LiveService) -> None:
    async with live.async_client() as client:
        created = await client.create("async-one", PRODUCT, TEMPLATE, labels={"team": "ml"}, envs={"MODE": "fast"})
        waiter = asyncio.create_task(client.wait_for(created["instanceId"], timeout=30))
        await live.harness.until_status(created["instanceId"], "ready")
        ready = await asyncio.wait_for(waiter, 10)
        assert ready["labels"] == {"team": "ml"} and "MODE" in ready["envKeys"]
        assert (await client.get_by_name("async-one"))["instanceId"] == created["instanceId"]
        assert [i["name"] async for i in client.iter_instances(name="async-one", page_size=1)] == ["async-one"]
        assert len([i async for i in client.iter_instances(page_size=1)]) == (await client.list_instances())["total"]
        assert (await client.stop(created["instanceId"]))["status"] == "stopping"
        with pytest.raises(ApiError) as missing:
            await client.touch("inst_missing")
        assert missing.value.code == "INSTANCE_NOT_FOUND"


async def test_error_answers_raise_api_error_with_code_and_request_id(client: Client) -> None:
    with pytest.raises(ApiError) as missing:
        await asyncio.to_thread(client.get, "inst_does_not_exist")
    assert missing.value.status == 404 and missing.value.code == "INSTANCE_NOT_FOUND"
    assert missing.value.request_id and missing.value.request_id in str(missing.value)

    with pytest.raises(ApiError) as invalid:
        await asyncio.to_thread(lambda: client.create("not a valid name!", PRODUCT, TEMPLATE, gpu_num=99))
    assert invalid.value.status == 400 and invalid.value.code == "VALIDATION_ERROR"
    assert {d["field"] for d in invalid.value.details} == {"name", "gpuNum"}

    with pytest.raises(ApiError) as unknown:
        await asyncio.to_thread(client.create, "x", PRODUCT, "no-such-template")
    assert unknown.value.status == 400 and unknown.value.code == "UNKNOWN_TEMPLATE"
    with pytest.raises(ApiError) as nameless:
        await asyncio.to_thread(client.get_by_name, "nobody")
    assert nameless.value.status == 404
    with pytest.raises(ApiError) as bad_wait:
        await asyncio.to_thread(client.wait_for, "inst_x", "sleeping")
    assert bad_wait.value.code == "VALIDATION_ERROR"
    with pytest.raises(TypeError, match="gpus"):
        client.create("x", PRODUCT, TEMPLATE, gpus=2)  # type: ignore[call-arg]


async def test_path_segments_cannot_reach_other_routes(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        await asyncio.to_thread(client.get, "../sync")
    assert caught.value.status == 404


async def test_only_retryable_calls_are_sent_again(tmp_path: Path) -> None:
    async with live_service(tmp_path, novita_retry_deadline_seconds=0.05) as live:
        live.harness.faults(server_error_rate=1.0)
        policy = RetryPolicy(attempts=3, backoff=0.01, max_delay=0.02)
        with Client(live.url, retry=policy) as client:
            with pytest.raises(ApiError) as unavailable:
                await asyncio.to_thread(client.products)
            assert unavailable.value.status == 503 and unavailable.value.retry_after == 5
            with pytest.raises(ApiError):
                await asyncio.to_thread(client.create, "retried", PRODUCT, TEMPLATE)  # keyed: retried too
            with pytest.raises(ApiError):
                await asyncio.to_thread(client.get, "inst_missing")  # a 404 is an answer, never retried
        by_route = (await live.harness.http.get("/api/metrics")).json()["requests"]["byRoute"]
        assert by_route["/api/products"]["count"] == 3
        assert by_route["/api/instances"]["count"] == 3
        assert by_route["/api/instances/{instance_id}"]["count"] == 1


async def test_api_key_is_sent_and_never_shown(tmp_path: Path) -> None:
    async with live_service(tmp_path, api_key=API_KEY) as live:
        with live.client(api_key=None) as anonymous, live.client(api_key="wrong-key") as wrong, live.client() as good:
            for client in (anonymous, wrong):
                with pytest.raises(ApiError) as refused:
                    await asyncio.to_thread(client.list_instances)
                assert refused.value.status == 401 and refused.value.code == "UNAUTHORIZED"
            assert (await asyncio.to_thread(good.list_instances))["total"] == 0
            with pytest.raises(ApiError) as missing:
                await asyncio.to_thread(good.get, "inst_missing")
            assert API_KEY not in repr(good) and API_KEY not in str(good.__dict__)
            assert API_KEY not in str(missing.value) and API_KEY not in repr(missing.value)
            assert repr(good) == f"Client(base_url='{live.url}', api_key=set)"
        async with live.async_client() as async_client:
            assert (await async_client.list_instances())["total"] == 0
            assert API_KEY not in repr(async_client)


async def test_unreachable_service_raises_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Client(url, retry=RetryPolicy(attempts=2, backoff=0.01)) as client,
        pytest.raises(ServiceConnectionError) as sync,
    ):
        client.health()
    assert isinstance(sync.value, ConnectionError) and url in str(sync.value)
    async with AsyncClient(url, retry=RetryPolicy(attempts=1)) as async_client:
        with pytest.raises(ServiceConnectionError):
            await async_client.create("x", PRODUCT, TEMPLATE)


async def test_webhook_verification_is_reexported() -> None:
    body = b'{"event":"instance.ready"}'
    headers = signature_headers(["whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="], "msg_1", 1_700_000_000, body)
    assert verify_webhook("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=", headers, body, now=1_700_000_010)
    assert not verify_webhook("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=", headers, body + b" ", now=1_700_000_010)


async def test_str_of_an_api_error_says_which_field_and_why(client: Client) -> None:
    with pytest.raises(ApiError) as invalid:
        await asyncio.to_thread(client.create, "not valid!", PRODUCT, TEMPLATE)
    text = str(invalid.value)
    assert text.startswith("VALIDATION_ERROR: name: String should match pattern ")
    assert text.endswith(f"(HTTP 400, request {invalid.value.request_id})")
    assert invalid.value.message == "The request is invalid; see details."  # the server's, unchanged
    with pytest.raises(ApiError) as unknown:
        await asyncio.to_thread(client.create, "sdk-tpl", PRODUCT, "no-such-template")
    assert str(unknown.value).startswith("UNKNOWN_TEMPLATE: templateId: No template with id or name 'no-such")


async def test_labels_filter_and_every_create_option_reach_the_service(live: LiveService, client: Client) -> None:
    novita = live.harness.services.client
    auth = await novita.create_registry_auth("sdk-registry", "bot", "secret")
    storage_id = await novita.create_network_storage("5", "sdk-data", 50)
    created = await asyncio.to_thread(
        lambda: client.create(
            "sdk-labelled",
            PRODUCT,
            TEMPLATE,
            labels={"team": "sdk", "tier": "gold"},
            region="EU-01",
            strict_region=True,
            image_auth_id=auth.id,
            network_storages=[{"id": storage_id, "mountPoint": "/data"}],
        )
    )
    assert created["imageAuthId"] == auth.id
    assert created["networkStorages"] == [{"id": storage_id, "mountPoint": "/data"}]
    await asyncio.to_thread(client.create, "sdk-other", PRODUCT, TEMPLATE, labels={"team": "sdk"})
    gold = await asyncio.to_thread(lambda: list(client.iter_instances(labels={"team": "sdk", "tier": "gold"})))
    assert [i["name"] for i in gold] == ["sdk-labelled"]
    page = await asyncio.to_thread(lambda: client.list_instances(labels={"team": "sdk"}))
    assert sorted(i["name"] for i in page["instances"]) == ["sdk-labelled", "sdk-other"]


async def test_a_url_without_a_scheme_is_fixed_for_loopback_and_refused_elsewhere() -> None:
    for given, used in [
        ("localhost:3000", "http://localhost:3000"),
        ("127.0.0.2:3000/", "http://127.0.0.2:3000"),
        ("[::1]:3000", "http://[::1]:3000"),
        ("https://gpu.example.com/", "https://gpu.example.com"),
    ]:
        with Client(given) as client:
            assert client.base_url == used
    with pytest.raises(ValueError, match=r"'gpu\.example\.com' has no scheme: write https://gpu\.example\.com"):
        Client("gpu.example.com")
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        AsyncClient("ftp://gpu.example.com")
