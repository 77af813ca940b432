"""The seed guide's examples, taken from the guide at test time and run unchanged (only the base URL is
swapped) with bash + curl + jq, Python + requests and Node 20's fetch against a real `novita-gpu serve`
using its built-in emulator. Each test has its own server and store, since the examples use fixed names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import ServiceProcess, clean_environment

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_CANDIDATES = (
    REPO_ROOT.parent / "shared" / "seed" / "api-quick-start.md",
    Path(__file__).resolve().parent / "seed" / "api-quick-start.md",
)
SEED_BASE_URL = "http://localhost:3000"
EXAMPLE_TIMEOUT = 60.0


def seed_guide() -> str:
    """The shared seed next to the clone when present, else the copy committed beside this test."""
    for path in SEED_CANDIDATES:
        if path.exists():
            return path.read_text()
    raise FileNotFoundError(f"seed guide not found at any of {[str(p) for p in SEED_CANDIDATES]}")


def code_block(heading: str, language: str) -> str:
    """The first fenced `language` block after the line `heading` in the seed guide."""
    pattern = re.compile(
        rf"^{re.escape(heading)}[ \t]*\n.*?^```{re.escape(language)}[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL
    )
    match = pattern.search(seed_guide())
    assert match is not None, f"no {language} block under {heading!r} in the seed guide"
    return match.group(1)


def against(service: ServiceProcess, code: str) -> str:
    assert SEED_BASE_URL in code, "the example no longer uses the seed's base URL"
    return code.replace(SEED_BASE_URL, service.url)


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=clean_environment(), capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{argv} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def created_id(stdout: str) -> str:
    match = re.search(r"^Instance created: (inst_\w+)$", stdout, re.MULTILINE)
    assert match is not None, f"no 'Instance created' line in:\n{stdout}"
    return match.group(1)


def assert_ready_with_http_port(service: ServiceProcess, instance_id: str) -> dict[str, Any]:
    """Our API says ready, with an http port whose endpoint really answers."""
    instance: dict[str, Any] = httpx.get(f"{service.url}/api/instances/{instance_id}", timeout=5.0).json()
    assert instance["status"] == "ready", instance
    http_ports = [p for p in instance["connectionDetails"]["ports"] if p["type"] == "http"]
    assert http_ports, instance["connectionDetails"]
    for port in http_ports:
        assert httpx.get(port["endpoint"], timeout=5.0).status_code == 200, port
    return instance


@pytest.fixture
def service(processes: Processes, sqlite_url: str) -> ServiceProcess:
    return processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})


def test_bash_simple_instance_creation(service: ServiceProcess, tmp_path: Path) -> None:
    assert shutil.which("jq") and shutil.which("curl"), "the bash example needs curl and jq"
    script = tmp_path / "simple.sh"
    script.write_text(against(service, code_block("### 1. Simple Instance Creation and Usage", "bash")))

    stdout = run(["bash", str(script)], tmp_path).stdout

    assert "Instance is ready!" in stdout
    printed_details = json.loads(stdout.split("Instance is ready!\n", 1)[1])
    listed = httpx.get(f"{service.url}/api/instances", params={"name": "test-instance"}, timeout=5.0).json()
    assert [i["name"] for i in listed["instances"]] == ["test-instance"]
    instance = assert_ready_with_http_port(service, listed["instances"][0]["instanceId"])
    assert printed_details == instance["connectionDetails"]


def test_python_example(service: ServiceProcess, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(against(service, code_block("## Python Example", "python")))

    stdout = run([sys.executable, str(script)], tmp_path).stdout

    assert "Error:" not in stdout, stdout
    assert re.search(r"^Instance ready! \{'ports': \[", stdout, re.MULTILINE), stdout
    assert re.search(r"^Ready: \{.*'status': 'ready'", stdout, re.MULTILINE), stdout
    assert_ready_with_http_port(service, created_id(stdout))


def test_javascript_example(service: ServiceProcess, tmp_path: Path) -> None:
    script = tmp_path / "example.mjs"
    script.write_text(against(service, code_block("## JavaScript Example", "javascript")))

    result = run(["node", str(script)], tmp_path)

    assert result.stderr.strip() == "", result.stderr
    assert re.search(r"^Instance ready! \{\s+ports: \[", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^Ready: \{.*status: 'ready'", result.stdout, re.MULTILINE | re.DOTALL), result.stdout
    assert_ready_with_http_port(service, created_id(result.stdout))


def test_health_monitoring_check_health(service: ServiceProcess, tmp_path: Path) -> None:
    """`checkHealth` uses relative URLs (browser style): the wrapper only gives fetch a base URL and calls
    it once; the snippet's own `setInterval` is left in place and ended by the exit."""
    snippet = code_block("### 3. Health Monitoring", "javascript")
    script = tmp_path / "health.mjs"
    script.write_text(
        f"const realFetch = globalThis.fetch;\n"
        f"globalThis.fetch = (path, init) => realFetch(new URL(path, {json.dumps(service.url)}), init);\n"
        f"{snippet}\n"
        "const healthy = await checkHealth();\n"
        "process.exit(healthy === true ? 0 : 1);\n"
    )

    stdout = run(["node", str(script)], tmp_path).stdout

    assert re.search(r"^Service healthy, uptime: \d", stdout, re.MULTILINE), stdout
