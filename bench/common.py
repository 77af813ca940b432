"""Shared bench plumbing: start our processes, wait for them, run wrk, print figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from novita_gpu.kit.serving import BackgroundServer, free_port

BENCH_DIR = Path(__file__).parent
NOVITA_GPU = str(Path(sys.executable).parent / "novita-gpu")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (Debian package) ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def wait_http(url: str, deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {deadline_seconds} s")


def spawn(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start one of our processes, its stdout and stderr appended to `log` (a restart adds to the same log)."""
    with log.open("ab") as out:
        return subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def serve_command(port: int) -> list[str]:
    return [NOVITA_GPU, "serve", "--port", str(port)]


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    log.unlink(missing_ok=True)
    proc = spawn(args, env, log)
    try:
        wait_http(ready_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def service(tmp: Path, **env: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}", "LOG_FORMAT": "json", **env}
    with process(serve_command(port), full_env, tmp / "service.log", f"{url}/health"):
        yield url


@contextmanager
def emulator(tmp: Path, speed: float = 1.0) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [NOVITA_GPU, "emulator", "--port", str(port), "--speed", str(speed)]
    with process(args, {}, tmp / "emulator.log", f"{url}/_emulator/stats"):
        yield url


# A wrk script: GET /api/instances/{id}, each request one id at random from a file of ids, one a line (%s).
GET_BY_RANDOM_ID = """
local ids = {}
init = function(args)
  for line in io.lines("%s") do ids[#ids + 1] = line end
end
request = function()
  return wrk.format("GET", "/api/instances/" .. ids[math.random(#ids)])
end
"""


def wrk(url: str, *, script: str, connections: int, seconds: int, threads: int = 1) -> dict[str, float]:
    """Run wrk with `script` (Lua, request part) + the JSON reporter; returns its figures."""
    reporter = (BENCH_DIR / "wrk_report.lua").read_text()
    lua = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{free_port()}.lua"
    lua.write_text(script + "\n" + reporter)
    try:
        result = subprocess.run(
            [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(lua), url],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        lua.unlink(missing_ok=True)
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("{"))
    figures: dict[str, float] = json.loads(line)
    return figures


def show(title: str, figures: Mapping[str, object]) -> None:
    print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def make_room(emulator_url: str, gpus: int = 100_000) -> None:
    """Give every (region, product) of the emulator room for `gpus` GPUs, so that nothing sells out."""
    for entry in httpx.get(f"{emulator_url}/_emulator/capacity").json()["capacity"]:
        room = {"clusterId": entry["clusterId"], "productId": entry["productId"], "gpus": gpus}
        httpx.put(f"{emulator_url}/_emulator/capacity", json=room).raise_for_status()


@dataclass(frozen=True)
class Delivery:
    """One webhook request as a receiver saw it."""

    arrived: float  # unix seconds
    headers: dict[str, str]  # lower-case names
    payload: dict[str, Any]


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[Delivery]]]:
    """A local webhook receiver (uvicorn in a thread) answering 200 to each POST /webhook; yields its URL
    and the list of deliveries received so far, in arrival order."""
    received: list[Delivery] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        received.append(Delivery(time.time(), {k.lower(): v for k, v in request.headers.items()}, json.loads(body)))
        return Response("OK")

    server = BackgroundServer(Starlette(routes=[Route("/webhook", hook, methods=["POST"])]))
    server.start_in_thread()
    try:
        yield f"{server.url}/webhook", received
    finally:
        server.stop_thread()
