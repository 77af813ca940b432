"""The `novita-gpu` client commands as a user runs them: separate processes against a real
`novita-gpu serve` with its built-in emulator (20x faster), configured only through NOVITA_GPU_URL."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from novita_gpu.serving import free_port
from tests.e2e.conftest import Processes
from tests.e2e.processes import NOVITA_GPU, ServiceProcess, clean_environment

pytestmark = pytest.mark.e2e


def cli(service_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_environment(), "NOVITA_GPU_URL": service_url, "COLUMNS": "200"}
    return subprocess.run([str(NOVITA_GPU), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def ok_json(service_url: str, *args: str) -> Any:
    result = cli(service_url, *args, "--json")
    assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture
def service(processes: Processes, sqlite_url: str) -> ServiceProcess:
    return processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})


def test_a_user_drives_an_instance_through_its_life_from_the_command_line(service: ServiceProcess) -> None:
    url = service.url
    create = ["instances", "create", "--name", "cli-box", "--product", "RTX 4090 24GB", "--template"]
    ready = ok_json(url, *create, "pytorch-jupyter", "--wait", "--timeout", "120")
    assert ready["status"] == "ready" and ready["name"] == "cli-box"
    assert any(p["type"] == "http" for p in ready["connectionDetails"]["ports"])

    by_name = ok_json(url, "instances", "get", "cli-box")
    assert by_name["instanceId"] == ready["instanceId"]
    listed = ok_json(url, "instances", "list", "--status", "ready")
    assert [i["instanceId"] for i in listed] == [ready["instanceId"]]

    table = cli(url, "instances", "list")
    assert table.returncode == 0 and "cli-box" in table.stdout and "ready" in table.stdout

    assert ok_json(url, "instances", "stop", "--name", "cli-box")["status"] == "stopping"
    stopped = ok_json(url, "instances", "wait", ready["instanceId"], "--for", "stopped", "--timeout", "120")
    assert stopped["status"] == "stopped" and stopped["statusReason"] == "USER"
    assert ok_json(url, "instances", "delete", ready["instanceId"])["status"] == "terminating"
    gone = ok_json(url, "instances", "wait", ready["instanceId"], "--for", "terminated", "--timeout", "120")
    flow = [e["to"] for e in ok_json(url, "instances", "events", gone["instanceId"])["events"]]
    assert flow[:5] == ["creating", "starting", "running", "health_checking", "ready"]
    assert flow[-4:] == ["stopping", "stopped", "terminating", "terminated"]


def test_errors_exit_non_zero_with_the_server_s_code_and_request_id(service: ServiceProcess) -> None:
    missing = cli(service.url, "instances", "get", "inst_does_not_exist")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: INSTANCE_NOT_FOUND:") and "request " in missing.stderr

    unreachable = cli(f"http://127.0.0.1:{free_port()}", "health")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr
