"""Finite capacity per (cluster, product) and spot reclaim."""

from __future__ import annotations

from collections.abc import Callable

from tests.emulator.conftest import Emulator


def set_capacity(emu: Emulator, cluster_id: str, product_id: str, gpus: int) -> None:
    response = emu.http.put(
        "/_emulator/capacity", json={"clusterId": cluster_id, "productId": product_id, "gpus": gpus}
    )
    assert response.status_code == 200, response.text


def available(emu: Emulator, product_id: str) -> bool:
    products = emu.api.get("/products", params={"productName": "4090"}).json()["data"]
    return bool(next(p for p in products if p["id"] == product_id)["availableDeploy"])


def test_capacity_is_held_while_running_and_released_when_exited(emu: Emulator) -> None:
    set_capacity(emu, "1", "4090.16c62g", 3)
    first = emu.create(gpuNum=2)
    emu.create(gpuNum=1)
    assert not available(emu, "4090.16c62g")
    full = emu.api.post("/gpu/instance/create", json={**_body(), "gpuNum": 1})
    assert full.status_code == 400 and full.json()["reason"] == "INSUFFICIENT_RESOURCE"

    emu.advance(10)
    emu.action("stop", first)
    emu.advance(2.9)
    assert not available(emu, "4090.16c62g")  # still stopping
    emu.advance(0.1)
    assert available(emu, "4090.16c62g")  # exited instances hold nothing
    taker = emu.create(gpuNum=2)

    refused = emu.action("start", first)
    assert refused.status_code == 400 and refused.json()["reason"] == "INSUFFICIENT_RESOURCE"
    emu.action("delete", taker)
    emu.advance(2)  # removed
    assert emu.action("start", first).status_code == 200


def test_sold_out_product_cannot_be_created(emu: Emulator) -> None:
    response = emu.api.post("/gpu/instance/create", json={**_body(), "productId": "4090.16c62g.mtl"})
    assert response.status_code == 400 and response.json()["reason"] == "INSUFFICIENT_RESOURCE"


def test_capacity_control_api(emu: Emulator) -> None:
    capacity = emu.http.get("/_emulator/capacity").json()["capacity"]
    assert {"clusterId": "1", "productId": "4090.16c62g", "gpus": 96, "used": 0} in capacity
    bad = emu.http.put("/_emulator/capacity", json={"clusterId": "5", "productId": "4090.16c62g", "gpus": 1})
    assert bad.status_code == 400
    assert emu.http.put("/_emulator/capacity", json={"clusterId": "1"}).status_code == 400


def test_250_single_gpu_4090s_fit_across_clusters(emu: Emulator) -> None:
    offers = [p for p in emu.api.get("/products", params={"productName": "RTX 4090"}).json()["data"]]
    capacity = {
        (c["clusterId"], c["productId"]): c["gpus"] for c in emu.http.get("/_emulator/capacity").json()["capacity"]
    }
    assert sum(gpus for (_, product), gpus in capacity.items() if product in {p["id"] for p in offers}) >= 250


def test_without_cluster_id_a_cluster_with_room_is_chosen(emu: Emulator) -> None:
    set_capacity(emu, "1", "3090.16c92g", 0)
    instance = emu.get(emu.create(productId="3090.16c92g"))
    assert instance["clusterId"] == "2" and instance["clusterName"] == "US-TX-04"


def test_spot_reclaim(emu: Emulator) -> None:
    """Novita's warning first: `notified` for the notice (30 s), the instance still running and
    `spotReclaimTime` the stop to come; then `reclaiming` (stopping), then `terminated` (exited)."""
    instance_id = emu.create(billingMode="spot")
    on_demand = emu.create()
    emu.advance(10)
    assert emu.http.post(f"/_emulator/instances/{on_demand}/reclaim").status_code == 400
    response = emu.http.post(f"/_emulator/instances/{instance_id}/reclaim")
    assert response.status_code == 200 and response.json()["spotStatus"] == "notified"
    reclaim_time = emu.get(instance_id)["spotReclaimTime"]
    assert reclaim_time == str(int(emu.clock.now().timestamp()) + 30)
    seen = []
    for delay in (0, 29.9, 0.1, 2):
        emu.advance(delay)
        instance = emu.get(instance_id)
        seen.append((instance["spotStatus"], instance["status"], instance["spotReclaimTime"]))
    assert seen == [
        ("notified", "running", reclaim_time),
        ("notified", "running", reclaim_time),
        ("reclaiming", "stopping", reclaim_time),
        ("terminated", "exited", reclaim_time),
    ]
    assert emu.action("start", instance_id).status_code == 200
    emu.advance(5)
    instance = emu.get(instance_id)
    assert (instance["status"], instance["spotStatus"], instance["spotReclaimTime"]) == ("running", "running", "0")


def test_a_spot_create_beyond_the_capacity_set_is_refused(emu: Emulator) -> None:
    """Spot instances draw on the (cluster, product) GPUs that `PUT /_emulator/capacity` sets, as every
    billing mode does [INF: Novita publishes no separate spot pool]."""
    set_capacity(emu, "1", "4090.16c62g", 2)
    emu.create(billingMode="spot", gpuNum=2, clusterId="1")
    refused = emu.api.post("/gpu/instance/create", json={**_body(), "billingMode": "spot", "clusterId": "1"})
    assert refused.status_code == 400 and refused.json()["reason"] == "INSUFFICIENT_RESOURCE"
    capacity = emu.http.get("/_emulator/capacity").json()["capacity"]
    assert {"clusterId": "1", "productId": "4090.16c62g", "gpus": 2, "used": 2} in capacity


def test_random_spot_reclaim_rate(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(faults={"spot_reclaim_per_hour": 3600.0})  # about one reclaim per emulated second
    ids = [emu.create(billingMode="spot") for _ in range(3)]
    on_demand = emu.create()
    emu.advance(10 + 60)
    assert {emu.get(i)["spotStatus"] for i in ids} == {"terminated"}
    assert emu.status(on_demand) == "running"


def _body() -> dict[str, object]:
    return {"productId": "4090.16c62g", "gpuNum": 1, "rootfsSize": 60, "imageUrl": "img", "kind": "gpu"}
