"""budget.exceeded goes through the one webhook outbox: the budget worker writes the event and its
deliveries with the crossing, and the webhook dispatcher sends them as it sends instance events: signed,
retried, made due again when their receiver comes back, expired after WEBHOOK_MAX_AGE_SECONDS, counted by
the webhook metrics and /health's webhooks check, and kept with the costs when retention deletes instances.

Budgets are set and read over HTTP; the budget worker and the dispatcher are stepped as the app steps them,
on the harness's ManualClock, and send over real loopback HTTP to small receivers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from novita_gpu.costs.schemas import AccountEventsAnswer
from novita_gpu.kit.serving import BackgroundServer, free_port
from novita_gpu.observability.schemas import HealthAnswer
from novita_gpu.web.auth import owner_id
from novita_gpu.webhooks.signing import verify
from tests.fixtures.databases import fresh_database
from tests.harness import SEED_BODY, Harness

ALICE, BOB, ROOT = "alice-key-0123456789", "bob-key-0123456789", "root-key-0123456789"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOWHERE = "http://no-such-host.invalid/budget"
LIFECYCLE = ["creating", "starting", "running", "health_checking", "ready"]
LIMIT_USD = 0.01  # an RTX 4090 at $0.29 an hour spends it in two minutes
DAY = 24 * 3600.0

Answer = Callable[[int], Awaitable[Response]]


async def ok(_: int) -> Response:
    return Response("OK")


@dataclass
class Receiver:
    """Records every POST to /hook and answers with `answer(n)`, n counting its requests from 0."""

    answer: Answer = ok
    port: int = 0
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def hook(request: Request) -> Response:
            self.hits.append((dict(request.headers), await request.body()))
            return await self.answer(len(self.hits) - 1)

        self.server = BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), port=self.port)
        await self.server.start()
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.hits]

    def statuses(self, instance_id: str) -> list[str]:
        """The statuses of one instance's messages, in the order they arrived."""
        bodies = [json.loads(body) for _, body in self.hits]
        return [b["status"] for b in bodies if b.get("instanceId") == instance_id]


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def start(answer: Answer = ok, port: int = 0) -> Receiver:
        receiver = Receiver(answer, port)
        await receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


def keyed(tmp_path: Path, **settings: Any) -> Harness:
    """A harness with ALICE's and BOB's keys, an admin key and a webhook secret."""
    values = {
        "api_keys": f"{ALICE},{BOB}",
        "admin_api_keys": ROOT,
        "webhook_secret": SECRET,
        "auto_stop_idle_minutes": 0,
    }
    return Harness(tmp_path, **{**values, **settings})


@pytest.fixture
async def harnesses(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    made: list[Harness] = []

    async def make(**settings: Any) -> Harness:
        harness = await keyed(tmp_path / f"h{len(made)}", **settings).start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.stop()


def key(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


async def create(h: Harness, k: str = ALICE, **body: Any) -> str:
    created = await h.http.post("/api/instances", json={**SEED_BODY, **body}, headers=key(k))
    assert created.status_code == 201, created.text
    instance_id: str = created.json()["instanceId"]
    return instance_id


async def status(h: Harness, instance_id: str) -> str:
    return str((await h.http.get(f"/api/instances/{instance_id}", headers=key(ALICE))).json()["status"])


async def until_status(h: Harness, instance_id: str, wanted: str) -> None:
    """The reconciler and prober run (the dispatcher does not) until ALICE's instance is `wanted`."""

    async def reached() -> bool:
        return await status(h, instance_id) == wanted

    await h.run_until(reached)


async def ready(h: Harness, **body: Any) -> str:
    """An instance of ALICE's, created over HTTP and run to ready."""
    instance_id = await create(h, **body)
    await until_status(h, instance_id, "ready")
    return instance_id


async def set_budget(h: Harness, **body: Any) -> None:
    answer = await h.http.put("/api/budget", json={"monthlyLimitUsd": LIMIT_USD, **body}, headers=key(ALICE))
    assert answer.status_code == 200, answer.text


async def cross(h: Harness) -> None:
    """Ten minutes of an instance's spend: past the budget; the budget worker's step acts on it."""
    h.clock.advance(600)
    await h.services.budgets.step()


async def budget_events(h: Harness) -> list[dict[str, Any]]:
    answer = await h.http.get("/api/budget/events", headers=key(ALICE))
    assert answer.status_code == 200, answer.text
    AccountEventsAnswer.model_validate(answer.json())
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


async def deliveries(h: Harness) -> dict[str, dict[str, Any]]:
    """The deliveries of ALICE's one budget event, by URL."""
    [event] = await budget_events(h)
    return {d["url"]: d for d in event["webhooks"]}


async def health(h: Harness, k: str | None = None) -> dict[str, Any]:
    answer = await h.http.get("/health", headers=key(k) if k else {})
    assert answer.status_code == 200, answer.text
    HealthAnswer.model_validate(answer.json())
    webhooks: dict[str, Any] = answer.json()["services"]["webhooks"]
    return {**webhooks, "service": answer.json()["status"]}


async def webhook_metrics(h: Harness) -> dict[str, Any]:
    answer = await h.http.get("/api/metrics", headers=key(ALICE))
    assert answer.status_code == 200, answer.text
    summary: dict[str, Any] = answer.json()["webhooks"]
    return summary


def rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def drain(h: Harness) -> None:
    """The dispatcher's passes until nothing is due, the clock standing still."""
    while await h.services.dispatcher.tick():
        pass


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_budget_exceeded_is_sent_by_the_webhook_dispatcher_signed_counted_and_checked(
    store: str, tmp_path: Path, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    receiver = await receivers()
    async with fresh_database(store, tmp_path) as url:
        h = await keyed(tmp_path, database_url=url).start()
        try:
            await sent_signed_counted_and_checked(h, receiver)
        finally:
            await h.stop()


async def sent_signed_counted_and_checked(h: Harness, receiver: Receiver) -> None:
    await set_budget(h, webhookUrl=receiver.url)
    await ready(h)
    h.services.dispatcher._wake.clear()
    await cross(h)

    assert receiver.hits == []  # the budget worker sends nothing itself ...
    assert h.services.dispatcher._wake.is_set()  # ... it wakes the dispatcher
    [event] = await budget_events(h)
    [queued] = event["webhooks"]
    assert (queued["url"], queued["status"], queued["attempts"]) == (receiver.url, "pending", 0)
    webhooks = await health(h)
    assert (webhooks["service"], webhooks["status"], webhooks["pending"]) == ("healthy", "up", 1)
    assert (await webhook_metrics(h))["backlog"] == 1

    h.clock.advance(180)  # left unattempted: the service fails to deliver
    webhooks = await health(h)
    assert webhooks["service"] == webhooks["status"] == "degraded" and webhooks["oldestDueSeconds"] >= 180
    assert "the dispatcher is stuck or far behind" in webhooks["reason"]

    assert await h.services.dispatcher.tick() == 1
    [(headers, body)] = receiver.hits
    assert verify(SECRET, headers, body, now=int(h.clock.now().timestamp()))
    assert headers["webhook-id"] == queued["deliveryId"]
    assert headers["x-webhook-event"] == "budget.exceeded" and headers["content-type"] == "application/json"
    assert json.loads(body) == event["payload"]
    assert (event["payload"]["apiKey"], event["payload"]["data"]["monthlyLimitUsd"]) == (owner_id(ALICE), LIMIT_USD)
    [sent] = (await budget_events(h))[0]["webhooks"]
    assert (sent["status"], sent["attempts"], sent["lastStatusCode"]) == ("delivered", 1, 200)
    assert sent["deliveredAt"] is not None
    summary = await webhook_metrics(h)
    assert (summary["delivered"], summary["backlog"], summary["lag"]["count"]) == (1, 0, 1)
    assert summary["lag"]["p50"] >= 180
    webhooks = await health(h)
    assert (webhooks["service"], webhooks["status"], webhooks["pending"]) == ("healthy", "up", 0)
    metrics = (await h.http.get("/metrics", headers=key(ROOT))).text  # every key's numbers: an admin's read
    assert 'webhook_deliveries_total{outcome="delivered"} 1.0' in metrics


async def test_a_failing_budget_receiver_is_retried_reported_and_expires(
    harnesses: Callable[..., Awaitable[Harness]],
) -> None:
    h = await harnesses(webhook_max_age_seconds=600)
    await set_budget(h, webhookUrl=NOWHERE)
    await ready(h)
    await cross(h)

    assert await h.services.dispatcher.tick() == 1
    first = (await deliveries(h))[NOWHERE]
    assert (first["status"], first["attempts"], first["lastStatusCode"]) == ("pending", 1, None)
    assert first["lastError"] == "could not resolve the host name"
    assert await h.services.dispatcher.tick() == 0, "it backs off"

    webhooks = await health(h, ROOT)
    assert webhooks["service"] == "healthy", webhooks  # one receiver down is its owner's problem
    assert webhooks["status"] == "up"
    assert (webhooks["pending"], webhooks["failingReceivers"], webhooks["unreachableReceivers"]) == (1, 1, 1)
    [named] = webhooks["receivers"]
    assert (named["receiver"], named["pending"], named["failing"]) == ("http://no-such-host.invalid", 1, 1)
    assert named["lastError"] == "could not resolve the host name"
    assert "receivers" not in await health(h, ALICE)  # named to an administrator only

    given_up_by = h.clock.now() + timedelta(seconds=900)
    while (await deliveries(h))[NOWHERE]["status"] == "pending":
        assert h.clock.now() < given_up_by, "never expired"
        h.clock.advance(15)
        await h.services.dispatcher.tick()
    expired = (await deliveries(h))[NOWHERE]
    assert expired["status"] == "expired" and expired["attempts"] > 2
    assert expired["lastError"] == "could not resolve the host name"
    summary = await webhook_metrics(h)
    assert (summary["expired"], summary["delivered"], summary["backlog"]) == (1, 0, 0)
    assert summary["failedAttempts"] == expired["attempts"]
    assert (await health(h))["pending"] == 0


async def test_a_budget_message_waits_for_no_instance_message_and_resumes_with_its_receiver(
    harnesses: Callable[..., Awaitable[Harness]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """WEBHOOK_URL gets the instance's messages and budget.exceeded. While it is down, the budget message is
    attempted although the instance's messages to the same URL are pending, and backs off; the receiver's
    first answer, to another message, makes it due at once with the instance's queue: the clock stands
    still from then on."""
    port = free_port()
    default = f"http://127.0.0.1:{port}/hook"
    h = await harnesses(webhook_url=default)
    await set_budget(h)
    first = await ready(h)  # five messages queued, the dispatcher not running
    await cross(h)
    assert await h.services.dispatcher.tick() == 2  # the instance's first message, and the budget's
    down = (await deliveries(h))[default]
    assert (down["status"], down["attempts"], down["lastError"]) == ("pending", 1, "could not connect")

    receiver = await receivers(port=port)
    now = h.clock.now()
    second = await create(h, BOB)  # another key's: its first message is due now; the other two back off
    assert await h.services.dispatcher.tick() == 1
    assert receiver.statuses(second) == ["creating"]
    await drain(h)

    assert h.clock.now() == now
    back = (await deliveries(h))[default]
    assert (back["status"], back["attempts"]) == ("delivered", 2)
    assert receiver.events().count("budget.exceeded") == 1
    assert receiver.statuses(first) == LIFECYCLE  # in order


async def test_410_from_a_budget_receiver_drops_that_message_only(
    harnesses: Callable[..., Awaitable[Harness]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    async def gone(_: int) -> Response:
        return Response(status_code=410)

    refusing, default = await receivers(gone), await receivers()
    h = await harnesses(webhook_url=default.url)
    await set_budget(h, webhookUrl=refusing.url)
    instance_id = await ready(h)
    await cross(h)
    await drain(h)

    sent = await deliveries(h)
    assert (sent[refusing.url]["status"], sent[refusing.url]["lastStatusCode"]) == ("gone", 410)
    assert sent[default.url]["status"] == "delivered"
    assert default.events().count("budget.exceeded") == 1 and default.statuses(instance_id) == LIFECYCLE
    budget = (await h.http.get("/api/budget", headers=key(ALICE))).json()
    assert budget["webhookUrl"] == refusing.url  # a budget's URL is the key's setting: only that message went
    view = (await h.http.get(f"/api/instances/{instance_id}", headers=key(ALICE))).json()
    assert view["status"] == "ready"
    assert (await webhook_metrics(h))["gone"] == 1


async def test_the_event_and_its_deliveries_are_written_with_the_crossing_or_not_at_all(
    harnesses: Callable[..., Awaitable[Harness]],
    receivers: Callable[..., Awaitable[Receiver]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delivery that cannot be written (its id taken) undoes the whole crossing: no event, the budget
    not marked, no instance stopped. The next step writes all of it, once."""
    receiver = await receivers()
    h = await harnesses()
    await set_budget(h, webhookUrl=receiver.url, onExceeded="stopAll")
    instance_id = await ready(h, webhookUrl=receiver.url)
    await drain(h)
    taken = receiver.hits[0][0]["webhook-id"].removeprefix("msg_")

    class TakenIds:
        @staticmethod
        def uuid4() -> Any:
            return type("Taken", (), {"hex": taken})()

    monkeypatch.setattr("novita_gpu.costs.budgets.uuid", TakenIds)
    h.clock.advance(600)
    with pytest.raises(IntegrityError):
        await h.services.budgets.step()
    assert await budget_events(h) == []
    assert (await h.http.get("/api/budget", headers=key(ALICE))).json()["exceededAt"] is None
    view = (await h.http.get(f"/api/instances/{instance_id}", headers=key(ALICE))).json()
    assert view["status"] == "ready"

    monkeypatch.undo()
    await h.services.budgets.step()
    await h.services.budgets.step()
    [event] = await budget_events(h)
    assert event["payload"]["data"]["stoppedInstances"] == [instance_id]
    assert (await h.http.get("/api/budget", headers=key(ALICE))).json()["exceededAt"] is not None
    await drain(h)
    assert receiver.events().count("budget.exceeded") == 1
    assert [d["status"] for d in event["webhooks"]] == ["pending"]
    assert [d["status"] for d in (await budget_events(h))[0]["webhooks"]] == ["delivered"]


async def test_budget_events_and_costs_outlive_the_instances_retention_deletes(
    harnesses: Callable[..., Awaitable[Harness]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    receiver = await receivers()
    h = await harnesses()
    assert h.settings.history_retention_days == 30
    await set_budget(h, webhookUrl=receiver.url, onExceeded="stopAll")
    instance_id = await ready(h, webhookUrl=receiver.url)
    started = h.clock.now()
    await cross(h)
    deleted = await h.http.delete(f"/api/instances/{instance_id}", headers=key(ALICE))
    assert deleted.status_code == 202, deleted.text
    await until_status(h, instance_id, "terminated")
    await drain(h)
    events = await budget_events(h)
    assert [d["status"] for d in events[0]["webhooks"]] == ["delivered"]
    month = started.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period = {"from": rfc3339(month), "to": rfc3339(h.clock.now())}
    spent = (await h.http.get("/api/costs", params=period, headers=key(ALICE))).json()
    assert spent["totalUsd"] > LIMIT_USD

    h.clock.advance(31 * DAY)
    swept = await h.services.retention.sweep()
    assert swept["instances"] == 1 and swept["webhook_deliveries"] > 0
    assert (await h.http.get(f"/api/instances/{instance_id}", headers=key(ALICE))).status_code == 404
    assert await budget_events(h) == events  # the event and its delivery stay
    assert (await h.http.get("/api/costs", params=period, headers=key(ALICE))).json()["totalUsd"] == spent["totalUsd"]
    assert await h.services.retention.sweep() == {
        "idempotency_keys": 0,
        "webhook_deliveries": 0,
        "instances": 0,
        "audit_events": 0,
    }
