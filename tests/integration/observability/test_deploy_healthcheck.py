"""The image's HEALTHCHECK, run as Docker runs it (a process), against a service on a real port: it passes
on a healthy service whatever HTTP_PROXY says, and fails when /health answers 503 or nothing answers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from novita_gpu.kit.db import Database
from novita_gpu.kit.serving import free_port
from tests.fixtures.live_service import live_service

DOCKERFILE = Path(__file__).resolve().parents[3] / "Dockerfile"


def healthcheck_argv() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    argv: list[str] = json.loads(line.split(" CMD ", 1)[1])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


async def run_healthcheck(port: int, **env: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *healthcheck_argv(),
        env={**os.environ, "PORT": str(port), **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_the_healthcheck_passes_on_a_healthy_service_even_behind_allowed_hosts(tmp_path: Path) -> None:
    async with live_service(tmp_path, api_key="k" * 32, allowed_hosts="gpu.example.com") as live:
        port = int(live.url.rsplit(":", 1)[1])
        # A proxy that does not exist: the check must not go through it.
        dead_proxy = f"http://127.0.0.1:{free_port()}"
        assert await run_healthcheck(port, HTTP_PROXY=dead_proxy, http_proxy=dead_proxy) == 0


async def test_the_healthcheck_fails_when_the_store_does_not_answer(tmp_path: Path) -> None:
    async with live_service(tmp_path) as live:
        port = int(live.url.rsplit(":", 1)[1])
        services = live.harness.services
        await services.db.dispose()
        unreachable = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
        services.db = services.dispatcher.db = unreachable
        try:
            assert await run_healthcheck(port) != 0  # /health answers 503
        finally:
            await unreachable.dispose()


async def test_the_healthcheck_fails_when_nothing_listens() -> None:
    assert await run_healthcheck(free_port()) != 0
