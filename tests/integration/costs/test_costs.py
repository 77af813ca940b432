"""Costs, end to end: instances created over HTTP run, stop, start and go in the emulator on a shared clock;
what the service says they cost (GET /api/costs, each instance's view, /metrics, `novita-gpu costs`) is
checked to the cent against the emulator's own timeline of when Novita billed them."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from typer.testing import CliRunner

from novita_gpu.app import create_app
from novita_gpu.cli import app as cli_app
from novita_gpu.costs.meter import BILLED
from novita_gpu.costs.schemas import CostsAnswer
from novita_gpu.instances.schemas import InstanceAnswer
from novita_gpu.services import build_services
from tests.fixtures.live_service import live_service
from tests.harness import Harness

HOUR = 3600.0


def billed_seconds(h: Harness, novita_id: str, until: float | None = None) -> float:
    """What Novita billed, from the emulator's true timeline: every stretch in a billed status."""
    truth = h.emulator.get(f"/_emulator/instances/{novita_id}").json()
    end = until if until is not None else truth.get("now", h.clock.now().timestamp())
    total, since = 0.0, None
    for step in truth["history"]:
        if step["status"] in BILLED and since is None:
            since = step["at"]
        elif step["status"] not in BILLED and since is not None:
            total += min(step["at"], end) - since
            since = None
    if since is not None:
        total += end - since
    return total


async def ready(h: Harness, **body: Any) -> dict[str, Any]:
    created = await h.create(autoStopMinutes=0, **body)
    return await h.until_status(created["instanceId"], "ready")


async def costs(h: Harness, **params: str) -> dict[str, Any]:
    response = await h.http.get("/api/costs", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    CostsAnswer.model_validate(body)
    return body


def line(report: dict[str, Any], instance_id: str) -> dict[str, Any]:
    [found] = [i for i in report["instances"] if i["instanceId"] == instance_id]
    return found


def close_to_the_cent(got: float, expected: float) -> bool:
    return abs(got - expected) < 0.005


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_costs_match_price_times_billed_time_to_the_cent(harness: Harness) -> None:
    h = harness
    start = h.clock.now()
    on_demand = await ready(h, labels={"team": "ml"})
    spot = await ready(h, labels={"team": "cv"}, billingMode="spot", gpuNum=2)
    assert spot["pricePerHour"] < on_demand["pricePerHour"] * 2  # the spot price, for both GPUs
    h.clock.advance(2 * HOUR)
    await h.tick()
    assert (await h.http.post(f"/api/instances/{on_demand['instanceId']}/stop")).status_code == 202
    await h.until_status(on_demand["instanceId"], "stopped")
    h.clock.advance(HOUR)  # stopped: Novita bills no GPU time
    assert (await h.http.post(f"/api/instances/{on_demand['instanceId']}/start")).status_code == 202
    await h.until_status(on_demand["instanceId"], "ready")
    h.clock.advance(HOUR / 2)
    for view in (on_demand, spot):
        assert (await h.http.delete(f"/api/instances/{view['instanceId']}")).status_code == 202
    for view in (on_demand, spot):
        await h.until_status(view["instanceId"], "terminated")
    h.clock.advance(HOUR)

    report = await costs(h, **{"from": iso(start), "to": iso(h.clock.now()), "groupBy": "label:team"})
    total = 0.0
    for view in (on_demand, spot):
        expected = billed_seconds(h, view["novitaInstanceId"]) / HOUR * view["pricePerHour"]
        total += expected
        assert close_to_the_cent(line(report, view["instanceId"])["costUsd"], expected), view["billingMode"]
        final = await h.instance(view["instanceId"])
        assert close_to_the_cent(final["cost"]["accruedUsd"], expected) and final["cost"]["billingSince"] is None
        InstanceAnswer.model_validate(final)
    assert close_to_the_cent(report["totalUsd"], total)
    assert {g["key"]: g["instances"] for g in report["groups"]} == {"ml": 1, "cv": 1}
    assert 2.5 < line(report, on_demand["instanceId"])["billedHours"] < 2.52  # 2 h + 30 min, and the boots

    # A period inside the first run: exactly its hour, at the price.
    ready_at = datetime.fromisoformat(on_demand["readyAt"])
    hour = await costs(
        h, **{"from": iso(ready_at + timedelta(minutes=30)), "to": iso(ready_at + timedelta(minutes=90))}
    )
    assert close_to_the_cent(line(hour, on_demand["instanceId"])["costUsd"], on_demand["pricePerHour"])
    assert [g["key"] for g in hour["groups"]] == ["RTX 4090 24GB"]
    assert (await costs(h, **{"from": iso(h.clock.now()), "to": iso(start)}))["totalUsd"] == 0  # an empty period


async def test_accrued_cost_is_kept_as_it_accrues_and_survives_a_restart(harness: Harness) -> None:
    h = harness
    view = await ready(h)
    instance_id = view["instanceId"]
    h.clock.advance(HOUR)
    reads = h.services.instances.reads
    assert reads.view(instance_id) is not None  # GET by id answers from the read cache
    await h.services.budgets.step()  # the worker moves each billing instance's cost forward
    now = h.clock.now()
    # The cached view got the new cost in place (a checkpoint drops no view), exactly as rendered afresh.
    patched = reads.view(instance_id)
    assert patched is not None
    h.services.instances.changes.pulse(instance_id)  # dropped: the next GET renders the row afresh
    assert (await h.http.get(f"/api/instances/{instance_id}")).content == patched.body
    mid = (await h.instance(instance_id))["cost"]
    assert datetime.fromisoformat(mid["accruedAt"]) == now and mid["billingSince"] is not None
    expected = billed_seconds(h, view["novitaInstanceId"], now.timestamp()) / HOUR * view["pricePerHour"]
    assert close_to_the_cent(mid["accruedUsd"], expected)

    # A restart: a new process on the same store (and the same Novita) goes on counting.
    await h.services.events.close()
    await h.http.aclose()
    await h.services.aclose()
    h.services = await build_services(h.settings, h.clock)
    h.app = create_app(services=h.services)
    h.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://localhost")
    assert (await h.instance(instance_id))["cost"] == mid
    h.clock.advance(HOUR)
    assert (await h.http.post(f"/api/instances/{instance_id}/stop")).status_code == 202
    stopped = await h.until_status(instance_id, "stopped")
    expected = billed_seconds(h, view["novitaInstanceId"]) / HOUR * view["pricePerHour"]
    assert close_to_the_cent(stopped["cost"]["accruedUsd"], expected)
    assert close_to_the_cent(line(await costs(h), instance_id)["costUsd"], expected)


async def test_spend_gauges_for_prometheus(harness: Harness) -> None:
    view = await ready(harness)
    harness.clock.advance(2 * HOUR)
    text = (await harness.http.get("/metrics")).text
    spent = float(re.search(r'^cost_month_to_date_usd\{api_key="default"\} (\S+)$', text, re.M).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r'^cost_rate_usd_per_hour\{api_key="default"\} (\S+)$', text, re.M).group(1))  # type: ignore[union-attr]
    assert rate == view["pricePerHour"] and close_to_the_cent(spent, 2 * view["pricePerHour"])
    assert "budget_monthly_limit_usd{" not in text  # no budget, no series
    assert (await harness.http.put("/api/budget", json={"monthlyLimitUsd": 50})).status_code == 200
    assert 'budget_monthly_limit_usd{api_key="default"} 50.0' in (await harness.http.get("/metrics")).text


async def test_novita_gpu_costs_prints_the_report(tmp_path: Any) -> None:
    async with live_service(tmp_path) as live:
        view = await ready(live.harness, labels={"team": "ml"})
        live.harness.clock.advance(HOUR)
        await live.harness.http.put("/api/budget", json={"monthlyLimitUsd": 10})

        def run(*args: str) -> Any:
            return CliRunner().invoke(cli_app, ["costs", *args], env={"NOVITA_GPU_URL": live.url, "COLUMNS": "120"})

        shown = await asyncio.to_thread(run, "--group-by", "label:team")
        assert shown.exit_code == 0, shown.stdout
        assert view["instanceId"] in shown.stdout and "ml" in shown.stdout and "still billing" in shown.stdout
        assert "Budget" in shown.stdout and "of $10.00" in shown.stdout
        as_json = await asyncio.to_thread(run, "--json")
        report = json.loads(as_json.stdout)
        expected = billed_seconds(live.harness, view["novitaInstanceId"]) / HOUR * view["pricePerHour"]
        assert close_to_the_cent(report["totalUsd"], expected)
        refused = await asyncio.to_thread(run, "--group-by", "team")
        assert refused.exit_code == 1 and "VALIDATION_ERROR" in refused.stderr


async def test_a_recovered_spot_instance_costs_each_stretch_at_its_own_price(harness: Harness) -> None:
    """Reclaimed after 2 h, recreated on-demand (no spot left), run 1 h more: one record, two prices."""
    h = harness
    start = h.clock.now()
    spot = await ready(h, billingMode="spot", recovery={"onReclaim": "recreate", "fallbackToOnDemand": True})
    h.clock.advance(2 * HOUR)
    await h.tick()
    h.emulator.put("/_emulator/spot", json={"capacity": {c: 0 for c in ("1", "2", "3", "5")}}).raise_for_status()
    h.emulator.post(f"/_emulator/instances/{spot['novitaInstanceId']}/reclaim").raise_for_status()

    async def recovered() -> bool:
        view = await h.instance(spot["instanceId"])
        return view["status"] == "ready" and view["recovery"]["attempt"] == 1 and not view["recovery"]["inProgress"]

    await h.run_until(recovered)
    back = await h.instance(spot["instanceId"])
    assert back["billingMode"] == "onDemand" and back["pricePerHour"] > spot["pricePerHour"]
    h.clock.advance(HOUR)
    assert (await h.http.delete(f"/api/instances/{spot['instanceId']}")).status_code == 202
    await h.until_status(spot["instanceId"], "terminated")

    report = await costs(h, **{"from": iso(start), "to": iso(h.clock.now())})
    spot_cost = billed_seconds(h, spot["novitaInstanceId"]) / HOUR * spot["pricePerHour"]
    on_demand_cost = billed_seconds(h, back["novitaInstanceId"]) / HOUR * back["pricePerHour"]
    row = line(report, spot["instanceId"])
    assert close_to_the_cent(row["costByBillingMode"]["spot"], spot_cost)
    assert close_to_the_cent(row["costByBillingMode"]["onDemand"], on_demand_cost)
    assert close_to_the_cent(row["costUsd"], spot_cost + on_demand_cost)
    assert row["recoveries"] == 1 and report["recoveries"] == 1
    final = await h.instance(spot["instanceId"])
    assert close_to_the_cent(final["cost"]["accruedUsd"], spot_cost + on_demand_cost)
