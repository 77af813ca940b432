"""Lifecycle at scale: 200 instances created at once against the emulator, webhooks to a local receiver.

Measures: readiness detection lag (emulator's app-booted time -> our readyAt) p95 <= 1.5 s;
upstream calls while all are steady (list calls only, one page per 100 instances per tick); webhook
delivery lag (status change -> receiver) p95 <= 1 s with 200 instances changing at once.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.common import emulator, service, show
from novita_gpu.kit.serving import BackgroundServer
from novita_gpu.observability.metrics import percentiles

COUNT = 200
SLOW_TICK_SECONDS = 2.0


def receiver() -> tuple[BackgroundServer, list[tuple[float, dict[str, Any]]]]:
    received: list[tuple[float, dict[str, Any]]] = []

    async def hook(request: Request) -> Response:
        received.append((time.time(), json.loads(await request.body())))
        return Response("OK")

    server = BackgroundServer(Starlette(routes=[Route("/webhook", hook, methods=["POST"])]))
    server.start_in_thread()
    return server, received


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def create_all(url: str) -> list[str]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(i: int) -> str:
            body = {"name": f"bench-{i}", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
            # As a careful client does: a connection closed under the request (a keep-alive the server
            # dropped as it was reused, on a loaded machine) is sent again under the same Idempotency-Key.
            headers = {"Idempotency-Key": f"bench-{i}"}
            for attempt in range(3):
                try:
                    response = await client.post("/api/instances", json=body, headers=headers)
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        raise
            response.raise_for_status()
            return str(response.json()["instanceId"])

        return list(await asyncio.gather(*(one(i) for i in range(COUNT))))


def wait_ready(url: str, deadline_seconds: float = 240) -> list[dict[str, Any]]:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/instances", params={"limit": 500}, timeout=30).json()
        statuses = [i["status"] for i in body["instances"]]
        if all(s in ("ready", "failed") for s in statuses) and len(statuses) == COUNT:
            return list(body["instances"])
        time.sleep(0.5)
    raise RuntimeError("instances did not all become ready in time")


def run() -> dict[str, Any]:
    results: dict[str, Any] = {}
    hook_server, received = receiver()
    try:
        with tempfile.TemporaryDirectory() as tmp_name, emulator(Path(tmp_name), speed=1.0) as emu:
            tmp = Path(tmp_name)
            env = {
                "NOVITA_API_KEY": "bench-key",
                "NOVITA_API_BASE_URL": f"{emu}/gpu-instance/openapi",
                "WEBHOOK_URL": f"{hook_server.url}/webhook",
                "WEBHOOK_ALLOW_LOOPBACK": "true",
                "RECONCILE_SLOW_SECONDS": str(SLOW_TICK_SECONDS),
                "LOG_LEVEL": "WARNING",
            }
            with service(tmp, **env) as url:
                started = time.monotonic()
                ids = asyncio.run(create_all(url))
                results["create_200_seconds"] = round(time.monotonic() - started, 2)
                instances = wait_ready(url)
                results["all_ready_seconds"] = round(time.monotonic() - started, 2)
                results["failed"] = sum(i["status"] == "failed" for i in instances)
                truth = {t["name"]: t for t in httpx.get(f"{emu}/_emulator/instances").json()["instances"]}
                lags = []
                for inst in instances:
                    upstream = next(t for name, t in truth.items() if name.startswith(f"{inst['name']}-"))
                    lags.append(epoch(inst["readyAt"]) - upstream["appBootedAt"])
                results["upstream_instances"] = len(truth)
                results["readiness_lag_seconds"] = percentiles(lags)
                show("readiness detection lag (s)", results["readiness_lag_seconds"])

                httpx.delete(f"{emu}/_emulator/stats")
                window = 5 * SLOW_TICK_SECONDS
                time.sleep(window)
                stats = httpx.get(f"{emu}/_emulator/stats").json()
                calls = sum(stats.values())
                results["steady_calls"] = stats
                results["steady_calls_per_tick"] = round(calls / (window / SLOW_TICK_SECONDS), 2)
                show("steady upstream calls", {"window_s": window, "by_endpoint": stats})

                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and len(received) < COUNT * 5:
                    time.sleep(0.2)
                webhook_lags = [arrived - epoch(payload["timestamp"]) for arrived, payload in received]
                results["webhooks_received"] = len(received)
                results["webhook_lag_seconds"] = percentiles(webhook_lags)
                show("webhook delivery lag (s)", results["webhook_lag_seconds"])
                by_status: dict[str, list[float]] = {}
                for (_arrived, payload), lag in zip(received, webhook_lags, strict=True):
                    by_status.setdefault(str(payload["status"]), []).append(lag)
                results["webhook_lag_by_status"] = {k: percentiles(v) for k, v in by_status.items()}
                for status, figures in results["webhook_lag_by_status"].items():
                    show(f"   {status:15s}", figures)
                assert len(ids) == COUNT
    finally:
        hook_server.stop_thread()
    return results


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
