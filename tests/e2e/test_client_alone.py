"""The client distribution alone: a fresh virtual environment with only `pip install ./client` is
small and quick to import, its `novita-gpu` says how to get the command line, and with `./client[cli]`
the quick start runs against a real `novita-gpu serve` (started from the main environment): create, wait
until ready, stop, once through the SDK and once through the CLI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.client_alone import ClientVenv, shared_client_venv
from tests.e2e.conftest import Processes
from tests.e2e.processes import ServiceProcess, clean_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # the first test builds the environment from PyPI

MAX_PACKAGES = 12
MAX_MEGABYTES = 15.0
MAX_IMPORT_MS = 150.0
PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
SERVER_PACKAGES = {"novita-gpu", "fastapi", "uvicorn", "sqlalchemy", "asyncpg", "aiohttp", "redis", "alembic"}

QUICK_START = """
import asyncio, json, sys
from novita_gpu_client import AsyncClient, Client

with Client(sys.argv[1]) as client:
    created = client.create("quick-sdk", "RTX 4090 24GB", "pytorch-jupyter", auto_stop_minutes=30)
    ready = client.wait_for(created["instanceId"], timeout=60)
    client.stop(created["instanceId"])
    stopped = client.wait_for(created["instanceId"], "stopped", timeout=60)

async def seen() -> str:
    async with AsyncClient(sys.argv[1]) as client:
        return (await client.get_by_name("quick-sdk"))["status"]

print(json.dumps({
    "ready": ready["status"],
    "ports": len(ready["connectionDetails"]["ports"]),
    "stopped": stopped["status"],
    "async": asyncio.run(seen()),
    "server_modules": sorted(m for m in sys.modules if m.split(".")[0] == "novita_gpu"),
}))
"""


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    return shared_client_venv(tmp_path_factory)


def test_a_fresh_install_of_the_client_is_small_and_quick_to_import(client_venv: ClientVenv) -> None:
    report = f"{sorted(client_venv.packages)}, {client_venv.size_mb:.1f} MB, import {client_venv.import_own_ms} ms (CPU {client_venv.import_cpu_ms})"
    assert "novita-gpu-client" in client_venv.packages, report
    assert len(client_venv.packages) <= MAX_PACKAGES, report
    assert client_venv.size_mb <= MAX_MEGABYTES, report
    assert not SERVER_PACKAGES & {name.lower() for name in client_venv.packages}, report
    assert client_venv.import_ms <= MAX_IMPORT_MS, report
    # The command line is in the cli extra; without it the command says how to get it, in one line.
    code, stderr = client_venv.without_extra
    assert code == 1 and stderr.count("\n") == 1 and "pip install 'novita-gpu-client[cli]'" in stderr, stderr
    assert {"typer", "rich"} <= set(client_venv.cli_packages), client_venv.cli_packages


@pytest.fixture
def service(processes: Processes, sqlite_url: str) -> ServiceProcess:
    return processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})


def run(argv: list[str | Path], service: ServiceProcess, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **clean_environment(),
        "NOVITA_GPU_URL": service.url,
        "NOVITA_GPU_CONFIG": str(tmp_path / "no-config.toml"),
        "COLUMNS": "120",
    }
    env.pop("NOVITA_GPU_PROFILE", None)
    env.pop("NOVITA_GPU_API_KEY", None)
    done = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_quick_start_through_the_sdk_with_only_the_client_installed(
    client_venv: ClientVenv, service: ServiceProcess, tmp_path: Path
) -> None:
    script = tmp_path / "quick_start.py"
    script.write_text(QUICK_START)
    answer = json.loads(run([client_venv.python, script, service.url], service, tmp_path).stdout)
    assert answer == {
        "ready": "ready",
        "ports": answer["ports"],
        "stopped": "stopped",
        "async": "stopped",
        "server_modules": [],
    }
    assert answer["ports"] > 0
    importable = subprocess.run(
        [str(client_venv.python), "-c", "import novita_gpu"], capture_output=True, text=True, timeout=60, check=False
    )
    assert importable.returncode == 1 and "No module named 'novita_gpu'" in importable.stderr


def test_the_quick_start_through_the_cli_with_only_the_client_installed(
    client_venv: ClientVenv, service: ServiceProcess, tmp_path: Path
) -> None:
    cli = client_venv.novita_gpu
    commands = run([cli, "--help"], service, tmp_path).stdout.split("Commands:", 1)[1]
    assert "instances" in commands and "serve" not in commands and "db " not in commands  # the server adds those
    created = run(
        [cli, "instances", "create", "--name", "quick-cli", "--product", PRODUCT, "--template", TEMPLATE, "--wait"],
        service,
        tmp_path,
    )
    assert "ready" in created.stdout, created.stdout + created.stderr
    run([cli, "instances", "stop", "quick-cli"], service, tmp_path)
    run([cli, "instances", "wait", "quick-cli", "--for", "stopped", "--timeout", "60"], service, tmp_path)
    shown = json.loads(run([cli, "instances", "get", "quick-cli", "--json"], service, tmp_path).stdout)
    assert (shown["name"], shown["status"]) == ("quick-cli", "stopped")
