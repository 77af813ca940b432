"""One store, one Novita: a replica of another Novita (its own built-in emulator, say) is refused at
start-up with one line while the store holds live instances, and welcome once none is left."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from novita_gpu.kit.serving import free_port
from tests.e2e.conftest import Processes
from tests.e2e.processes import NOVITA_GPU, clean_environment
from tests.e2e.test_crash_safety import create, wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CONFIG_ERROR = 2


def serve_in_emulator_mode(store: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`novita-gpu serve` without NOVITA_API_KEY (its own emulator), expected to give up on its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(NOVITA_GPU), "serve", "--port", str(free_port())],
        env={**clean_environment(), "DATABASE_URL": store, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
    )


def test_an_emulator_mode_replica_cannot_join_a_store_of_real_novita(
    processes: Processes, postgres_url: str, tmp_path: Path
) -> None:
    emulator = processes.emulator(speed=20)
    replica = processes.service(postgres_url, emulator=emulator, env={"RECONCILE_SLOW_SECONDS": "1"})
    instance = wait_for_status(replica, create(replica, "shared")["instanceId"], "ready", timeout=60)

    refused = serve_in_emulator_mode(postgres_url, tmp_path / "other")
    assert refused.returncode == CONFIG_ERROR, refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("error: this store holds 1 instance of the Novita API (NOVITA_API_KEY mode)"), line
    assert "its own built-in emulator" in line and "NOVITA_API_KEY" in line, line
    assert wait_for_status(replica, instance["instanceId"], "ready", timeout=5)["status"] == "ready"

    assert httpx.delete(f"{replica.url}/api/instances/{instance['instanceId']}", timeout=5).status_code == 202
    wait_for_status(replica, instance["instanceId"], "terminated", timeout=60)
    replica.terminate()
    # Nothing live is left in the store: it may move to another Novita (here: an emulator of its own).
    moved = processes.service(postgres_url, label="emulator-mode")
    assert httpx.get(f"{moved.url}/health", timeout=5).json()["mode"] == "emulator"


def test_two_emulator_mode_replicas_cannot_share_a_store(
    processes: Processes, postgres_url: str, tmp_path: Path
) -> None:
    first = processes.service(postgres_url, env={"EMULATOR_SPEED": "20"})
    create(first, "mine")
    refused = serve_in_emulator_mode(postgres_url, tmp_path / "second")
    assert refused.returncode == CONFIG_ERROR, refused.stderr
    assert "emulated account" in refused.stderr and "standalone `novita-gpu emulator`" in refused.stderr
