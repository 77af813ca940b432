"""Replicas started at the same moment on a new PostgreSQL database: every one must come up
(one of three once exited with "Application startup failed", a UniqueViolation creating alembic_version)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import ServiceProcess

pytestmark = pytest.mark.e2e

REPLICAS = 3


def test_three_replicas_started_at_once_on_a_fresh_postgres_database_all_serve(
    postgres_url: str, processes: Processes
) -> None:
    emulator = processes.emulator(speed=5.0)

    def start(n: int) -> ServiceProcess:
        return processes.service(postgres_url, emulator=emulator, label=f"replica-{n}")

    with ThreadPoolExecutor(max_workers=REPLICAS) as pool:
        replicas = list(pool.map(start, range(REPLICAS)))

    for replica in replicas:
        assert httpx.get(f"{replica.url}/health", timeout=5.0).status_code == 200
