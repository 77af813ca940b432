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
from pathlib import Path

import httpx

from novita_gpu.serving import free_port

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


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
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
    with process([NOVITA_GPU, "serve", "--port", str(port)], full_env, tmp / "service.log", f"{url}/health"):
        yield url


@contextmanager
def emulator(tmp: Path, speed: float = 1.0) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [NOVITA_GPU, "emulator", "--port", str(port), "--speed", str(speed)]
    with process(args, {}, tmp / "emulator.log", f"{url}/_emulator/stats"):
        yield url


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
