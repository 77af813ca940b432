"""A real emulator on a loopback port, driven by a shared ManualClock (no real waiting)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from novita_gpu.emulator import EmulatorConfig, create_emulator_app
from novita_gpu.kit.clock import ManualClock
from novita_gpu.kit.serving import BackgroundServer

API = "/gpu-instance/openapi/v1"
KEY = "sk_test_key"


@dataclass
class Emulator:
    url: str
    clock: ManualClock
    api: httpx.Client  # Novita API, authenticated
    http: httpx.Client  # control API, instance ports, raw requests

    def create(self, **overrides: Any) -> str:
        response = self.api.post("/gpu/instance/create", json=create_body(**overrides))
        assert response.status_code == 200, response.text
        instance_id: str = response.json()["id"]
        return instance_id

    def get(self, instance_id: str) -> dict[str, Any]:
        return ok_json(self.api.get("/gpu/instance", params={"instanceId": instance_id}))

    def status(self, instance_id: str) -> str:
        return str(self.get(instance_id)["status"])

    def action(self, action: str, instance_id: str) -> httpx.Response:
        return self.api.post(f"/gpu/instance/{action}", json={"instanceId": instance_id})

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def faults(self, **changes: Any) -> dict[str, Any]:
        return ok_json(self.http.put("/_emulator/faults", json=changes))


def ok_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 200 answer; any other answer fails the test, showing its body."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "test-instance",
        "productId": "4090.16c62g",
        "gpuNum": 1,
        "rootfsSize": 60,
        "imageUrl": "pytorch/pytorch:latest",
        "kind": "gpu",
        "ports": "8888/http, 22/tcp",
        "envs": [{"key": "A", "value": "1"}],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _start(config: EmulatorConfig) -> tuple[BackgroundServer, Emulator]:
    clock = ManualClock()
    server = BackgroundServer(create_emulator_app(config, clock))
    server.start_in_thread()
    emulator = Emulator(
        url=server.url,
        clock=clock,
        api=httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {KEY}"}, timeout=5),
        http=httpx.Client(base_url=server.url, timeout=5),
    )
    return server, emulator


def _stop(server: BackgroundServer, emulator: Emulator) -> None:
    emulator.api.close()
    emulator.http.close()
    server.stop_thread()


@pytest.fixture(scope="module")
def _shared_emulator() -> Iterator[Emulator]:
    server, emulator = _start(EmulatorConfig())
    yield emulator
    _stop(server, emulator)


@pytest.fixture
def emu(_shared_emulator: Emulator) -> Emulator:
    """The module's default emulator, reset to a fresh world for each test."""
    assert _shared_emulator.http.post("/_emulator/reset").status_code == 200
    return _shared_emulator


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start an emulator with a custom configuration (stopped after the test)."""
    started: list[tuple[BackgroundServer, Emulator]] = []

    def make(**config: Any) -> Emulator:
        pair = _start(EmulatorConfig(**config))
        started.append(pair)
        return pair[1]

    yield make
    for server, emulator in started:
        _stop(server, emulator)
