"""`python -m bench stream`: what event-stream subscribers cost the service, and how fast events reach them.

One `novita-gpu serve` (built-in emulator at EMULATOR_SPEED=20, SQLite) with 500 open streams: its CPU and
resident memory while they are idle (against the same process with none), then 10 instances created at
once, each going through 5 statuses, and the time from each status change (its event's timestamp) to its
arrival at every one of the 500 subscribers. Targets: idle subscribers under 5% of a core and
50 MB, every event at every subscriber within 1 s at p99.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import process, serve_command, show
from novita_gpu.kit.serving import free_port

SUBSCRIBERS = 500
INSTANCES = 10
STATUSES_TO_READY = 5
IDLE_SECONDS = 10.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_percent(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - started)


class Subscriber:
    """One raw SSE connection: the arrival delay of each event, by event id."""

    def __init__(self) -> None:
        self.delays: dict[int, float] = {}
        self.ready: set[str] = set()
        self.connected = asyncio.Event()

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        await writer.drain()
        event_id = None
        try:
            while line := await reader.readline():
                if line == b"\r\n" and not self.connected.is_set():
                    self.connected.set()  # end of the headers
                elif line.startswith(b"id: "):
                    event_id = int(line[4:])
                elif line.startswith(b"data: ") and event_id is not None:
                    body = json.loads(line[6:])
                    at = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
                    self.delays[event_id] = time.time() - at
                    if body["status"] == "ready":
                        self.ready.add(body["instanceId"])
        finally:
            writer.close()


async def fan_out(port: int, url: str, pid: int) -> dict[str, Any]:
    subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
    tasks = [asyncio.create_task(s.run(port)) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subscribers)), 60)
    await asyncio.sleep(2)  # past the connection burst
    idle_cpu = await asyncio.to_thread(cpu_percent, pid, IDLE_SECONDS)
    idle_rss = rss_mb(pid)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = await asyncio.gather(
            *(
                http.post(
                    "/api/instances",
                    json={"name": f"fan-{n}", "productName": "RTX 4090 24GB", "templateId": "ubuntu-ssh"},
                )
                for n in range(INSTANCES)
            )
        )
    ids = {r.json()["instanceId"] for r in created}
    deadline = time.monotonic() + 90
    while any(not ids <= s.ready for s in subscribers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delays = sorted(d for s in subscribers for d in s.delays.values())
    expected = INSTANCES * STATUSES_TO_READY * SUBSCRIBERS

    def pct(p: float) -> float:
        return round(1000 * delays[min(len(delays) - 1, int(p * len(delays)))], 1) if delays else float("nan")

    return {
        "idle_cpu_percent": round(idle_cpu, 2),
        "idle_rss_mb": round(idle_rss, 1),
        "deliveries": len(delays),
        "deliveries_expected": expected,
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "latency_max_ms": round(1000 * delays[-1], 1) if delays else float("nan"),
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "EMULATOR_SPEED": "20",
            "EVENT_STREAMS_PER_KEY": str(SUBSCRIBERS + 10),
        }
        with process(serve_command(port), env, Path(tmp) / "service.log", f"{url}/health") as proc:
            time.sleep(2)
            base_cpu = cpu_percent(proc.pid, IDLE_SECONDS)
            base_rss = rss_mb(proc.pid)
            figures = asyncio.run(fan_out(port, url, proc.pid))
    result: dict[str, Any] = {
        "subscribers": SUBSCRIBERS,
        "cpu_percent_without": round(base_cpu, 2),
        "cpu_percent_with_idle_subscribers": figures["idle_cpu_percent"],
        "cpu_percent_added": round(figures["idle_cpu_percent"] - base_cpu, 2),
        "rss_mb_without": round(base_rss, 1),
        "rss_mb_with_idle_subscribers": figures["idle_rss_mb"],
        "rss_mb_added": round(figures["idle_rss_mb"] - base_rss, 1),
        **{k: v for k, v in figures.items() if not k.startswith("idle_")},
    }
    result["ok"] = (
        result["cpu_percent_added"] < 5
        and result["rss_mb_added"] < 50
        and result["deliveries"] == result["deliveries_expected"]
        and result["latency_p99_ms"] < 1000
    )
    show("stream", result)
    return result


if __name__ == "__main__":
    run()
