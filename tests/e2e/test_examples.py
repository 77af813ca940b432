"""The examples in examples/ run as a user runs them: a job driven through the Python client against a
real `novita-gpu serve`, its webhooks received and signature-checked by the example receiver. Both run in
an environment where only the client distribution is installed (client_alone.py), as a user's would."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from novita_gpu.kit.serving import free_port
from tests.e2e.client_alone import ClientVenv, shared_client_venv
from tests.e2e.conftest import Processes
from tests.e2e.processes import clean_environment, wait_for

# Its environment may have to be built first (from PyPI), once per session.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    return shared_client_venv(tmp_path_factory)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_gpu_job_with_its_webhooks_received_and_verified(
    processes: Processes, sqlite_url: str, tmp_path: Path, client_venv: ClientVenv
) -> None:
    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20", "WEBHOOK_SECRET": SECRET})
    port = free_port()
    received = tmp_path / "received.txt"
    env = {**clean_environment(), "WEBHOOK_SECRET": SECRET, "NOVITA_GPU_URL": service.url}
    with received.open("w") as out:
        receiver = subprocess.Popen(
            [str(client_venv.python), str(EXAMPLES / "webhook_receiver.py"), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "listening" in received.read_text() or None, timeout=10, what="the example receiver")
        job = subprocess.run(
            [
                str(client_venv.python),
                str(EXAMPLES / "gpu_job.py"),
                "--name",
                "example-job",
                "--steps",
                "2",
                "--webhook-url",
                f"http://127.0.0.1:{port}/webhook",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert job.returncode == 0, job.stdout + job.stderr
        assert re.search(r"^ready: http://", job.stdout, re.MULTILINE), job.stdout
        assert len(re.findall(r"^step \d: the app answered 200", job.stdout, re.MULTILINE)) == 2, job.stdout
        assert "stopped (USER)" in job.stdout

        wanted = ["creating", "starting", "running", "health_checking", "ready", "stopping", "stopped"]

        def all_received() -> list[str] | None:
            moves = re.findall(r"example-job: \S+ -> (\w+)", received.read_text())
            return moves if len(moves) >= len(wanted) else None

        assert wait_for(all_received, timeout=30, what="every webhook") == wanted
        assert re.search(r"-> ready \{\"ports\": \[", received.read_text())
        forged = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-d",
                "{}",
                "-H",
                "webhook-id: msg_x",
                "-H",
                "webhook-timestamp: 1",
                "-H",
                "webhook-signature: v1,AAAA",
                f"http://127.0.0.1:{port}/webhook",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert forged.stdout == "401"
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
