"""Claims over HTTP against the emulator: a ready member at once, a stopped one started, cold from the spec;
the pool refills behind each, and never counts past max."""

from __future__ import annotations

from sqlalchemy import select

from novita_gpu.instances.schemas import InstanceAnswer
from novita_gpu.kit.tables import PoolClaim, WebhookDelivery
from novita_gpu.pools.schemas import ClaimAnswer
from tests.harness import Harness
from tests.integration.pools.conftest import claim, make_pool, pool_view, until_members


async def test_a_claim_takes_a_ready_member_at_once_and_the_pool_refills(harness: Harness) -> None:
    await make_pool(harness, minReady=1, minStopped=1, max=4)
    warm = await until_members(harness, ready=1, stopped=1, total=2)
    assert warm["idleCost"]["readyUsdPerHour"] > 0

    listed = (await harness.http.get("/api/instances")).json()["instances"]
    assert sorted(i["pool"]["state"] for i in listed) == ["ready", "stopped"]
    assert all(i["name"].startswith("gpus-") for i in listed)

    answer = await claim(harness, name="train-1", labels={"team": "ml"}, webhookUrl="http://127.0.0.1:9/hook")
    ClaimAnswer.model_validate(answer)
    assert answer["status"] == "ready"
    assert answer["claim"] == {"pool": "gpus", "source": "ready"}
    assert answer["name"] == "train-1" and answer["labels"] == {"team": "ml"}
    assert answer["pool"]["state"] == "claimed"
    assert answer["connectionDetails"]["ports"]

    view = await harness.instance(answer["instanceId"])
    InstanceAnswer.model_validate(view)
    assert view["status"] == "ready" and view["webhookUrl"] == "http://127.0.0.1:9/hook"
    async with harness.services.db.read() as session:
        sent = (
            await session.scalars(select(WebhookDelivery).where(WebhookDelivery.url == "http://127.0.0.1:9/hook"))
        ).all()
    # The claimer's webhook hears the claim as `ready`, and nothing of the member's life before it.
    assert [(d.instance_id, d.event) for d in sent] == [(answer["instanceId"], "instance.ready")]

    refilled = await until_members(harness, ready=1, stopped=1, claimed=1, total=3)
    assert refilled["claims"]["lastHour"] == 1
    assert refilled["claims"]["hitRate"]["ready"] == 1.0
    scraped = harness.services.metrics.render()[0].decode()
    assert 'pool_claims_total{source="ready"} 1.0' in scraped


async def test_a_claim_starts_a_stopped_member_when_none_is_ready(harness: Harness) -> None:
    await make_pool(harness, minStopped=1, max=2)
    await until_members(harness, stopped=1, total=1)

    answer = await claim(harness, name="from-stopped")
    assert answer["claim"]["source"] == "stopped"
    assert answer["status"] == "starting"
    ready = await harness.until_status(answer["instanceId"], "ready")
    assert ready["name"] == "from-stopped"
    events = [e["event"] for e in await harness.events(answer["instanceId"])]
    assert "instance.ready" in events


async def test_a_claim_creates_cold_when_no_member_is_idle_and_refuses_past_max(harness: Harness) -> None:
    await make_pool(harness, max=1)
    answer = await claim(harness, name="cold-one")
    assert answer["claim"]["source"] == "cold"
    assert answer["status"] == "creating"
    await harness.until_status(answer["instanceId"], "ready")

    refused = await harness.http.post("/api/pools/gpus/claim", json={"name": "one-too-many"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "POOL_EXHAUSTED"
    view = await pool_view(harness)
    assert view["members"]["claimed"] == 1 and view["members"]["total"] == 1


async def test_claim_figures_cover_the_last_day_and_older_claims_are_let_go(harness: Harness) -> None:
    await make_pool(harness, max=3)
    await claim(harness, name="yesterday")
    harness.clock.advance(25 * 3600)
    await claim(harness, name="today")
    view = await pool_view(harness)
    assert view["claims"] == {
        "lastHour": 1,
        "lastDay": 1,
        "hitRate": {"ready": 0.0, "stopped": 0.0, "warming": 0.0, "cold": 1.0},
    }
    async with harness.services.db.read() as session:
        kept = (await session.scalars(select(PoolClaim.instance_id))).all()
    assert len(kept) == 1  # the store keeps a day of claims per pool, not every claim ever made
