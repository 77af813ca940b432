"""The service wired to a real emulator over loopback HTTP, both on one ManualClock.

Workers are off: a test drives the reconciler with `tick()` / `run_until()` and moves time with the
clock, so lifecycles that take minutes run in milliseconds, without sleeps.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import select

from novita_gpu.app import create_app
from novita_gpu.emulator import EmulatorConfig, create_emulator_app
from novita_gpu.kit.clock import ManualClock
from novita_gpu.kit.db import Database
from novita_gpu.kit.serving import BackgroundServer
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance
from novita_gpu.services import Services, build_services
from tests.fixtures.databases import fresh_database

NOVITA_KEY = "sk_harness_key_123456"
SEED_BODY = {"name": "my-instance", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        *,
        database_url: str | None = None,
        emulator: EmulatorConfig | None = None,
        **settings: Any,
    ) -> None:
        self.clock = ManualClock()
        self.emulator_server = BackgroundServer(create_emulator_app(emulator or EmulatorConfig(), self.clock))
        self.database_url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        self.settings_overrides = settings
        self.services: Services
        self.http: httpx.AsyncClient
        self.emulator: httpx.Client

    async def start(self) -> Harness:
        self.emulator_server.start_in_thread()
        base = f"{self.emulator_server.url}/gpu-instance/openapi"
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "novita_api_key": NOVITA_KEY,
            "novita_api_base_url": base,
            "workers_enabled": False,
            "webhook_allow_loopback": True,
            "log_format": "console",
            "log_level": "WARNING",
            "novita_retry_deadline_seconds": 1.0,
            **self.settings_overrides,
        }
        self.settings = Settings(_env_file=None, **values)
        self.services = await build_services(self.settings, self.clock)
        app = create_app(services=self.services)
        self.app = app
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
        self.emulator = httpx.Client(base_url=self.emulator_server.url, timeout=10)
        return self

    async def stop(self) -> None:
        await self.services.events.close()
        await self.http.aclose()
        await self.services.aclose()
        self.emulator.close()
        self.emulator_server.stop_thread()

    async def __aenter__(self) -> Harness:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- driving -------------------------------------------------------------------------------------

    async def tick(self, times: int = 1) -> None:
        """One pass of the pool keeper, the volume worker, the reconciler, then the prober (what the app's workers do on
        their own)."""
        for _ in range(times):
            await self.services.pool_keeper.tick()
            await self.services.volume_worker.tick()
            await self.services.reconciler.tick()
            await self.services.prober.tick()

    async def run_until(
        self, done: Callable[[], Awaitable[bool]], *, max_seconds: float = 600, step: float = 0.5
    ) -> None:
        """Tick and advance the clock until `done()`; fails after `max_seconds` of emulated time."""
        waited = 0.0
        while True:
            await self.tick()
            if await done():
                return
            if waited >= max_seconds:
                raise AssertionError(f"condition not met after {max_seconds} emulated seconds")
            self.clock.advance(step)
            waited += step

    async def until_status(self, instance_id: str, *statuses: str, max_seconds: float = 600) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.instance(instance_id))["status"] in statuses

        await self.run_until(reached, max_seconds=max_seconds)
        return await self.instance(instance_id)

    # -- our API ---------------------------------------------------------------------------------

    async def create(self, **body: Any) -> dict[str, Any]:
        payload = {**SEED_BODY, "name": f"inst-{uuid.uuid4().hex[:8]}", **body}
        response = await self.http.post("/api/instances", json=payload)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def instance(self, instance_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/instances/{instance_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def events(self, instance_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/api/instances/{instance_id}/events")
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def upstream_name(self, instance_id: str) -> str:
        """The name the instance has, or will have, in Novita (from the store)."""
        async with self.services.db.read() as session:
            name = await session.scalar(select(Instance.upstream_name).where(Instance.id == instance_id))
        assert name is not None
        return name

    # -- the emulator (Novita) -------------------------------------------------------------------

    def upstream_instances(self) -> list[dict[str, Any]]:
        response = self.emulator.get("/_emulator/instances")
        assert response.status_code == 200, response.text
        body = response.json()
        items: list[dict[str, Any]] = body["instances"] if isinstance(body, dict) else body
        return items

    def live_upstream(self) -> list[dict[str, Any]]:
        return [i for i in self.upstream_instances() if i.get("status") != "removed"]

    def novita_create(self, name: str, *, product_id: str | None = None, image_url: str = "img") -> str:
        """Create an instance directly in Novita (the emulator), behind the service's back: one GPU of
        `product_id` (by default Novita's first product). Returns its Novita id."""
        auth = {"Authorization": "Bearer outside-key"}
        if product_id is None:
            product_id = self.emulator.get("/gpu-instance/openapi/v1/products", headers=auth).json()["data"][0]["id"]
        body = {
            "name": name,
            "productId": product_id,
            "gpuNum": 1,
            "rootfsSize": 60,
            "imageUrl": image_url,
            "kind": "gpu",
        }
        response = self.emulator.post("/gpu-instance/openapi/v1/gpu/instance/create", json=body, headers=auth)
        assert response.status_code == 200, response.text
        novita_instance_id: str = response.json()["id"]
        return novita_instance_id

    def novita_action(self, action: str, novita_instance_id: str) -> None:
        """Start/stop/delete an instance directly in Novita (the emulator), behind the service's back."""
        response = self.emulator.post(
            f"/gpu-instance/openapi/v1/gpu/instance/{action}",
            json={"instanceId": novita_instance_id},
            headers={"Authorization": "Bearer outside-key"},
        )
        assert response.status_code == 200, response.text

    def faults(self, **changes: Any) -> None:
        response = self.emulator.put("/_emulator/faults", json=changes)
        assert response.status_code == 200, response.text

    def capacity(self, cluster_id: str, product_id: str, gpus: int) -> None:
        response = self.emulator.put(
            "/_emulator/capacity", json={"clusterId": cluster_id, "productId": product_id, "gpus": gpus}
        )
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self.emulator.get("/_emulator/stats").json()
        return stats


@asynccontextmanager
async def harness_on(store: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Harness]:
    """A started harness on a fresh database: `store` is "sqlite" (a file) or "postgres" (a new database on
    the real server, dropped afterwards)."""
    async with fresh_database(store, tmp_path) as url, Harness(tmp_path, database_url=url, **settings) as harness:
        yield harness


@asynccontextmanager
async def second_replica(harness: Harness) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """Another service on the harness's store, emulator and clock (a second replica, when the store is
    PostgreSQL): an HTTP client to it, and its services (its workers off, as the harness's are)."""
    services = await build_services(harness.settings, harness.clock)
    transport = httpx.ASGITransport(app=create_app(services=services))
    client = httpx.AsyncClient(transport=transport, base_url="http://localhost")
    try:
        yield client, services
    finally:
        await client.aclose()
        await services.events.close()
        await services.aclose()


@asynccontextmanager
async def store_with_instances(store: str, tmp_path: Path, count: int) -> AsyncIterator[tuple[Database, list[str]]]:
    """A fresh database (as `harness_on`) holding `count` instance rows, made through the API by a harness
    stopped before the caller runs: the store, open, and the rows' ids in the order they were created."""
    async with fresh_database(store, tmp_path) as url:
        harness = await Harness(tmp_path, database_url=url).start()
        try:
            ids = [(await harness.create())["instanceId"] for _ in range(count)]
        finally:
            await harness.stop()
        db = Database(url)
        try:
            yield db, ids
        finally:
            await db.dispose()
