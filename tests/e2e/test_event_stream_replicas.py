"""Two replicas on one PostgreSQL store: a stream (and `novita-gpu events --follow`) connected to replica A
sees, within about a second, a change made through replica B, and either replica replays the same events.
And a replica's SIGTERM ends its streams at once, so their clients move to another replica."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from novita_gpu.sdk.events import SseDecoder
from tests.e2e.conftest import Processes
from tests.e2e.processes import NOVITA_GPU, clean_environment

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 60.0
BODY = {"name": "watched", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
STATUSES = ["creating", "starting", "running", "health_checking", "ready"]


def read_lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def test_a_stream_on_one_replica_sees_changes_made_through_the_other(postgres_url: str, processes: Processes) -> None:
    emulator = processes.emulator(speed=20.0)
    a, b = (processes.service(postgres_url, emulator=emulator, label=f"replica-{n}") for n in "ab")
    cli = subprocess.Popen(
        [str(NOVITA_GPU), "events", "--follow", "--json", "--after", "0", "--url", a.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
    )
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(cli.stdout, printed), daemon=True).start()
    try:
        with httpx.Client(base_url=a.url, timeout=30.0) as http, http.stream("GET", "/api/events/stream") as response:
            assert response.status_code == 200
            # The headers come once the stream is registered: what happens from now on is its to see.
            created = httpx.post(f"{b.url}/api/instances", json=BODY, timeout=10.0)
            assert created.status_code == 201, created.text
            made_at = time.monotonic()
            instance_id = created.json()["instanceId"]
            decoder, latency = SseDecoder(), None
            seen: list[tuple[int, str]] = []
            deadline = time.monotonic() + READY_TIMEOUT
            for line in response.iter_lines():
                assert time.monotonic() < deadline, seen
                message = decoder.feed(line)
                if message is None or not message.event:  # nothing, or the stream's position (id only)
                    continue
                body = json.loads(message.data)
                assert body["instanceId"] == instance_id
                if latency is None:
                    latency = time.monotonic() - made_at
                seen.append((int(message.id or 0), body["status"]))
                if body["status"] == "ready":
                    break
        assert latency is not None and latency < 1.5, f"replica A saw B's create after {latency:.2f} s"
        assert [status for _, status in seen] == STATUSES
        # Replica B replays exactly what replica A streamed.
        with (
            httpx.Client(base_url=b.url, timeout=30.0) as http,
            http.stream(
                "GET", f"/api/instances/{instance_id}/events/stream", params={"after": "0", "follow": "false"}
            ) as replay,
        ):
            decoder = SseDecoder()
            replayed = [int(m.id or 0) for line in replay.iter_lines() if (m := decoder.feed(line)) is not None]
        assert replayed == [event_id for event_id, _ in seen]
        # The CLI following replica A printed the same changes, one JSON object per line.
        lines: list[dict[str, Any]] = []
        while not lines or lines[-1]["status"] != "ready":
            lines.append(json.loads(printed.get(timeout=READY_TIMEOUT)))
        assert [(line["id"], line["status"]) for line in lines] == seen
    finally:
        cli.terminate()
        cli.wait(timeout=10)


def test_sigterm_ends_open_streams_at_once_with_a_reason(sqlite_url: str, processes: Processes) -> None:
    """uvicorn waits up to 10 s for open responses before it shuts the app down; a stream never ends by
    itself, so SIGTERM first closes every stream (SHUTDOWN), and the server is gone well before that."""
    service = processes.service(sqlite_url)
    with httpx.Client(base_url=service.url, timeout=30.0) as http, http.stream("GET", "/api/events/stream") as response:
        assert response.status_code == 200
        started = time.monotonic()
        threading.Thread(target=service.terminate, daemon=True).start()
        decoder = SseDecoder()
        messages = [m for line in response.iter_lines() if (m := decoder.feed(line)) is not None]
        assert messages[0].event == "" and messages[0].id == "0"  # the position: no event in the store yet
        closes = messages[1:]
        assert time.monotonic() - started < 5
    assert [(m.event, json.loads(m.data)["code"]) for m in closes] == [("close", "SHUTDOWN")]
    deadline = time.monotonic() + 8
    while service.running:
        assert time.monotonic() < deadline, "the service did not exit within 8 s of SIGTERM"
        time.sleep(0.05)
