"""Emulator realism for warm pools: pull time follows the image's size, an image already on the node or
prewarmed in the cluster pulls fast, a start skips the pull, and a start can be refused for capacity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator import validation as v
from novita_gpu.emulator.state_file import StateFile
from novita_gpu.emulator.world import World
from novita_gpu.kit.clock import ManualClock
from tests.emulator.conftest import Emulator, create_body, ok_json

T = EmulatorConfig().timings
BIG = "ghcr.io/team/trainer:2.1"  # 15 GB below: 150 s at the default 0.1 GB/s
TO_PULLING = T.to_create + T.creating


def truth(emu: Emulator, instance_id: str) -> dict[str, Any]:
    return ok_json(emu.http.get(f"/_emulator/instances/{instance_id}"))


def durations(emu: Emulator, instance_id: str) -> list[tuple[str, float]]:
    """Each phase of the instance's history so far and how long it lasted (the current one: until now)."""
    history = truth(emu, instance_id)["history"]
    ends = [h["at"] for h in history[1:]] + [emu.clock.now().timestamp()]
    return [(h["status"], round(end - h["at"], 3)) for h, end in zip(history, ends, strict=True)]


def pulling_seconds(emu: Emulator, instance_id: str) -> float:
    return dict(durations(emu, instance_id))["pulling"]


def set_images(emu: Emulator, **settings: Any) -> dict[str, Any]:
    return ok_json(emu.http.put("/_emulator/images", json=settings))


def prewarm(emu: Emulator, image: str = BIG, cluster: str = "1", **body: Any) -> str:
    task_id: str = ok_json(emu.api.post("/image/prewarm", json={"imageUrl": image, "clusterId": cluster, **body}))["id"]
    return task_id


def task(emu: Emulator, task_id: str) -> dict[str, Any]:
    return next(t for t in ok_json(emu.api.get("/image/prewarm"))["data"] if t["id"] == task_id)


# --- pull time follows the image's size -------------------------------------------------------------


def test_a_15_gb_image_pulls_for_150_s_and_an_unsized_one_as_before(emu: Emulator) -> None:
    assert set_images(emu, sizesGb={BIG: 15})["sizesGb"] == {BIG: 15}
    big = emu.create(imageUrl=BIG, clusterId="1")
    small = emu.create(clusterId="2", productId="3090.16c92g")  # pytorch/pytorch:latest has no size: timings.pulling
    emu.advance(TO_PULLING + 149.9)
    assert (emu.status(big), emu.status(small)) == ("pulling", "running")
    emu.advance(0.1)
    assert emu.status(big) == "running"
    assert pulling_seconds(emu, big) == 150
    assert pulling_seconds(emu, small) == T.pulling


def test_pull_time_is_divided_by_the_speed_and_set_in_the_configuration(
    make_emulator: Callable[..., Emulator],
) -> None:
    emu = make_emulator(speed=10, images={"sizes_gb": {BIG: 15}, "pull_gb_per_second": 0.5})
    instance_id = emu.create(imageUrl=BIG)
    emu.advance(10)
    assert pulling_seconds(emu, instance_id) == 3  # 15 GB / 0.5 GB/s / 10
    assert emu.status(instance_id) == "running"


def test_a_default_size_applies_to_every_image_not_listed(emu: Emulator) -> None:
    set_images(emu, defaultSizeGb=2, pullGbPerSecond=0.2)
    instance_id = emu.create()
    emu.advance(TO_PULLING + 10)
    assert pulling_seconds(emu, instance_id) == 10


# --- images already on the node ----------------------------------------------------------------------


def test_a_create_on_a_node_holding_its_image_pulls_in_about_a_second(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15}, nodesPerCluster=1)
    first = emu.create(imageUrl=BIG, clusterId="1")
    emu.advance(TO_PULLING + 150)
    second = emu.create(imageUrl=BIG, clusterId="1")
    other_cluster = emu.create(imageUrl=BIG, clusterId="2", productId="3090.16c92g")
    emu.advance(TO_PULLING + 1)
    assert emu.status(second) == "running"
    assert (truth(emu, first)["node"], truth(emu, second)["node"]) == (0, 0)
    assert pulling_seconds(emu, second) == 1
    assert emu.status(other_cluster) == "pulling"  # another cluster's node: cold
    images = ok_json(emu.http.get("/_emulator/node-images"))["nodeImages"]
    assert {(i["clusterId"], i["node"], i["imageUrl"]) for i in images} == {("1", 0, BIG), ("2", 0, BIG)}


def test_a_create_on_a_node_still_pulling_its_image_waits_for_that_pull(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15}, nodesPerCluster=1)
    emu.create(imageUrl=BIG, clusterId="1")
    emu.advance(100)
    second = emu.create(imageUrl=BIG, clusterId="1")
    emu.advance(TO_PULLING + 60)
    # the first pull ends 3 + 150 s after the first create: 50 s after the second began to pull
    assert pulling_seconds(emu, second) == pytest.approx(TO_PULLING + 150 - 100 - TO_PULLING)


def test_creates_go_round_robin_over_the_clusters_nodes(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15}, nodesPerCluster=2)
    first, second = emu.create(imageUrl=BIG, clusterId="1"), emu.create(imageUrl=BIG, clusterId="1")
    emu.advance(TO_PULLING + 150)
    third = emu.create(imageUrl=BIG, clusterId="1")
    emu.advance(TO_PULLING + 1)
    assert [truth(emu, i)["node"] for i in (first, second, third)] == [0, 1, 0]
    assert [pulling_seconds(emu, i) for i in (first, second, third)] == [150, 150, 1]


# --- a start skips the pull ---------------------------------------------------------------------------


def test_a_start_after_a_stop_has_no_pulling(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15})
    instance_id = emu.create(imageUrl=BIG)
    emu.advance(TO_PULLING + 150)
    assert emu.action("stop", instance_id).status_code == 200
    emu.advance(T.to_stop + T.stopping)
    assert emu.action("start", instance_id).status_code == 200
    emu.advance(T.to_start + T.starting - 0.1)
    assert emu.status(instance_id) == "starting"
    emu.advance(0.1)
    assert emu.status(instance_id) == "running"
    after_stop = [status for status, _ in durations(emu, instance_id)][4:]
    assert after_stop == ["toStop", "stopping", "exited", "toStart", "starting", "running"]


# --- a start refused for capacity ---------------------------------------------------------------------


def stopped(emu: Emulator, name: str = "test-instance") -> str:
    instance_id = emu.create(name=name)
    emu.advance(TO_PULLING + T.pulling)
    assert emu.action("stop", instance_id).status_code == 200
    emu.advance(T.to_stop + T.stopping)
    return instance_id


def assert_refused(emu: Emulator, instance_id: str) -> None:
    refused = emu.action("start", instance_id)
    assert refused.status_code == 400
    assert refused.json()["reason"] == "INSUFFICIENT_RESOURCE" and refused.json()["code"] == 400
    assert emu.status(instance_id) == "exited"


def test_a_start_refused_for_one_instance_once(emu: Emulator) -> None:
    first, second = stopped(emu, "first"), stopped(emu, "second")
    answer = ok_json(emu.http.put("/_emulator/start-refusals", json={"instanceIds": [first, first]}))
    assert answer == {"instanceIds": [first], "next": 0}
    assert emu.action("start", second).status_code == 200  # not listed: starts
    assert_refused(emu, first)
    assert ok_json(emu.http.get("/_emulator/start-refusals")) == {"instanceIds": [], "next": 0}
    assert emu.action("start", first).status_code == 200  # used up


def test_the_next_n_starts_are_refused(emu: Emulator) -> None:
    first, second = stopped(emu, "first"), stopped(emu, "second")
    emu.http.put("/_emulator/start-refusals", json={"next": 2})
    assert_refused(emu, first)
    assert_refused(emu, first)  # the second refusal
    assert emu.action("start", second).status_code == 200
    assert ok_json(emu.http.get("/_emulator/start-refusals"))["next"] == 0


def test_a_start_that_is_not_allowed_uses_no_refusal(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.http.put("/_emulator/start-refusals", json={"next": 1})
    emu.advance(TO_PULLING + T.pulling)
    conflict = emu.action("start", instance_id)  # running: invalid state change, not a capacity refusal
    assert (conflict.status_code, conflict.json()["reason"]) == (400, "CONFLICT")
    assert ok_json(emu.http.get("/_emulator/start-refusals"))["next"] == 1
    assert ok_json(emu.http.put("/_emulator/start-refusals", json={"next": 0}))["next"] == 0


def test_start_refusals_are_validated_and_reset(emu: Emulator) -> None:
    for body in ({"next": -1}, {"next": "2"}, {"instanceIds": "abc"}, {"instanceIds": [""]}, {"other": 1}):
        bad = emu.http.put("/_emulator/start-refusals", json=body)
        assert (bad.status_code, bad.json()["reason"]) == (400, "VALIDATOR_PARAM"), body
    unknown = emu.http.put("/_emulator/start-refusals", json={"instanceIds": ["0123456789abcdef"]})
    assert unknown.status_code == 404
    emu.http.put("/_emulator/start-refusals", json={"next": 3})
    emu.http.post("/_emulator/reset")
    assert ok_json(emu.http.get("/_emulator/start-refusals")) == {"instanceIds": [], "next": 0}


# --- prewarm ------------------------------------------------------------------------------------------


def test_a_prewarm_follows_the_images_size_and_then_cold_creates_pull_fast(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15})
    task_id = prewarm(emu)
    assert task(emu, task_id)["state"] == "Pending"
    assert task(emu, task_id)["imageSize"] == str(15 * 1024**3)
    emu.advance(T.prewarm_pending)
    assert task(emu, task_id)["state"] == "Running"
    emu.advance(149.9)
    assert task(emu, task_id)["state"] == "Running"
    emu.advance(0.1)
    assert task(emu, task_id)["state"] == "Succeeded"

    warm = emu.create(imageUrl=BIG, clusterId="1")
    cold = emu.create(imageUrl=BIG, clusterId="2", productId="3090.16c92g")  # prewarmed in cluster 1 only
    emu.advance(TO_PULLING + 150)
    assert (pulling_seconds(emu, warm), pulling_seconds(emu, cold)) == (1, 150)
    assert truth(emu, warm)["node"] == 0  # a node no instance pulled the image on before


def test_a_create_during_a_prewarm_waits_for_it_and_a_deleted_prewarm_no_longer_counts(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15}, nodesPerCluster=4)
    task_id = prewarm(emu)
    emu.advance(T.prewarm_pending + 100)
    during = emu.create(imageUrl=BIG, clusterId="1")
    emu.advance(TO_PULLING + 150)
    assert pulling_seconds(emu, during) == pytest.approx(50 - TO_PULLING)
    assert ok_json(emu.api.post("/image/prewarm/delete", json={"ids": [task_id]})) == {}
    after = emu.create(imageUrl=BIG, clusterId="1")  # node 1: nothing pulled there
    emu.advance(TO_PULLING + 150)
    assert pulling_seconds(emu, after) == 150


def test_a_prewarm_for_some_products_counts_for_those_only(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 15})
    prewarm(emu, productIds=["3090.16c92g"])
    emu.advance(T.prewarm_pending + 150)
    on_4090 = emu.create(imageUrl=BIG, clusterId="1")
    on_3090 = emu.create(imageUrl=BIG, clusterId="1", productId="3090.16c92g")
    emu.advance(TO_PULLING + 150)
    assert (pulling_seconds(emu, on_4090), pulling_seconds(emu, on_3090)) == (150, 1)


def test_an_image_above_the_quotas_size_cannot_be_prewarmed(emu: Emulator) -> None:
    set_images(emu, sizesGb={BIG: 60})
    refused = emu.api.post("/image/prewarm", json={"imageUrl": BIG, "clusterId": "1"})
    assert (refused.status_code, refused.json()["reason"]) == (400, "IMAGE_TOO_LARGE")


# --- the settings -------------------------------------------------------------------------------------


def test_image_settings_read_update_and_reset(emu: Emulator) -> None:
    defaults = {
        "sizesGb": {},
        "defaultSizeGb": None,
        "pullGbPerSecond": 0.1,
        "cachedPullSeconds": 1.0,
        "nodesPerCluster": 16,
    }
    assert ok_json(emu.http.get("/_emulator/images")) == defaults
    changed = set_images(emu, sizesGb={BIG: 15}, cachedPullSeconds=2)
    assert changed == {**defaults, "sizesGb": {BIG: 15.0}, "cachedPullSeconds": 2.0}
    assert set_images(emu, pullGbPerSecond=0.2)["sizesGb"] == {BIG: 15.0}  # partial: the sizes stay
    for body in (
        {"sizesGb": {BIG: 0}},
        {"sizesGb": {"": 1}},
        {"pullGbPerSecond": 0},
        {"nodesPerCluster": 0},
        {"cachedPullSeconds": -1},
        {"unknown": 1},
    ):
        bad = emu.http.put("/_emulator/images", json=body)
        assert (bad.status_code, bad.json()["reason"]) == (400, "VALIDATOR_PARAM"), body
    emu.http.post("/_emulator/reset")
    assert ok_json(emu.http.get("/_emulator/images")) == defaults


def test_nodes_images_and_settings_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    first = World(EmulatorConfig(), clock, StateFile(tmp_path / "emu.db"))
    first.set_image_settings({"sizesGb": {BIG: 15}, "nodesPerCluster": 1})
    auths = {a.id for a in first.catalog.registry_auths}
    pulled = first.create(v.create_request(create_body(imageUrl=BIG, clusterId="1"), auths))
    clock.advance(TO_PULLING + 150)

    second = World(EmulatorConfig(), clock, StateFile(tmp_path / "emu.db"))
    assert second.image_settings().sizes_gb == {BIG: 15}
    assert second.node_images() == first.node_images()
    again = second.create(v.create_request(create_body(imageUrl=BIG, clusterId="1"), auths))
    assert (pulled.node, again.node) == (0, 0)
    pulling = next(p for p in again.phases if p.status == "pulling")
    running = next(p for p in again.phases if p.status == "running")
    assert running.at - pulling.at == 1
