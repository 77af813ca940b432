"""Volumes' costs over HTTP: a volume (a Novita network storage) bills from its creation to its deletion,
mounted or not, at its price for the whole volume, and GET /api/costs, GET /api/budget and budget
enforcement count it as they count instances. Volumes and their billing ledger are written into the store
as the volume service writes them (an open stretch on the row, closed ones in volume_billing_periods), on
the harness's clock; then a user asks over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from novita_gpu.costs.schemas import BudgetAnswer, CostsAnswer
from novita_gpu.kit.tables import Volume, VolumeBillingPeriod
from novita_gpu.web.auth import owner_id
from tests.fixtures.live_service import live_service
from tests.harness import SEED_BODY, Harness
from tests.integration.cli.test_cli import invoke, ok

ALICE, BOB, ROOT = "alice-key-0123456789", "bob-key-0123456789", "root-key-0123456789"
HOUR = 3600.0
REGION = "US-CA-06"


def per_hour(novita_price: str) -> float:
    """What the volume service stores: Novita's storage price is in 1/100000 USD per hour (docs/costs.md)."""
    return int(novita_price) / 100000


def key(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def add_volume(
    h: Harness,
    volume_id: str,
    *,
    owner: str = "default",
    size_gb: int = 1000,
    price: str = "10000",
    since: datetime | None,
    periods: Sequence[tuple[int, str, datetime, datetime]] = (),
    status: str = "available",
) -> None:
    """A volume row (billing since `since`, None: not billing) and its closed periods (size, price, from, to)."""
    now = h.clock.now()
    async with h.services.db.write() as session:
        session.add(
            Volume(
                id=volume_id,
                owner=owner,
                name=f"data-{volume_id[-4:]}",
                upstream_name=f"data-{volume_id[-4:]}-0123abcd",
                status=status,
                storage_id=f"ns-{volume_id[-8:]}",
                cluster_id="cluster-1",
                region=REGION,
                size_gb=size_gb,
                price_per_hour=per_hour(price),
                adopted=False,
                action_attempts=0,
                billing_since=since,
                created_at=periods[0][2] if periods else (since or now),
                updated_at=now,
                deleted_at=now if status == "deleted" else None,
                version=1,
            )
        )
        for period_size, period_price, started_at, ended_at in periods:
            session.add(
                VolumeBillingPeriod(
                    volume_id=volume_id,
                    owner=owner,
                    volume_name=f"data-{volume_id[-4:]}",
                    region=REGION,
                    size_gb=period_size,
                    price_per_hour=per_hour(period_price),
                    started_at=started_at,
                    ended_at=ended_at,
                )
            )


async def costs(h: Harness, as_key: str | None = None, /, **params: str) -> dict[str, Any]:
    response = await h.http.get("/api/costs", params=params, headers=key(as_key) if as_key else {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    CostsAnswer.model_validate(body)
    return body


def row(report: dict[str, Any], row_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in report["instances"] if r["instanceId"] == row_id]
    assert len(found) == 1, (row_id, report["instances"])
    return found[0]


def close_to_the_cent(got: float, expected: float) -> bool:
    return abs(got - expected) < 0.005


async def test_a_volume_billed_for_an_hour_costs_its_hourly_price(harness: Harness) -> None:
    h = harness
    start = h.clock.now()
    await add_volume(h, "vol_00000000000000000001", since=start)
    h.clock.advance(HOUR)

    report = await costs(h, **{"from": iso(start), "to": iso(h.clock.now())})
    line = row(report, "vol_00000000000000000001")
    assert line["kind"] == "volume" and line["volumeId"] == "vol_00000000000000000001"
    assert (line["region"], line["sizeGb"], line["pricePerHour"]) == (REGION, 1000, 0.1)
    assert line["billedSeconds"] == HOUR and line["billedHours"] == 1 and line["billingNow"] is True
    assert round(line["costUsd"], 2) == 0.10 and close_to_the_cent(line["costUsd"], 0.1)
    assert (line["productName"], line["gpuNum"], line["labels"], line["apiKey"]) == (
        "network-storage",
        0,
        {},
        "default",
    )
    assert report["totalUsd"] == report["volumesUsd"] == line["costUsd"] and report["instancesUsd"] == 0
    assert (report["billedHours"], report["gpuHours"], report["volumeHours"]) == (0, 0, 1)  # instance hours apart
    [group] = report["groups"]
    assert group == {
        "key": "network-storage",
        "costUsd": line["costUsd"],
        "billedHours": 0.0,
        "gpuHours": 0.0,
        "instances": 0,
        "volumeHours": 1.0,
        "volumes": 1,
    }

    # Clipped to the period as instance stretches are: half of it inside, and up to now when `to` is later.
    half = await costs(h, **{"from": iso(start + timedelta(minutes=30)), "to": iso(start + timedelta(hours=5))})
    assert close_to_the_cent(row(half, "vol_00000000000000000001")["costUsd"], 0.05)
    assert row(half, "vol_00000000000000000001")["billedSeconds"] == HOUR / 2
    assert (await costs(h))["totalUsd"] == line["costUsd"]  # the default period: this month so far


async def test_a_resized_volume_sums_both_prices_and_a_deleted_one_stops_at_its_deletion(
    store_harness: Harness,
) -> None:
    h = store_harness  # SQLite and PostgreSQL
    start = h.clock.now()
    resized, deleted = "vol_00000000000000000002", "vol_00000000000000000003"
    # Resized from 1000 to 2000 GB half an hour in: the first stretch closed at the old price.
    await add_volume(
        h,
        resized,
        size_gb=2000,
        price="20000",
        since=start + timedelta(minutes=30),
        periods=[(1000, "10000", start, start + timedelta(minutes=30))],
    )
    # Deleted an hour in: its only stretch closed then, and nothing open.
    await add_volume(
        h, deleted, since=None, status="deleted", periods=[(1000, "10000", start, start + timedelta(hours=1))]
    )
    h.clock.advance(HOUR)

    report = await costs(h, **{"from": iso(start), "to": iso(h.clock.now())})
    line = row(report, resized)
    assert close_to_the_cent(line["costUsd"], 0.05 + 0.1)  # half an hour at $0.1/h, half an hour at $0.2/h
    assert (line["sizeGb"], line["pricePerHour"], line["billingNow"]) == (2000, 0.2, True)  # as it is now
    assert line["billedSeconds"] == HOUR
    assert close_to_the_cent(row(report, deleted)["costUsd"], 0.1) and row(report, deleted)["billingNow"] is False

    h.clock.advance(5 * HOUR)  # the deleted volume accrues nothing more; the resized one goes on
    later = await costs(h, **{"from": iso(start), "to": iso(h.clock.now())})
    assert close_to_the_cent(row(later, deleted)["costUsd"], 0.1) and row(later, deleted)["billedSeconds"] == HOUR
    assert close_to_the_cent(row(later, resized)["costUsd"], 0.05 + 5.5 * 0.2)
    assert close_to_the_cent(later["totalUsd"], 0.1 + 0.05 + 5.5 * 0.2)
    [group] = later["groups"]
    assert (group["key"], group["volumes"], group["volumeHours"]) == ("network-storage", 2, 7.0)
    # A period after its deletion does not show it at all.
    after = await costs(h, **{"from": iso(start + timedelta(hours=2)), "to": iso(h.clock.now())})
    assert [r["instanceId"] for r in after["instances"]] == [resized]
    # A period inside the first stretch: the old size's price only.
    first = await costs(h, **{"from": iso(start), "to": iso(start + timedelta(minutes=30))})
    assert close_to_the_cent(row(first, resized)["costUsd"], 0.05)
    assert (row(first, resized)["sizeGb"], row(first, resized)["billingNow"]) == (1000, False)


async def test_every_group_by_counts_volumes_next_to_instances(harness: Harness) -> None:
    h = harness
    start = h.clock.now()
    created = await h.create(autoStopMinutes=0, labels={"team": "ml"})
    instance = await h.until_status(created["instanceId"], "ready")
    await add_volume(h, "vol_00000000000000000004", since=h.clock.now())
    h.clock.advance(HOUR)
    period = {"from": iso(start), "to": iso(h.clock.now())}

    by_product = await costs(h, **period)
    volume = row(by_product, "vol_00000000000000000004")
    gpu = row(by_product, instance["instanceId"])
    assert gpu["kind"] == "instance" and "volumeId" not in gpu and volume["kind"] == "volume"
    assert close_to_the_cent(by_product["totalUsd"], gpu["costUsd"] + volume["costUsd"])
    assert by_product["instancesUsd"] == gpu["costUsd"] and by_product["volumesUsd"] == volume["costUsd"]
    products = {g["key"]: g for g in by_product["groups"]}
    assert set(products) == {"RTX 4090 24GB", "network-storage"}
    assert (products["RTX 4090 24GB"]["instances"], products["RTX 4090 24GB"]["volumes"]) == (1, 0)
    assert (products["network-storage"]["instances"], products["network-storage"]["volumes"]) == (0, 1)
    assert volume["group"] == "network-storage" and gpu["group"] == "RTX 4090 24GB"

    [by_key] = (await costs(h, groupBy="apiKey", **period))["groups"]
    assert (by_key["key"], by_key["instances"], by_key["volumes"]) == ("default", 1, 1)
    assert close_to_the_cent(by_key["costUsd"], gpu["costUsd"] + volume["costUsd"])

    by_label = await costs(h, groupBy="label:team", **period)
    labels = {g["key"]: g for g in by_label["groups"]}
    assert set(labels) == {"ml", None}  # volumes have no labels: the unlabeled group, as unlabeled instances
    assert (labels[None]["volumes"], labels[None]["instances"], labels["ml"]["instances"]) == (1, 0, 1)
    assert labels[None]["costUsd"] == volume["costUsd"]
    assert row(by_label, "vol_00000000000000000004")["group"] is None


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(
        tmp_path, api_keys=f"{ALICE},{BOB}", admin_api_keys=ROOT, auto_stop_idle_minutes=0, budget_check_seconds=7200
    ).start()
    try:
        yield h
    finally:
        await h.stop()


async def test_a_key_sees_only_its_own_volumes_and_an_admin_sees_every_key(keyed: Harness) -> None:
    h = keyed
    alice, bob = owner_id(ALICE), owner_id(BOB)
    await add_volume(h, "vol_0000000000000000a11c", owner=alice, since=h.clock.now())
    await add_volume(h, "vol_00000000000000000b0b", owner=bob, size_gb=500, price="5000", since=h.clock.now())
    h.clock.advance(HOUR)

    own = await costs(h, ALICE)
    assert [r["instanceId"] for r in own["instances"]] == ["vol_0000000000000000a11c"]
    assert close_to_the_cent(own["totalUsd"], 0.1)
    assert [r["instanceId"] for r in (await costs(h, BOB))["instances"]] == ["vol_00000000000000000b0b"]
    everyone = await costs(h, ROOT, groupBy="apiKey")
    spend = {g["key"]: g["costUsd"] for g in everyone["groups"]}
    assert set(spend) == {alice, bob} and close_to_the_cent(spend[alice], 0.1) and close_to_the_cent(spend[bob], 0.05)


async def test_budget_spend_projection_and_exceeded_count_volumes(keyed: Harness) -> None:
    h = keyed
    alice, bob = owner_id(ALICE), owner_id(BOB)
    await add_volume(h, "vol_0000000000000000a11c", owner=alice, since=h.clock.now())
    await add_volume(h, "vol_00000000000000000b0b", owner=bob, since=h.clock.now())
    for k in (ALICE, BOB):
        body = {"monthlyLimitUsd": 0.05 if k == ALICE else 100, "onExceeded": "stopAll"}
        assert (await h.http.put("/api/budget", json=body, headers=key(k))).status_code == 200
    h.clock.advance(HOUR / 4)
    # Alice's budget is spent half an hour in, from the volume's cost alone: the worker wakes then.
    assert await h.services.budgets.seconds_until_next(h.clock.now()) == pytest.approx(15 * 60)
    h.clock.advance(HOUR * 3 / 4)

    view = (await h.http.get("/api/budget", headers=key(ALICE))).json()
    BudgetAnswer.model_validate(view)
    assert close_to_the_cent(view["spentUsd"], 0.1) and view["ratePerHourUsd"] == pytest.approx(0.1)
    month_end = datetime(2026, 2, 1, tzinfo=h.clock.now().tzinfo)
    hours_left = (month_end - h.clock.now()).total_seconds() / HOUR
    assert view["projectedUsd"] == pytest.approx(0.1 + 0.1 * hours_left, abs=1e-5)  # open: at its price to month end
    assert view["remainingUsd"] == 0

    # The crossing: budget.exceeded from the volume alone; creates refused; the volume is not stopped.
    refused = await h.http.post("/api/instances", json=SEED_BODY, headers=key(ALICE))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "BUDGET_EXCEEDED"
    await h.services.budgets.step()  # the budget worker's turn
    [event] = (await h.http.get("/api/budget/events", headers=key(ALICE))).json()["events"]
    data = event["payload"]["data"]
    assert event["event"] == "budget.exceeded" and close_to_the_cent(data["spentUsd"], 0.1)
    assert data["stoppedInstances"] == []
    assert (await h.http.get("/api/budget", headers=key(ALICE))).json()["exceeded"] is True
    # Bob's volume costs as much, under his own larger budget: nothing for him.
    assert (await h.http.get("/api/budget/events", headers=key(BOB))).json()["events"] == []
    assert (await h.http.get("/api/budget", headers=key(BOB))).json()["exceeded"] is False
    h.clock.advance(HOUR)
    assert close_to_the_cent((await h.http.get("/api/budget", headers=key(ALICE))).json()["spentUsd"], 0.2)


async def test_novita_gpu_costs_lists_volumes_with_their_kind_within_80_columns(tmp_path: Path) -> None:
    async with live_service(tmp_path) as live:
        h = live.harness
        name = "a-very-long-instance-name-for-a-narrow-terminal-xxxxxxxxxxxxxx"
        created = await h.create(name=name, gpuNum=2, autoStopMinutes=0, labels={"team": "machine-learning"})
        instance = await h.until_status(created["instanceId"], "ready")
        await add_volume(h, "vol_00000000000000000005", size_gb=1000, price="10000", since=h.clock.now())
        h.clock.advance(100 * HOUR)  # costs of a few dollars: wide cells

        async def run(*args: str) -> str:
            return ok(await asyncio.to_thread(invoke, live.url, "costs", "--group-by", "label:team", *args))

        report = json.loads(await run("--json"))
        shown = (await run()).splitlines()
        assert not [line for line in shown if len(line) > 80], shown
        assert "1 instances, 1 volumes ($10.00)" in "\n".join(shown)
        rows = {r["instanceId"]: r for r in report["instances"]}
        for row_id, kind in ((instance["instanceId"], "instance"), ("vol_00000000000000000005", "volume")):
            [line] = [line for line in shown if row_id in line]
            assert line.split()[1] == kind and f"${rows[row_id]['costUsd']:,.2f}" in line
            assert f"${rows[row_id]['pricePerHour']:.4f}" in line
        assert "VOLUMES" in next(line for line in shown if line.startswith("LABEL:TEAM"))


async def test_a_volume_made_over_http_bills_at_the_emulators_price_until_deleted(harness: Harness) -> None:
    """The volumes API end to end: created in a region, grown, deleted; its row follows Novita's price."""
    h = harness
    start = h.clock.now()
    created = await h.http.post("/api/volumes", json={"name": "datasets", "region": "US-TX-04", "sizeGb": 1000})
    assert created.status_code == 201, created.text
    volume_id = created.json()["volumeId"]

    async def has(status: str) -> bool:
        return bool((await h.http.get(f"/api/volumes/{volume_id}")).json()["status"] == status)

    async def available() -> bool:
        return await has("available")

    await h.run_until(available, max_seconds=120)
    view = (await h.http.get(f"/api/volumes/{volume_id}")).json()
    assert view["pricePerHour"] == per_hour("10000")  # the emulator's "10000" for 1000 GB: $0.10 an hour
    h.clock.advance(HOUR)
    line = row(await costs(h, **{"from": iso(start), "to": iso(h.clock.now())}), volume_id)
    assert (line["kind"], line["name"], line["region"], line["sizeGb"]) == ("volume", "datasets", "US-TX-04", 1000)
    assert close_to_the_cent(line["costUsd"], 0.10) and line["billingNow"] is True

    grown = await h.http.patch(f"/api/volumes/{volume_id}", json={"sizeGb": 2000})
    assert grown.status_code == 200, grown.text
    h.clock.advance(HOUR)
    line = row(await costs(h, **{"from": iso(start), "to": iso(h.clock.now())}), volume_id)
    assert close_to_the_cent(line["costUsd"], 0.10 + 0.20) and line["sizeGb"] == 2000

    assert (await h.http.delete(f"/api/volumes/{volume_id}")).status_code == 202

    async def deleted() -> bool:
        return await has("deleted")

    await h.run_until(deleted, max_seconds=120)
    gone = row(await costs(h, **{"from": iso(start), "to": iso(h.clock.now())}), volume_id)
    h.clock.advance(5 * HOUR)  # deleted: nothing more
    later = row(await costs(h, **{"from": iso(start), "to": iso(h.clock.now())}), volume_id)
    assert later["costUsd"] == gone["costUsd"] and later["billingNow"] is False
    assert close_to_the_cent(later["costUsd"], 0.30)
