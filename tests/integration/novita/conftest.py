"""The contract tests' emulator: one server per test module, reset before each test, and our client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.novita import NovitaClient
from tests.fixtures.novita_client import Observed, Sleeps
from tests.fixtures.novita_emulator import KEY, Emulator, serve


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    server, emulator = serve(EmulatorConfig(api_keys=[KEY]))
    yield emulator
    emulator.control.close()
    server.stop_thread()


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    assert shared_emulator.control.post("/_emulator/reset").status_code == 200
    return shared_emulator


@pytest.fixture
async def client(emu: Emulator, sleeps: Sleeps, observed: Observed) -> AsyncIterator[NovitaClient]:
    async with NovitaClient(emu.base_url, KEY, timeout=5, max_attempts=4, observer=observed, sleep=sleeps) as c:
        yield c
