"""Contract: NovitaClient against the real emulator over loopback HTTP.

Every endpoint, every error kind the emulator can produce, pagination, the status machine driven by
a shared ManualClock, retries under injected 429/5xx/dropped connections, and create never being
repeated once Novita may have acted on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.novita import (
    AmbiguousCreate,
    BadRequest,
    CreateInstanceRequest,
    EnvVar,
    InsufficientResource,
    InvalidStateChange,
    NotFound,
    NovitaClient,
    NovitaInstance,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)
from tests.fixtures.novita_client import Observed, Sleeps
from tests.fixtures.novita_emulator import KEY, Emulator, serve

TIMINGS = EmulatorConfig().timings
CREATE_PATH = "POST /gpu/instance/create"


def request(name: str = "ng-contract", **overrides: Any) -> CreateInstanceRequest:
    fields: dict[str, Any] = {
        "name": name,
        "product_id": "4090.16c62g",
        "gpu_num": 1,
        "rootfs_size": 60,
        "image_url": "pytorch/pytorch:latest",
        "ports": "8888/http,22/tcp",
        "envs": [EnvVar(key="HF_TOKEN", value="hf_secret_value")],
        "command": "python -m http.server 8888",
    }
    fields.update(overrides)
    return CreateInstanceRequest(**fields)


async def named(client: NovitaClient, name: str) -> list[NovitaInstance]:
    return [i async for i in client.iter_instances(name=name) if i.name == name]


async def walk(emu: Emulator, client: NovitaClient, instance_id: str, steps: list[tuple[float, str]]) -> None:
    """Advance the emulator's clock by each delay and check the status the client reads."""
    for delay, expected in steps:
        emu.clock.advance(delay)
        assert (await client.get_instance(instance_id)).status == expected, f"after +{delay}s"


# ---- catalog -----------------------------------------------------------------------------------


async def test_clusters_and_products(client: NovitaClient) -> None:
    clusters = await client.list_clusters()
    by_name = {c.name: c for c in clusters}
    assert "US-CA-06" in by_name and "RTX 4090 24GB" in by_name["US-CA-06"].available_gpu_types
    assert by_name["AS-SGP-02"].support_network_storage is False

    products = await client.list_products(cluster_id=by_name["US-CA-06"].id, gpu_num=1)
    product = next(p for p in products if p.id == "4090.16c62g")
    assert (product.price, product.spot_price) == (35000, 17500)  # spotPrice arrives as a string
    assert product.price_per_gpu_hour_usd("onDemand") == pytest.approx(0.35)
    assert product.regions == ["US-CA-06"] and product.available_deploy is True
    assert product.min_root_fs == 10 and product.max_root_fs >= 1000
    assert product.monthly_price and product.monthly_price[0].month == 1

    spot = await client.list_products(billing_method="spot", product_name="4090")
    assert spot and all("spot" in p.billing_methods and p.spot_price > 0 for p in spot)
    assert "4090.16c62g.sg" not in {p.id for p in spot}  # no spot offer there


async def test_templates_pages_get_and_not_found(client: NovitaClient) -> None:
    first = await client.list_templates(page_size=2)
    assert first.total == 3 and len(first.templates) == 2
    every = [t async for t in client.iter_templates(page_size=1)]
    assert [t.id for t in every] == ["101", "102", "104"]
    private = await client.list_templates(channel="private", is_my_community=True)
    assert [t.name for t in private.templates] == ["my-private-app"]

    template = await client.get_template("101")
    assert template.image.startswith("pytorch/") and template.rootfs_size == 60
    assert [(p.type, p.ports) for p in template.ports] == [("http", [8888]), ("tcp", [22])]
    assert template.created_at is not None
    assert {e.key for e in template.envs} == {"JUPYTER_TOKEN", "PYTHONUNBUFFERED"}
    with pytest.raises(NotFound):
        await client.get_template("999")


async def test_registry_auths_hide_passwords_in_repr(client: NovitaClient) -> None:
    auths = await client.list_registry_auths()
    assert len(auths) == 2 and all(len(a.id) == 32 and a.password for a in auths)
    assert all(a.password not in repr(auths) for a in auths)


# ---- instances: fields, pagination, status machine -----------------------------------------------


async def test_created_instance_fields_in_get_and_list(emu: Emulator, client: NovitaClient) -> None:
    instance_id = await client.create_instance(request("ng-fields"))
    assert len(instance_id) == 16

    got = await client.get_instance(instance_id)
    assert (got.name, got.product_id, got.kind, got.billing_mode) == ("ng-fields", "4090.16c62g", "gpu", "onDemand")
    assert (got.gpu_num, got.cpu_num, got.memory, got.rootfs_size) == (1, 16, 62, 60)
    assert got.cluster_id and got.cluster_name == "US-CA-06"
    assert got.status == "toCreate" and got.status_error is None
    assert (got.spot_status, got.spot_reclaim_time, got.end_time) == ("", 0, None)
    assert isinstance(got.created_at, datetime)
    assert got.created_at.timestamp() == int(emu.clock.now().timestamp())
    assert got.envs == [EnvVar(key="HF_TOKEN", value="hf_secret_value")]
    assert "hf_secret_value" not in repr(got)
    assert {(m.port, m.type) for m in got.port_mappings} == {(8888, "http"), (22, "tcp")}
    assert all(m.endpoint for m in got.port_mappings)  # get carries endpoints
    assert got.connect_component_ssh is not None and got.connect_component_ssh.ssh_command.startswith("ssh ")
    assert got.connect_component_ssh.password not in repr(got)
    assert got.connect_component_jupyter is not None and got.connect_component_jupyter.port == 8888

    [listed] = (await client.list_instances_page(name="ng-fields")).instances
    assert listed.id == instance_id and listed.gpu_num == 1
    assert all(m.endpoint is None for m in listed.port_mappings)  # list does not


async def test_pagination_walks_more_than_one_page(client: NovitaClient) -> None:
    ids = {await client.create_instance(request(f"ng-page-{n}")) for n in range(5)}
    await client.create_instance(request("other-0"))

    page = await client.list_instances_page(page_size=2, name="ng-page-")
    assert page.total == 5 and len(page.instances) == 2
    last = await client.list_instances_page(page_size=2, page_num=3, name="ng-page-")
    assert len(last.instances) == 1
    assert {i.id async for i in client.iter_instances(name="ng-page-", page_size=2)} == ids
    assert len([i async for i in client.iter_instances(page_size=4)]) == 6
    assert [i.name async for i in client.iter_instances(status="toCreate", name="other")] == ["other-0"]


async def test_full_status_machine(emu: Emulator, client: NovitaClient) -> None:
    t = TIMINGS
    instance_id = await client.create_instance(request("ng-life"))
    await walk(
        emu,
        client,
        instance_id,
        [(0, "toCreate"), (t.to_create, "creating"), (t.creating, "pulling"), (t.pulling, "running")],
    )
    running = await client.get_instance(instance_id)
    assert running.last_started_at is not None

    await client.stop_instance(instance_id)
    await walk(emu, client, instance_id, [(0, "toStop"), (t.to_stop, "stopping"), (t.stopping, "exited")])
    await client.start_instance(instance_id)
    await walk(emu, client, instance_id, [(0, "toStart"), (t.to_start, "starting"), (t.starting, "running")])
    await client.restart_instance(instance_id)
    await walk(emu, client, instance_id, [(0, "toRestart"), (t.to_restart, "restarting"), (t.restarting, "running")])
    await client.delete_instance(instance_id)
    await client.delete_instance(instance_id)  # repeating a delete is harmless
    await walk(emu, client, instance_id, [(0, "toRemove"), (t.to_remove, "removing"), (t.removing, "removed")])

    emu.clock.advance(EmulatorConfig().removed_visible_seconds)
    with pytest.raises(NotFound):
        await client.get_instance(instance_id)
    with pytest.raises(NotFound):
        await client.start_instance(instance_id)


async def test_spot_reclaim_fields(emu: Emulator, client: NovitaClient) -> None:
    t = TIMINGS
    instance_id = await client.create_instance(request("ng-spot", billing_mode="spot"))
    emu.clock.advance(t.to_create + t.creating + t.pulling)
    assert (await client.get_instance(instance_id)).spot_status == "running"

    reclaimed_at = int(emu.clock.now().timestamp() + t.spot_notice)  # the stop to come, shown from the notice on
    emu.reclaim(instance_id)
    notified = await client.get_instance(instance_id)
    assert (notified.status, notified.spot_status, notified.spot_reclaim_time) == ("running", "notified", reclaimed_at)
    emu.clock.advance(t.spot_notice + t.spot_reclaiming)
    gone = await client.get_instance(instance_id)
    assert (gone.status, gone.spot_status, gone.spot_reclaim_time) == ("exited", "terminated", reclaimed_at)


# ---- error kinds ---------------------------------------------------------------------------------


async def test_business_errors_are_typed_and_not_retried(emu: Emulator, client: NovitaClient, sleeps: Sleeps) -> None:
    instance_id = await client.create_instance(request("ng-errors"))
    with pytest.raises(InvalidStateChange):
        await client.start_instance(instance_id)  # toCreate, not exited
    with pytest.raises(InvalidStateChange):
        await client.stop_instance(instance_id)
    with pytest.raises(NotFound):
        await client.get_instance("0000000000000000")
    with pytest.raises(NotFound):
        await client.stop_instance("0000000000000000")
    with pytest.raises(BadRequest) as bad_gpus:
        await client.create_instance(request("ng-bad", gpu_num=9))
    assert bad_gpus.value.reason == "VALIDATOR_PARAM"
    with pytest.raises(BadRequest):
        await client.create_instance(request("ng-bad", ports="2222/tcp"))
    with pytest.raises(BadRequest):
        await client.list_products(gpu_num=99)
    monthly = await client.create_instance(request("ng-monthly", billing_mode="monthly", month=1))
    with pytest.raises(BadRequest) as prepaid:
        await client.delete_instance(monthly)
    assert prepaid.value.reason == "PREPAID_INSTANCE_NOT_SUPPORT_RELEASE"
    assert sleeps == []


async def test_insufficient_resource(emu: Emulator, client: NovitaClient) -> None:
    emu.set_capacity("1", "4090.16c62g", 1)
    products = await client.list_products(cluster_id="1", gpu_num=2, product_name="RTX 4090")
    assert [p.available_deploy for p in products if p.id == "4090.16c62g"] == [False]
    with pytest.raises(InsufficientResource):
        await client.create_instance(request("ng-big", gpu_num=2, cluster_id="1"))
    assert emu.stats()[CREATE_PATH] == 1


async def test_wrong_key_is_unauthorized_and_not_leaked(emu: Emulator) -> None:
    wrong = "sk_wrong_key_that_must_not_leak"
    async with NovitaClient(emu.base_url, wrong) as client:
        with pytest.raises(Unauthorized) as caught:
            await client.list_clusters()
    assert all(wrong not in text for text in (str(caught.value), repr(caught.value), repr(caught.value.args)))


async def test_not_found_as_http_404_is_also_not_found() -> None:
    server, emulator = serve(EmulatorConfig(api_keys=[KEY], not_found_status=404))
    try:
        async with NovitaClient(emulator.base_url, KEY) as client:
            with pytest.raises(NotFound) as caught:
                await client.get_instance("0000000000000000")
        assert caught.value.status == 404
    finally:
        emulator.control.close()
        server.stop_thread()


# ---- retries under injected faults ---------------------------------------------------------------


async def test_rate_limit_is_retried_after_retry_after(
    emu: Emulator, client: NovitaClient, sleeps: Sleeps, observed: Observed
) -> None:
    emu.faults(rate_limit_rate=1.0, retry_after_seconds=2)
    sleeps.then = lambda n: emu.faults(rate_limit_rate=0.0) if n == 2 else None
    assert await client.list_clusters()
    assert sleeps == [2.0, 2.0]
    assert observed == [("clusters.list", "rate_limited")] * 2 + [("clusters.list", "ok")]


async def test_server_errors_and_dropped_connections_are_retried(
    emu: Emulator, client: NovitaClient, sleeps: Sleeps, observed: Observed
) -> None:
    instance_id = await client.create_instance(request("ng-retry"))
    emu.faults(server_error_rate=1.0)
    next_faults: list[dict[str, float]] = [{"server_error_rate": 0.0, "drop_rate": 1.0}, {"drop_rate": 0.0}]
    sleeps.then = lambda n: emu.faults(**next_faults[n - 1])
    assert (await client.get_instance(instance_id)).id == instance_id
    assert [o for _, o in observed[-3:]] == ["server_error", "network_error", "ok"]
    assert len(sleeps) == 2 and all(0 <= w <= 1.0 for w in sleeps)


async def test_retries_stop_at_max_attempts(emu: Emulator, client: NovitaClient, sleeps: Sleeps) -> None:
    emu.faults(server_error_rate=1.0)
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.stop_instance("0000000000000000")
    assert caught.value.status in (500, 503)
    assert emu.stats()["POST /gpu/instance/stop"] == 4 and len(sleeps) == 3


async def test_persistent_rate_limit_surfaces_retry_after(emu: Emulator, client: NovitaClient) -> None:
    emu.faults(rate_limit_rate=1.0, retry_after_seconds=3)
    with pytest.raises(RateLimited) as caught:
        await client.list_instances_page()
    assert caught.value.retry_after == 3.0


async def test_timeouts_of_idempotent_calls_are_retried_then_reported(emu: Emulator, observed: Observed) -> None:
    emu.faults(latency_ms=400)
    async with NovitaClient(emu.base_url, KEY, timeout=0.1, max_attempts=2, observer=observed, sleep=Sleeps()) as c:
        with pytest.raises(UpstreamUnavailable) as caught:
            await c.list_clusters()
    assert caught.value.reason == "TIMEOUT"
    assert observed == [("clusters.list", "timeout")] * 2


# ---- create is never repeated blindly -------------------------------------------------------------


@pytest.mark.parametrize(("mode", "created"), [("after", 1), ("before", 0)])
async def test_create_5xx_is_ambiguous_and_sent_once(
    emu: Emulator, client: NovitaClient, sleeps: Sleeps, mode: str, created: int
) -> None:
    emu.faults(create_failures=1, create_failure_mode=mode)
    with pytest.raises(AmbiguousCreate) as caught:
        await client.create_instance(request("ng-ambiguous"))
    assert caught.value.name == "ng-ambiguous" and caught.value.status == 500
    assert emu.stats()[CREATE_PATH] == 1 and sleeps == []
    assert len(await named(client, "ng-ambiguous")) == created  # what the caller checks next


@pytest.mark.parametrize("fault", [{"server_error_rate": 1.0}, {"drop_rate": 1.0}])
async def test_create_under_gateway_faults_is_ambiguous(
    emu: Emulator, client: NovitaClient, fault: dict[str, float]
) -> None:
    emu.faults(**fault)
    with pytest.raises(AmbiguousCreate):
        await client.create_instance(request("ng-faulted"))
    assert emu.stats()[CREATE_PATH] == 1


async def test_create_read_timeout_is_ambiguous_and_sent_once(emu: Emulator) -> None:
    emu.faults(latency_ms=300)
    async with NovitaClient(emu.base_url, KEY, timeout=0.1, sleep=Sleeps()) as slow:
        with pytest.raises(AmbiguousCreate) as caught:
            await slow.create_instance(request("ng-slow"))
    assert (caught.value.reason, caught.value.name) == ("TIMEOUT", "ng-slow")
    assert emu.stats()[CREATE_PATH] == 1


async def test_create_rate_limited_is_retried_once_safe(emu: Emulator, client: NovitaClient, sleeps: Sleeps) -> None:
    emu.faults(rate_limit_rate=1.0, retry_after_seconds=1)
    sleeps.then = lambda n: emu.faults(rate_limit_rate=0.0)
    instance_id = await client.create_instance(request("ng-429"))
    assert sleeps == [1.0] and emu.stats()[CREATE_PATH] == 2
    assert [i.id for i in await named(client, "ng-429")] == [instance_id]
