"""Webhook delivery end to end: the service and emulator on one ManualClock write the outbox, the
dispatcher delivers it over real loopback HTTP to small Starlette receivers.

The dispatcher is driven with `tick()` and the clock, except where concurrency between receivers is
the point: there its `run()` loop runs for real and the test waits with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.kit.db import Database
from novita_gpu.kit.serving import BackgroundServer, free_port
from novita_gpu.kit.tables import WebhookDelivery
from novita_gpu.webhooks.dispatcher import LEASE_MARGIN_SECONDS, POLL_SECONDS, WebhookDispatcher
from novita_gpu.webhooks.guard import WebhookPolicy
from novita_gpu.webhooks.sender import WebhookSender
from novita_gpu.webhooks.signing import verify
from tests.fixtures.services import require_postgres
from tests.harness import Harness

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24="
LIFECYCLE = ["creating", "starting", "running", "health_checking", "ready"]

Answer = Callable[[int], Awaitable[Response]]


async def ok(_: int) -> Response:
    return Response("OK")


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload


@dataclass
class Receiver:
    """Records every POST and answers with `answer(n)`, n counting this receiver's requests from 0."""

    answer: Answer = ok
    hits: list[Hit] = field(default_factory=list)
    answered: int = 0
    server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/webhook"

    def app(self) -> Starlette:
        async def webhook(request: Request) -> Response:
            number = len(self.hits)
            self.hits.append(Hit(dict(request.headers), await request.body()))
            response = await self.answer(number)
            self.answered += 1
            return response

        return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])

    def statuses(self, instance_id: str | None = None) -> list[str]:
        return [h.payload["status"] for h in self.hits if instance_id in (None, h.payload["instanceId"])]


@dataclass
class Rig:
    harness: Harness
    dispatcher: WebhookDispatcher

    async def ready(self, *bodies: dict[str, Any]) -> list[str]:
        """Create one instance per body (one with no body) and run them all to ready."""
        ids = [(await self.harness.create(**body))["instanceId"] for body in bodies or ({},)]

        async def all_ready() -> bool:
            statuses = [(await self.harness.instance(i))["status"] for i in ids]
            return statuses == ["ready"] * len(ids)

        await self.harness.run_until(all_ready)
        return ids

    async def drain(self, *, step: float = 1.0, max_seconds: float = 3600) -> None:
        """Tick until nothing is pending, moving the clock `step` s whenever nothing was due."""
        waited = 0.0
        while (await self.dispatcher.backlog())[0]:
            if await self.dispatcher.tick():
                continue
            assert waited < max_seconds, f"deliveries still pending after {max_seconds} emulated seconds"
            self.harness.clock.advance(step)
            waited += step

    async def deliveries(self, instance_id: str) -> list[dict[str, Any]]:
        """(event status, delivery) pairs flattened: every delivery of the instance, in event order."""
        return [
            {"to": event["to"], **delivery}
            for event in await self.harness.events(instance_id)
            for delivery in event["webhooks"]
        ]


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[BackgroundServer] = []

    async def start(answer: Answer = ok) -> Receiver:
        receiver = Receiver(answer)
        receiver.server = BackgroundServer(receiver.app())
        await receiver.server.start()
        started.append(receiver.server)
        return receiver

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[Harness] = []

    async def make(**settings: Any) -> Rig:
        harness = await Harness(tmp_path / f"rig{len(made)}", **settings).start()
        services = harness.services
        made.append(harness)
        dispatcher = WebhookDispatcher(
            services.db,
            services.clock,
            services.webhook_sender,
            services.settings,
            services.metrics,
            on_instance_change=lambda _: services.reconciler.changes.pulse(),
        )
        return Rig(harness, dispatcher)

    yield make
    for harness in made:
        await harness.stop()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_create_to_ready_delivers_every_event_in_order_signed(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    receiver = await receivers()
    r = await rig(webhook_secret=[SECRET])
    [instance_id] = await r.ready({"webhookUrl": receiver.url})
    await r.drain()

    assert receiver.statuses() == LIFECYCLE
    now = int(r.harness.clock.now().timestamp())
    for hit, status in zip(receiver.hits, LIFECYCLE, strict=True):
        assert verify(SECRET, hit.headers, hit.body, now=now)
        assert hit.headers["content-type"] == "application/json"
        assert hit.headers["x-webhook-event"] == f"instance.{status}"
        # The seed's Express handler: const { instanceId, status, data } = req.body
        body = hit.payload
        assert (body["instanceId"], body["status"], body["event"]) == (instance_id, status, f"instance.{status}")
        assert isinstance(body["data"], dict)
    previous = [h.payload["previousStatus"] for h in receiver.hits]
    assert previous == [None, *LIFECYCLE[:-1]]
    ready = receiver.hits[-1].payload["data"]["connectionDetails"]
    http_ports = [p for p in ready["ports"] if p["type"] == "http"]
    assert http_ports and all(p["endpoint"].startswith("http://") for p in http_ports)

    deliveries = await r.deliveries(instance_id)
    assert [d["to"] for d in deliveries] == LIFECYCLE
    for delivery, hit in zip(deliveries, receiver.hits, strict=True):
        assert delivery["status"] == "delivered" and delivery["deliveredAt"] is not None
        assert delivery["deliveryId"] == hit.headers["webhook-id"]
        assert delivery["attempts"] == 1 and delivery["nextAttemptAt"] is None
        assert [(a["statusCode"], a["error"]) for a in delivery["history"]] == [(200, None)]
    summary = r.harness.services.metrics.summary()["webhooks"]
    assert (summary["delivered"], summary["backlog"], summary["lag"]["count"]) == (5, 0, 5)


async def test_a_receiver_failing_five_times_still_gets_everything_in_order(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    async def flaky(number: int) -> Response:
        return Response("down", status_code=500) if number < 5 else Response("OK")

    receiver = await receivers(flaky)
    r = await rig()
    instance_id = (await r.harness.create(webhookUrl=receiver.url))["instanceId"]
    for failures in range(1, 6):
        assert await r.dispatcher.tick() == 1
        assert await r.dispatcher.tick() == 0, "no attempt before the next attempt time"
        [head, *_] = await r.deliveries(instance_id)
        last = parse_time(head["history"][-1]["at"])
        next_at = parse_time(head["nextAttemptAt"])
        assert (head["status"], head["attempts"], head["lastStatusCode"]) == ("pending", failures, 500)
        assert last <= next_at <= last + timedelta(seconds=2 ** (failures - 1)), "full jitter: up to 1, 2, 4 ... s"
        r.harness.clock.advance((next_at - r.harness.clock.now()).total_seconds())
    # Meanwhile the lifecycle goes on and the receiver recovers: everything arrives, in order.
    await r.harness.until_status(instance_id, "ready")
    await r.drain(step=0.5)

    assert receiver.statuses() == ["creating"] * 5 + LIFECYCLE
    assert [h.headers["webhook-id"] for h in receiver.hits[:6]] == [receiver.hits[0].headers["webhook-id"]] * 6
    deliveries = await r.deliveries(instance_id)
    assert [d["status"] for d in deliveries] == ["delivered"] * 5
    first = deliveries[0]
    assert [(a["statusCode"], a["error"]) for a in first["history"]] == [(500, "HTTP 500")] * 5 + [(200, None)]
    times = [parse_time(a["at"]) for a in first["history"]]
    assert times == sorted(times) and len(set(times)) == 6
    assert r.harness.services.metrics.summary()["webhooks"]["failedAttempts"] == 5


async def test_410_gone_stops_deliveries_to_that_receiver(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    async def gone(_: int) -> Response:
        return Response(status_code=410)

    receiver = await receivers(gone)
    r = await rig()
    [instance_id] = await r.ready({"webhookUrl": receiver.url})
    await r.drain()

    assert receiver.statuses() == ["creating"]
    deliveries = await r.deliveries(instance_id)
    assert [d["status"] for d in deliveries] == ["gone"] * 5
    assert deliveries[0]["lastStatusCode"] == 410 and "410" in deliveries[0]["lastError"]
    assert all("410 Gone" in d["lastError"] and d["history"] == [] for d in deliveries[1:])
    assert (await r.harness.instance(instance_id))["webhookUrl"] is None

    stop = await r.harness.http.post(f"/api/instances/{instance_id}/stop")
    assert stop.status_code == 202, stop.text
    await r.harness.until_status(instance_id, "stopped")
    later = [e for e in await r.harness.events(instance_id) if e["to"] not in LIFECYCLE]
    assert later and all(e["webhooks"] == [] for e in later)
    assert await r.dispatcher.tick() == 0
    assert len(receiver.hits) == 1


async def test_a_dead_or_hanging_receiver_does_not_delay_another_instance(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    release = asyncio.Event()

    async def hang(_: int) -> Response:
        await release.wait()
        return Response("late")

    healthy = await receivers()
    hanging = await receivers(hang)
    r = await rig(webhook_timeout_seconds=30)
    dead_id, hanging_id, healthy_id = await r.ready(
        {"webhookUrl": f"http://127.0.0.1:{free_port()}/webhook"},
        {"webhookUrl": hanging.url},
        {"webhookUrl": healthy.url},
    )

    worker = asyncio.create_task(r.dispatcher.run())
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while [d["status"] for d in await r.deliveries(healthy_id)] != ["delivered"] * 5:
            assert asyncio.get_running_loop().time() < deadline, healthy.statuses()
            await asyncio.sleep(0.01)
        assert healthy.statuses() == LIFECYCLE
        assert hanging.statuses() == ["creating"] and hanging.answered == 0, "still in flight"
        dead = await r.deliveries(dead_id)
        assert dead[0]["history"][0]["error"] == "could not connect"
        assert all(d["status"] == "pending" for d in dead)
    finally:
        release.set()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert (await r.deliveries(hanging_id))[0]["status"] == "delivered"
    assert r.dispatcher.last_run_at == r.harness.clock.now()


async def test_deliveries_expire_after_webhook_max_age(rig: Callable[..., Awaitable[Rig]]) -> None:
    max_age, step = 600.0, 15.0
    r = await rig(webhook_max_age_seconds=max_age)
    [instance_id] = await r.ready({"webhookUrl": f"http://127.0.0.1:{free_port()}/webhook"})
    give_up_at = r.harness.clock.now() + timedelta(seconds=2 * max_age)
    while (await r.dispatcher.backlog())[0]:
        assert r.harness.clock.now() < give_up_at, "never expired"
        await r.dispatcher.tick()
        now = r.harness.clock.now()
        for event in await r.harness.events(instance_id):
            age = (now - parse_time(event["at"])).total_seconds()
            [delivery] = event["webhooks"]
            if age < max_age:
                assert delivery["status"] == "pending", (age, delivery)
            elif age >= max_age + step:
                assert delivery["status"] == "expired", (age, delivery)
        r.harness.clock.advance(step)

    deliveries = await r.deliveries(instance_id)
    assert [d["status"] for d in deliveries] == ["expired"] * 5
    head = deliveries[0]
    assert head["attempts"] > 5 and head["lastError"] == "could not connect"
    summary = r.harness.services.metrics.summary()["webhooks"]
    assert (summary["expired"], summary["delivered"], summary["backlog"]) == (5, 0, 0)


async def test_retry_after_is_honoured(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    async def busy_once(number: int) -> Response:
        return Response(status_code=429, headers={"Retry-After": "30"}) if number == 0 else Response("OK")

    receiver = await receivers(busy_once)
    r = await rig()
    instance_id = (await r.harness.create(webhookUrl=receiver.url))["instanceId"]
    assert await r.dispatcher.tick() == 1
    for _ in range(29):
        r.harness.clock.advance(1)
        assert await r.dispatcher.tick() == 0
    assert len(receiver.hits) == 1
    r.harness.clock.advance(1)
    assert await r.dispatcher.tick() == 1
    [delivery] = await r.deliveries(instance_id)
    assert [a["statusCode"] for a in delivery["history"]] == [429, 200]
    assert delivery["status"] == "delivered"


async def test_rotated_secrets_each_verify(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    receiver = await receivers()
    r = await rig(webhook_secret=[SECRET, OLD_SECRET])
    await r.ready({"webhookUrl": receiver.url})
    await r.drain()

    assert receiver.statuses() == LIFECYCLE
    now = int(r.harness.clock.now().timestamp())
    for hit in receiver.hits:
        assert len(hit.headers["webhook-signature"].split()) == 2
        assert verify(SECRET, hit.headers, hit.body, now=now)
        assert verify(OLD_SECRET, hit.headers, hit.body, now=now)
        assert not verify("whsec_b3RoZXI=", hit.headers, hit.body, now=now)


async def test_the_default_webhook_url_receives_every_instances_events(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    default = await receivers()
    own = await receivers()
    r = await rig(webhook_url=default.url)
    plain_id, hooked_id = await r.ready({}, {"webhookUrl": own.url})
    await r.drain()

    assert default.statuses(plain_id) == LIFECYCLE
    assert default.statuses(hooked_id) == LIFECYCLE
    assert own.statuses() == LIFECYCLE and own.statuses(hooked_id) == LIFECYCLE
    assert len(default.hits) == 10


OUTAGE_SECONDS = 60.0
OUTAGE_INSTANCES = 24


async def test_a_receiver_back_from_an_outage_gets_its_whole_queue_at_once_in_order(
    rig: Callable[..., Awaitable[Rig]], store_url: str
) -> None:
    """Issue 17: after a 60 s outage queued events took up to 110 s to arrive, each head waiting out its
    own backoff. The first answer from the receiver makes every message to it due: one more attempt's
    backoff at most, then everything arrives at once, in order per instance. Two URLs on one host (paths
    differ) are one receiver."""
    port = free_port()
    urls = [f"http://127.0.0.1:{port}/webhook", f"http://127.0.0.1:{port}/webhook?team=b"]
    r = await rig(database_url=store_url, emulator=EmulatorConfig(speed=20))
    ids = await r.ready(*({"webhookUrl": urls[n % 2]} for n in range(OUTAGE_INSTANCES)))
    clock = r.harness.clock
    outage_ends = clock.now() + timedelta(seconds=OUTAGE_SECONDS)
    while clock.now() < outage_ends:  # connection refused: every instance's first message backs off
        await r.dispatcher.tick()
        clock.advance(0.5)
    heads = [(await r.deliveries(i))[0] for i in ids]
    assert all(h["status"] == "pending" and h["attempts"] >= 5 for h in heads), heads

    arrived: list[float] = []  # emulated seconds after the receiver came back

    async def record(_: int) -> Response:
        arrived.append((clock.now() - outage_ends).total_seconds())
        return Response("OK")

    receiver = Receiver(record)
    receiver.server = BackgroundServer(receiver.app(), port=port)
    await receiver.server.start()
    try:
        await r.drain(step=0.25)
    finally:
        await receiver.server.stop()

    assert len(arrived) == OUTAGE_INSTANCES * len(LIFECYCLE)
    for instance_id in ids:
        assert receiver.statuses(instance_id) == LIFECYCLE
    first_answer = arrived[0]
    print(
        f"drain after a {OUTAGE_SECONDS:.0f} s outage, {len(arrived)} messages, emulated s after the receiver "
        f"came back: first {first_answer:.2f}, median {statistics.median(arrived):.2f}, "
        f"p90 {statistics.quantiles(arrived, n=10)[-1]:.2f}, max {arrived[-1]:.2f}"
    )
    assert arrived[-1] == first_answer, "everything due once the receiver answered"


@pytest.mark.parametrize(
    "refusal",
    [Response("bad payload", status_code=500), Response(status_code=429, headers={"Retry-After": "120"})],
    ids=["500", "429-retry-after"],
)
async def test_only_messages_that_found_their_receiver_unavailable_are_resumed(
    rig: Callable[..., Awaitable[Rig]], refusal: Response
) -> None:
    """A 500 may be about that one message (retrying it at every other success would hammer the
    receiver), and a Retry-After is always honoured: such messages keep their backoff when the
    receiver comes back; a message that found it down is sent at once. The clock stands still."""
    refused: list[str] = []

    async def picky(number: int) -> Response:
        return refusal if receiver.hits[number].payload["instanceId"] in refused else Response("OK")

    receiver = Receiver(picky)
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    r = await rig()

    receiver.server = BackgroundServer(receiver.app(), port=port)
    await receiver.server.start()
    refused.append((await r.harness.create(webhookUrl=url))["instanceId"])
    assert await r.dispatcher.tick() == 1
    [refused_before] = await r.deliveries(refused[0])
    await receiver.server.stop()

    found_down = (await r.harness.create(webhookUrl=url))["instanceId"]
    assert await r.dispatcher.tick() == 1
    assert (await r.deliveries(found_down))[0]["lastError"] == "could not connect"

    receiver.server = BackgroundServer(receiver.app(), port=port)
    await receiver.server.start()
    try:
        answered = (await r.harness.create(webhookUrl=url))["instanceId"]
        assert await r.dispatcher.tick() == 1  # only the new message is due: the receiver is back
        assert await r.dispatcher.tick() == 1  # ... which made the one that found it down due
        assert await r.dispatcher.tick() == 0
    finally:
        await receiver.server.stop()
    assert [h.payload["instanceId"] for h in receiver.hits] == [refused[0], answered, found_down]
    [refused_after] = await r.deliveries(refused[0])
    assert refused_after["status"] == "pending" and refused_after["attempts"] == 1
    assert refused_after["nextAttemptAt"] == refused_before["nextAttemptAt"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    base = make_url(require_postgres())
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"webhooks_{uuid.uuid4().hex[:12]}"

    async def admin_do(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin_do(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin_do(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_two_replicas_share_the_outbox_each_message_once_in_order(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]], store_url: str
) -> None:
    async def slowish(_: int) -> Response:
        await asyncio.sleep(0.005)  # widen the window in which both replicas look at the same rows
        return Response("OK")

    receiver = await receivers(slowish)
    r = await rig(database_url=store_url)
    ids = await r.ready(*({"webhookUrl": receiver.url} for _ in range(4)))
    services = r.harness.services
    other_db = Database(store_url)
    other_sender = WebhookSender(WebhookPolicy(allow_loopback=True), 5.0)
    other = WebhookDispatcher(other_db, services.clock, other_sender, services.settings, services.metrics)
    workers = [asyncio.create_task(r.dispatcher.run()), asyncio.create_task(other.run())]
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while len(receiver.hits) < 20 or (await r.dispatcher.backlog())[0]:
            assert asyncio.get_running_loop().time() < deadline, len(receiver.hits)
            await asyncio.sleep(0.01)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await other_sender.close()
        await other_db.dispose()
    assert len(receiver.hits) == 20
    for instance_id in ids:
        assert receiver.statuses(instance_id) == LIFECYCLE


async def test_two_replicas_never_send_a_message_twice_while_its_receiver_is_slow(
    rig: Callable[..., Awaitable[Rig]], receivers: Callable[..., Awaitable[Receiver]], store_url: str
) -> None:
    """The receiver takes longer than the lease to answer (the clock runs on while it waits): the replica
    waiting on it renews the lease once half of it is gone, so the other replica, looking all along, never
    takes the message over and sends it again, not even once the lease as first claimed has run out."""
    answer = asyncio.Event()

    async def slow(_: int) -> Response:
        await answer.wait()
        return Response("OK")

    receiver = await receivers(slow)
    r = await rig(database_url=store_url, webhook_timeout_seconds=30)  # the call outlives any lease below
    services, clock = r.harness.services, r.harness.clock
    lease = timedelta(seconds=services.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    instance_id = (await r.harness.create(webhookUrl=receiver.url))["instanceId"]
    other_db = Database(store_url)
    other_sender = WebhookSender(WebhookPolicy(allow_loopback=True), 30.0)
    other = WebhookDispatcher(other_db, clock, other_sender, services.settings, services.metrics)

    async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while not await condition():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.01)

    async def sent() -> bool:
        return len(receiver.hits) == 1

    workers = [asyncio.create_task(r.dispatcher.run()), asyncio.create_task(other.run())]
    try:
        await until(sent, "the message sent")
        delivery_id = receiver.hits[0].headers["webhook-id"]

        async def lease_ends() -> datetime | None:
            [row] = await services.db.fetch(
                select(WebhookDelivery.lease_expires_at).where(WebhookDelivery.id == delivery_id)
            )
            ends: datetime | None = row[0]
            return ends

        async def renewed() -> bool:
            return await lease_ends() == clock.now() + lease

        first_lease_ends = await lease_ends()
        assert first_lease_ends is not None
        for _ in range(4):  # never past the lease as it stands, but well past the first one
            clock.advance((lease * 0.6).total_seconds())
            await until(renewed, "the lease renewed while the receiver is slow")
        assert clock.now() > first_lease_ends + lease
        await asyncio.sleep(POLL_SECONDS * 4)  # both replicas look again, the clock standing still
        assert r.dispatcher.last_run_at == other.last_run_at == clock.now()
        assert len(receiver.hits) == 1, "sent again by the replica that did not wait on it"
        answer.set()

        async def delivered() -> bool:
            return [d["status"] for d in await r.deliveries(instance_id)] == ["delivered"]

        await until(delivered, "the message delivered")
    finally:
        answer.set()
        for dispatcher in (r.dispatcher, other):  # as a replica shuts down: the attempt in flight finishes
            dispatcher.stop()
        await asyncio.gather(*workers, return_exceptions=True)
        await other_sender.close()
        await other_db.dispose()
    [delivery] = await r.deliveries(instance_id)
    assert delivery["attempts"] == 1 and [a["statusCode"] for a in delivery["history"]] == [200]
    assert len(receiver.hits) == 1
