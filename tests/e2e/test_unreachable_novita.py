"""A Novita nobody answers at is said at start-up (naming the URL, never the key), and a request that
needs it answers 503 within 5 s naming the host, rather than after half a minute of retries."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from novita_gpu.kit.serving import free_port
from tests.e2e.conftest import Processes
from tests.e2e.processes import wait_for

pytestmark = pytest.mark.e2e

KEY = "sk-e2e-secret-never-shown"


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        (f"http://127.0.0.1:{free_port()}/gpu-instance/openapi", "127.0.0.1"),  # nothing listens: refused
        ("http://novita.invalid/gpu-instance/openapi", "novita.invalid"),  # the name does not resolve
    ],
    ids=["refused", "unresolvable"],
)
def test_an_unreachable_novita_is_said_at_start_up_and_answered_promptly(
    processes: Processes, tmp_path: Path, base_url: str, host: str
) -> None:
    service = processes.service(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        env={"NOVITA_API_KEY": KEY, "NOVITA_API_BASE_URL": base_url},
    )

    def ask(method: str, path: str, body: dict[str, str] | None) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = httpx.request(method, f"{service.url}{path}", json=body, timeout=30)
        return response, time.monotonic() - started

    def announced() -> str | None:
        lines = [line for line in service.stdout_path.read_text().splitlines() if "novita_unreachable" in line]
        return lines[0] if lines else None

    requests = [
        ("GET", "/api/products", None),
        ("POST", "/api/instances", {"name": "job", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}),
    ]
    with ThreadPoolExecutor(len(requests)) as pool:  # at once, and while start-up tries Novita
        answers = list(pool.map(lambda request: ask(*request), requests))
    line = wait_for(announced, timeout=15, what="the start-up line saying Novita cannot be reached")
    assert base_url in line and host in line, line

    for (method, path, _), (response, elapsed) in zip(requests, answers, strict=True):
        assert response.status_code == 503, response.text
        assert elapsed < 5, f"{method} {path} took {elapsed:.1f} s"
        error = response.json()["error"]
        assert error["code"] == "UPSTREAM_UNAVAILABLE" and host in error["message"], error
        assert response.headers.get("Retry-After")

    logs = service.stdout_path.read_text() + service.stderr_path.read_text()
    assert KEY not in logs
