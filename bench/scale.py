"""Scale: thousands of instances on one process, and three replicas sharing them on PostgreSQL.

One process: `novita-gpu serve` on SQLite against `novita-gpu emulator --speed 20` with room for every
create (nothing sells out). Creates are offered at a fixed rate (200/s) by 32 concurrent clients. Figures:
creates accepted and how long, every record settled (ready, failed, or its create in doubt: sent and
unanswered, so never sent again) and how long, upstream creates (exactly one per record), the lag from a
create's acceptance (its `createdAt`) to Novita's create (the emulator's `createdAt` of the instance under
the record's unique name), resident memory of the service empty, at N ready and over a soak (nothing
changes), GET by id and the list page at N with wrk (64 connections, no pause, as api_load.py's capacity
runs), and the upstream calls made while every instance is steady.

Three replicas: the same on one PostgreSQL database, creates spread over the replicas, webhooks to a
local receiver. Figures: who held the leases (sampled from the store) before and after the kill, the
survivors' upstream calls (their `upstream_calls_total`) through the burst and once steady, create-to-ready,
and a `kill -9` of one replica in the middle of the creates: when its leases lapsed (LEASE_SECONDS is 10 s
here) and how long until each of its rows with work left was taken over, no record with two upstream
instances, every webhook delivered. 3,000 creates at 100/s by default: about 3 minutes on 2 cores, where
10,000 (`--replicas-count 10000`) take several times that.

`python -m bench scale` runs both with the defaults below; `python -m bench.scale --count 10000` and
the other flags change them (`--count 0` or `--replicas-count 0` skips a part, `--tracemalloc DIR` runs
the one process under bench/traced.py and writes snapshots at each step). PostgreSQL is found at
BENCH_POSTGRES_URL (default: the local server the tests use); without one the replicas are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import (
    GET_BY_RANDOM_ID,
    NOVITA_GPU,
    Delivery,
    ensure_wrk,
    show,
    wait_http,
    webhook_receiver,
    wrk,
)
from novita_gpu.kit.serving import free_port
from novita_gpu.observability.metrics import percentiles

COUNT = 10_000
RATE = 200.0  # creates offered per second
CLIENTS = 32
SOAK_SECONDS = 60.0
REPLICAS = 3
REPLICA_COUNT = 3_000
REPLICA_RATE = 100.0
LEASE_SECONDS = 10.0
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
SPEED = 20.0
READY_DEADLINE_SECONDS = 900.0
BODY = {"productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
# The emulator's request counts (`GET /_emulator/stats`), and the service's (`upstream_calls_total`).
LIST_CALL, CREATE_CALL = "GET /gpu/instances", "POST /gpu/instance/create"
# A create sent and still unanswered after this long is in doubt: its replica was killed while it was in
# flight (or its connection dropped). It is never sent again, so that it is never made twice; its record
# waits for its name to show in Novita's list, and fails after STARTUP_TIMEOUT_SECONDS if it never does.
IN_DOUBT_AFTER_SECONDS = 30.0
STEADY_SECONDS = 60.0  # the survivors' upstream calls once every instance is steady, counted this long


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used so far (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@contextmanager
def started(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """One of our processes, its output in `log`; terminated (or killed) on the way out."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        wait_http(ready_url, deadline_seconds=120)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def emulator_process(tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`novita-gpu emulator --speed 20` with room for every create."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [NOVITA_GPU, "emulator", "--port", str(port), "--speed", str(SPEED)]
    with started(args, {}, tmp / "emulator.log", f"{url}/_emulator/stats") as proc:
        make_room(url)
        yield url, proc


def service_env(emu: str, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "NOVITA_API_KEY": "bench-key",
        "NOVITA_API_BASE_URL": f"{emu}/gpu-instance/openapi",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def make_room(emu: str, gpus: int = 1_000_000) -> None:
    """Room for every create in every (region, product), so that nothing sells out."""
    for entry in httpx.get(f"{emu}/_emulator/capacity").json()["capacity"]:
        room = {"clusterId": entry["clusterId"], "productId": entry["productId"], "gpus": gpus}
        httpx.put(f"{emu}/_emulator/capacity", json=room).raise_for_status()


# -- creates ---------------------------------------------------------------------------------------


@dataclass
class Creates:
    accepted: dict[str, str] = field(default_factory=dict)  # name -> instance id
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    resent: int = 0  # creates sent again to another replica after theirs went away


async def create_many(
    urls: list[str], count: int, rate: float, *, prefix: str, on_progress: Any = None, alive: Any = None
) -> Creates:
    """`count` creates offered at `rate` per second by CLIENTS concurrent clients, spread over `urls` in
    turn. Each carries an Idempotency-Key; a create whose replica went away is sent to another with the same
    key (as a load balancer would retry it), so it is never made twice."""
    result = Creates()
    started_at = time.monotonic()
    next_index = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def one(i: int) -> None:
            name = f"{prefix}-{i}"
            body = {"name": name, **BODY}
            headers = {"Idempotency-Key": f"{prefix}-key-{i}"}
            for attempt in range(len(urls) * 3):
                serving = [u for u in urls if alive is None or alive(u)]  # as a load balancer would
                url = serving[(i + attempt) % len(serving)]
                try:
                    async with session.post(f"{url}/api/instances", json=body, headers=headers) as response:
                        answer = await response.json(content_type=None)
                        if response.status == 201 or response.status == 200:
                            result.accepted[name] = answer["instanceId"]
                            result.resent += attempt > 0
                            return
                        result.errors[str(response.status)] += 1
                        if response.status < 500:
                            return
                except aiohttp.ClientError as exc:
                    result.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.2)

        async def client() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                due = started_at + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await one(i)
                if on_progress is not None:
                    on_progress(len(result.accepted))

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    result.seconds = round(time.monotonic() - started_at, 1)
    return result


SETTLED = text(
    "SELECT count(CASE WHEN status = 'ready' THEN 1 END) AS ready, "
    "count(CASE WHEN status = 'failed' THEN 1 END) AS failed, "
    "count(CASE WHEN pending_action = 'create' AND novita_instance_id IS NULL AND create_attempted_at < :cut "
    "THEN 1 END) AS in_doubt FROM instances"
)


def settled(
    database_url: str, count: int, started_at: float, deadline: float = READY_DEADLINE_SECONDS
) -> dict[str, Any]:
    """Waits until each of `count` records is ready, failed or its create in doubt (IN_DOUBT_AFTER_SECONDS),
    read from the store; the seconds from `started_at` (monotonic), and how many are each."""
    return asyncio.run(_settled(database_url, count, started_at, deadline))


async def _settled(database_url: str, count: int, started_at: float, deadline: float) -> dict[str, Any]:
    engine = create_async_engine(database_url)
    try:
        end = time.monotonic() + deadline
        while True:
            cut: Any = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=IN_DOUBT_AFTER_SECONDS)
            if engine.dialect.name == "sqlite":  # stored as text, in this form
                cut = cut.strftime("%Y-%m-%d %H:%M:%S.%f")
            async with engine.connect() as conn:
                row = (await conn.execute(SETTLED, {"cut": cut})).one()._asdict()
            if row["ready"] + row["failed"] + row["in_doubt"] >= count:
                return {"seconds": round(time.monotonic() - started_at, 1), **row}
            if time.monotonic() > end:
                raise RuntimeError(f"not all {count} instances settled within {deadline} s: {row}")
            await asyncio.sleep(1.0)
    finally:
        await engine.dispose()


def upstream_truth(emu: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{emu}/_emulator/instances", timeout=120).json()["instances"])


def create_figures(records: list[tuple[str, str, float, float | None]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Upstream creates per record and the lag from acceptance to Novita's create.

    `records`: (id, upstream name, created at, ready at) as stored."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for instance in truth:
        by_name.setdefault(instance["name"], []).append(instance)
    lags = []
    twice = 0
    missing = 0
    for _id, upstream_name, created, _ready in records:
        made = by_name.get(upstream_name, [])
        if not made:
            missing += 1
            continue
        twice += len(made) > 1
        lags.append(min(i["createdAt"] for i in made) - created)
    ready = [r - c for _id, _n, c, r in records if r is not None]
    # The lag's p95 for the creates accepted in each 10 s of the burst: a lag that grows through the
    # burst means upstream creates run slower than accepted ones; a bump, a stall.
    first = min((c for _i, _n, c, _r in records), default=0.0)
    by_window: dict[int, list[float]] = {}
    for _id, upstream_name, created, _ready in records:
        if upstream_name in by_name:
            made_at = min(i["createdAt"] for i in by_name[upstream_name])
            by_window.setdefault(int((created - first) // 10), []).append(made_at - created)
    windows = [percentiles(by_window[w])["p95"] for w in sorted(by_window)]
    # Upstream creates made in each 10 s from the first acceptance: the rate the burst was sent at.
    sent = Counter(
        int((min(i["createdAt"] for i in by_name[n]) - first) // 10) for _i, n, _c, _r in records if n in by_name
    )
    return {
        "upstream_creates": sum(len(by_name.get(r[1], [])) for r in records),
        "records_created_twice": twice,
        "records_without_upstream": missing,
        "create_lag_seconds": percentiles(lags) | {"max": round(max(lags), 3) if lags else None},
        "create_to_ready_seconds": percentiles(ready),
        "create_lag_p95_by_10s_of_burst": windows,
        "upstream_creates_by_10s": [sent[w] for w in range(max(sent, default=-1) + 1)],
    }


def stored_records(database_url: str) -> list[tuple[str, str, float, float | None]]:
    """(id, upstream name, created at, ready at) of every record, read from the store."""
    return asyncio.run(_stored_records(database_url))


async def _stored_records(database_url: str) -> list[tuple[str, str, float, float | None]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, upstream_name, created_at, ready_at FROM instances"))).all()
    finally:
        await engine.dispose()
    return [(r[0], r[1], _unix(r[2]) or 0.0, _unix(r[3])) for r in rows]


def _unix(value: Any) -> float | None:
    """A stored naive-UTC timestamp (a datetime, or text on SQLite) as unix seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return float(value.replace(tzinfo=UTC).timestamp())


# -- one process -----------------------------------------------------------------------------------

LIST_PAGE = 'request = function() return wrk.format("GET", "/api/instances?limit=100") end\n'


def render_every_view(url: str) -> None:
    """Walk every list page once: each instance's view is then rendered and cached, as after clients have
    polled each one, so GET by id measures cached answers. (A timed wrk run over every id did not get
    through 10,000 first renders in its seconds, and the GET run then measured renders.)"""
    cursor: str | None = None
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            params = {"limit": "500"} | ({"cursor": cursor} if cursor else {})
            cursor = client.get("/api/instances", params=params).raise_for_status().json()["nextCursor"]
            if cursor is None:
                return


def snapshot(proc: subprocess.Popen[bytes], traced: Path | None) -> None:
    """Ask a service run under bench.traced for a tracemalloc snapshot, and wait until it is written."""
    if traced is None:
        return
    before = set(traced.glob("*.snap")) | set(traced.glob("*.json"))
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while set(traced.glob("*.snap")) | set(traced.glob("*.json")) == before and time.monotonic() < deadline:
        time.sleep(0.2)


def run_one_process(
    count: int, rate: float, soak_seconds: float, wrk_seconds: int, traced: Path | None = None
) -> dict[str, Any]:
    ensure_wrk()
    results: dict[str, Any] = {"count": count, "offered_creates_per_second": rate}
    with tempfile.TemporaryDirectory() as tmp_name, emulator_process(Path(tmp_name)) as (emu, emu_proc):
        tmp = Path(tmp_name)
        database_url = f"sqlite+aiosqlite:///{tmp / 'scale.db'}"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = service_env(emu, database_url)
        command = [NOVITA_GPU, "serve", "--port", str(port)]
        if traced is not None:
            command = [sys.executable, "-m", "bench.traced", "serve", "--port", str(port)]
            env["TRACEMALLOC_DIR"] = str(traced)
            env["PYTHONPATH"] = str(Path(__file__).parent.parent)
        with started(command, env, tmp / "service.log", f"{url}/health") as proc:
            time.sleep(2)
            results["rss_mb_empty"] = rss_mb(proc.pid)
            snapshot(proc, traced)
            httpx.delete(f"{emu}/_emulator/stats")
            t0 = time.monotonic()
            cpu0, emu_cpu0, all0 = cpu_seconds(proc.pid), cpu_seconds(emu_proc.pid), machine_busy_seconds()
            bench0 = time.process_time()
            creates = asyncio.run(create_many([url], count, rate, prefix="scale"))
            results["creates_accepted"] = len(creates.accepted)
            results["creates_seconds"] = creates.seconds
            results["create_errors"] = dict(creates.errors)
            show("creates", {"accepted": len(creates.accepted), "seconds": creates.seconds, **creates.errors})
            done = settled(database_url, len(creates.accepted), t0)
            results["all_ready_seconds"] = done.pop("seconds")
            results["ready_failed_in_doubt"] = done
            results["service_cpu_seconds_to_ready"] = round(cpu_seconds(proc.pid) - cpu0, 1)
            results["emulator_cpu_seconds_to_ready"] = round(cpu_seconds(emu_proc.pid) - emu_cpu0, 1)
            # The machine is shared: CPU used meanwhile by processes other than the service, the emulator
            # and this driver says how noisy the figures are (2 cores: 2 s of CPU per second at most).
            ours = results["service_cpu_seconds_to_ready"] + results["emulator_cpu_seconds_to_ready"]
            ours += time.process_time() - bench0
            results["other_processes_cpu_seconds_to_ready"] = round(machine_busy_seconds() - all0 - ours, 1)
            results["rss_mb_ready"] = rss_mb(proc.pid)
            snapshot(proc, traced)
            stats = httpx.get(f"{emu}/_emulator/stats").json()
            results["upstream_create_calls"] = stats.get(CREATE_CALL, 0)
            results["upstream_list_pages_to_ready"] = stats.get(LIST_CALL, 0)
            figures = create_figures(stored_records(database_url), upstream_truth(emu))
            results.update(figures)
            show("ready", {"seconds": results["all_ready_seconds"], "rss_mb": results["rss_mb_ready"]})
            show("upstream creates", figures)

            ids_file = tmp / "ids.txt"
            ids_file.write_text("\n".join(creates.accepted.values()) + "\n")
            render_every_view(url)
            wrk(url, script=LIST_PAGE, connections=16, seconds=2)
            results["get_by_id"] = wrk(url, script=GET_BY_RANDOM_ID % ids_file, connections=64, seconds=wrk_seconds)
            show(f"GET /api/instances/{{id}} at {count}, 64 conns", results["get_by_id"])
            results["list_page"] = wrk(url, script=LIST_PAGE, connections=64, seconds=wrk_seconds)
            show(f"GET /api/instances?limit=100 at {count}, 64 conns", results["list_page"])
            results["rss_mb_after_reads"] = rss_mb(proc.pid)
            snapshot(proc, traced)

            httpx.delete(f"{emu}/_emulator/stats")
            samples = []
            soak_started = time.monotonic()
            while time.monotonic() - soak_started < soak_seconds:
                time.sleep(min(5.0, soak_seconds))
                samples.append(rss_mb(proc.pid))
            steady = httpx.get(f"{emu}/_emulator/stats").json()
            window = time.monotonic() - soak_started
            results["rss_mb_soak"] = {
                "seconds": round(window),
                "first": samples[0],
                "last": samples[-1],
                "min": min(samples),
                "max": max(samples),
                "every_5s": samples,
            }
            results["steady_upstream_calls"] = steady
            results["steady_upstream_calls_per_30s"] = round(sum(steady.values()) * 30 / window, 1)
            pages_per_listing = max(1, -(-count // 100))
            results["steady_listings_per_30s"] = round(steady.get(LIST_CALL, 0) / pages_per_listing * 30 / window, 2)
            show("soak", {"rss_mb": results["rss_mb_soak"], "upstream calls": steady})
            snapshot(proc, traced)
    return results


# -- three replicas on PostgreSQL --------------------------------------------------------------


@contextmanager
def fresh_postgres_database() -> Iterator[str | None]:
    """A new, empty PostgreSQL database for this run (dropped after), or None when none is reachable."""
    base = make_url(POSTGRES_URL)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_scale_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL not reachable at {base.render_as_string()}: {exc}; replicas skipped", flush=True)
        yield None
        return
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class LeaseSampler:
    """Samples who holds the instance leases (`lease_owner`, which names the reconciler's pid) in a
    thread, every 0.2 s, and adds up row-samples per pid, for each phase (`phase` may change meanwhile:
    before and after the kill)."""

    def __init__(self, database_url: str) -> None:
        self.url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.phase = "before_kill"
        self.by_phase: dict[str, Counter[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        connection = await asyncpg.connect(self.url)
        try:
            while not self._stop.is_set():
                rows = await connection.fetch(
                    "SELECT lease_owner, count(*) FROM instances WHERE lease_expires_at > now() AT TIME ZONE 'utc' "
                    "GROUP BY lease_owner"
                )
                counts = self.by_phase.setdefault(self.phase, Counter())
                for owner, n in rows:
                    if owner and owner.startswith("reconciler-"):
                        counts[int(owner.split("-")[1])] += n
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    def __enter__(self) -> LeaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def _takeover(database_url: str, pid: int, killed_at: float, wait: float) -> dict[str, Any]:
    """What became of the rows the killed replica (pid) held: when its leases lapsed, and how long each row
    that still had work (a status on the way, an action pending) stayed with it: until another replica
    claimed it or it moved on (its version changed). Steady rows need nobody: their lease just lapses."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT id, version, status, pending_action, lease_expires_at, now() AT TIME ZONE 'utc' AS at "
            "FROM instances WHERE lease_owner LIKE $1",
            f"reconciler-{pid}-%",
        )
        seen_at = time.monotonic() - killed_at
        steady = {"ready", "stopped", "failed", "terminated"}
        held = {r["id"]: r["version"] for r in rows if r["status"] not in steady or r["pending_action"]}
        lapse = seen_at + max(((r["lease_expires_at"] - r["at"]).total_seconds() for r in rows), default=0.0)
        taken: dict[str, float] = {}
        while len(taken) < len(held) and time.monotonic() - killed_at < wait:
            for r in await connection.fetch(
                "SELECT id, version, lease_owner FROM instances WHERE id = ANY($1)", list(set(held) - set(taken))
            ):
                owner = r["lease_owner"] or ""
                if r["version"] != held[r["id"]] or (owner and not owner.startswith(f"reconciler-{pid}-")):
                    taken[r["id"]] = time.monotonic() - killed_at
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    after = sorted(taken.values())
    return {
        "rows_leased_at_kill": len(rows),
        "leases_lapsed_after_seconds": round(lapse, 1),
        "rows_with_work": len(held),
        "taken_over": len(taken),
        "seconds_to_last": round(after[-1], 1) if after else None,
        "seconds": percentiles(after),
    }


async def _webhooks_settled(database_url: str, deliveries: list[Delivery], wait: float) -> dict[str, Any]:
    """Waits until no delivery is pending (at most `wait`), then checks every delivery reached the receiver."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pending = await connection.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            if pending == 0:
                break
            await asyncio.sleep(1)
        rows = await connection.fetch("SELECT id, status FROM webhook_deliveries")
    finally:
        await connection.close()
    ids = {r["id"] for r in rows}
    received = {d.headers.get("webhook-id", "") for d in deliveries}
    return {
        "deliveries": len(ids),
        "by_status": dict(Counter(r["status"] for r in rows)),
        "not_received": len(ids - received),
        "received_duplicates_ignored": len(received - ids),
    }


def upstream_calls(url: str) -> Counter[str]:
    """The Novita calls a service made so far, by endpoint (its `upstream_calls_total`)."""
    calls: Counter[str] = Counter()
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("upstream_calls_total{"):
            labels, value = line.rsplit(" ", 1)
            endpoint = labels.split('endpoint="', 1)[1].split('"', 1)[0]
            calls[endpoint] += int(float(value))
    return calls


def run_replicas(count: int, rate: float, replicas: int = REPLICAS) -> dict[str, Any]:
    results: dict[str, Any] = {"replicas": replicas, "count": count, "offered_creates_per_second": rate}
    with (
        fresh_postgres_database() as database_url,
        tempfile.TemporaryDirectory() as tmp_name,
        webhook_receiver() as (hook_url, received),
    ):
        if database_url is None:
            return {"skipped": "no PostgreSQL"}
        tmp = Path(tmp_name)
        with emulator_process(tmp) as (emu, emu_proc), contextlib.ExitStack() as stack:
            env = service_env(
                emu,
                database_url,
                WEBHOOK_URL=hook_url,
                WEBHOOK_ALLOW_LOOPBACK="true",
                LEASE_SECONDS=str(LEASE_SECONDS),
                LOG_LEVEL="INFO",
            )
            urls, procs = [], []
            for n in range(replicas):
                port = free_port()
                urls.append(f"http://127.0.0.1:{port}")
                args = [NOVITA_GPU, "serve", "--port", str(port)]
                procs.append(stack.enter_context(started(args, env, tmp / f"replica-{n}.log", f"{urls[-1]}/health")))
            victim = procs[0]
            dead: set[str] = set()
            killed_at = 0.0

            with LeaseSampler(database_url) as sampler:

                def kill_halfway(accepted: int) -> None:
                    nonlocal killed_at
                    if not dead and accepted >= count // 2:
                        victim.send_signal(signal.SIGKILL)
                        killed_at = time.monotonic()
                        dead.add(urls[0])
                        sampler.phase = "after_kill"

                httpx.delete(f"{emu}/_emulator/stats")
                calls0 = [upstream_calls(u) for u in urls[1:]]
                cpu0 = [cpu_seconds(p.pid) for p in procs[1:]]
                emu_cpu0, all0, bench0 = cpu_seconds(emu_proc.pid), machine_busy_seconds(), time.process_time()
                t0 = time.monotonic()
                takeover: dict[str, Any] = {}
                watcher = threading.Thread(
                    target=lambda: takeover.update(
                        asyncio.run(_wait_kill_then_takeover(database_url, victim.pid, lambda: killed_at))
                    ),
                    daemon=True,
                )
                watcher.start()
                creates = asyncio.run(
                    create_many(
                        urls, count, rate, prefix="rep", on_progress=kill_halfway, alive=lambda u: u not in dead
                    )
                )
                results["creates_accepted"] = len(creates.accepted)
                results["creates_seconds"] = creates.seconds
                results["create_errors"] = dict(creates.errors)
                results["creates_resent_to_another_replica"] = creates.resent
                show(
                    "creates over replicas",
                    {"accepted": len(creates.accepted), "seconds": creates.seconds, **creates.errors},
                )
                done = settled(database_url, len(creates.accepted), t0)
                results["all_settled_seconds"] = done.pop("seconds")
                results["ready_failed_in_doubt"] = done
                # CPU from the first create until all settled: the survivors' (the killed one's is gone
                # with it), the emulator's and, on this shared machine, every other process's.
                results["survivors_cpu_seconds"] = [
                    round(cpu_seconds(p.pid) - c, 1) for p, c in zip(procs[1:], cpu0, strict=True)
                ]
                emu_cpu = round(cpu_seconds(emu_proc.pid) - emu_cpu0, 1)
                results["emulator_cpu_seconds"] = emu_cpu
                busy = machine_busy_seconds() - all0
                mine = sum(results["survivors_cpu_seconds"]) + emu_cpu + time.process_time() - bench0
                results["other_processes_cpu_seconds"] = round(busy - mine, 1)  # PostgreSQL and the killed replica too
                burst = [upstream_calls(u) - c for u, c in zip(urls[1:], calls0, strict=True)]
                stats = httpx.get(f"{emu}/_emulator/stats").json()
                results["upstream_list_pages_to_settled"] = stats.get(LIST_CALL, 0)
                results["upstream_list_pages_to_settled_by_survivor"] = [c["instances.list"] for c in burst]
                show(
                    "settled",
                    {
                        "seconds": results["all_settled_seconds"],
                        **done,
                        "cpu": results["survivors_cpu_seconds"],
                        "other_cpu": results["other_processes_cpu_seconds"],
                        "list_pages": results["upstream_list_pages_to_settled"],
                    },
                )
                watcher.join(timeout=120)
                results["kill_9_handover"] = takeover | {"lease_seconds": LEASE_SECONDS}
                show("kill -9 of one replica halfway", results["kill_9_handover"])
            pids = [p.pid for p in procs]
            results["lease_share_by_replica"] = {}
            for phase, by_pid in sampler.by_phase.items():
                total = sum(by_pid[pid] for pid in pids) or 1
                results["lease_share_by_replica"][phase] = {
                    f"replica-{n}{' (killed)' if n == 0 else ''}": round(by_pid[pid] / total, 3)
                    for n, pid in enumerate(pids)
                }
            show("leases held, share of row-samples", results["lease_share_by_replica"])
            made = [
                sum('"reconcile_created"' in line for line in (tmp / f"replica-{n}.log").read_text().splitlines())
                for n in range(replicas)
            ]
            results["upstream_creates_by_replica"] = made
            figures = create_figures(stored_records(database_url), upstream_truth(emu))
            results.update(figures)
            show("upstream creates", figures)
            results["webhooks"] = asyncio.run(_webhooks_settled(database_url, received, wait=120))
            show("webhooks", results["webhooks"])

            # Once every instance is steady: Novita's calls, and which replica made them.
            httpx.delete(f"{emu}/_emulator/stats")
            calls0 = [upstream_calls(u) for u in urls[1:]]
            window_started = time.monotonic()
            time.sleep(STEADY_SECONDS)
            steady = httpx.get(f"{emu}/_emulator/stats").json()
            window = time.monotonic() - window_started
            by_survivor = [dict(upstream_calls(u) - c) for u, c in zip(urls[1:], calls0, strict=True)]
            pages = steady.get(LIST_CALL, 0)
            listed = done["ready"]  # what Novita holds (a create in doubt was not made)
            results["steady_upstream_calls"] = steady
            results["steady_upstream_calls_per_30s"] = round(sum(steady.values()) * 30 / window, 1)
            results["steady_listings_per_30s"] = round(pages / max(1, -(-listed // 100)) * 30 / window, 2)
            results["steady_upstream_calls_by_survivor"] = by_survivor
            show(
                f"steady upstream calls in {window:.0f} s (survivors)",
                {**steady, "listings per 30 s": results["steady_listings_per_30s"], "by survivor": by_survivor},
            )
            results["rss_mb_by_survivor"] = [rss_mb(p.pid) for p in procs[1:]]
    return results


async def _wait_kill_then_takeover(database_url: str, pid: int, killed_at: Any) -> dict[str, Any]:
    while not killed_at():
        await asyncio.sleep(0.05)
    return await _takeover(database_url, pid, killed_at(), wait=60)


def run(
    count: int = COUNT,
    rate: float = RATE,
    soak_seconds: float = SOAK_SECONDS,
    replica_count: int = REPLICA_COUNT,
    replica_rate: float = REPLICA_RATE,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if count:
        print(f"-- one process, SQLite: {count} creates offered at {rate:.0f}/s", flush=True)
        results["one_process"] = run_one_process(count, rate, soak_seconds, wrk_seconds=10)
    if replica_count:
        print(f"-- {REPLICAS} replicas, PostgreSQL: {replica_count} creates at {replica_rate:.0f}/s", flush=True)
        results["replicas"] = run_replicas(replica_count, replica_rate)
    # Failed (python -m bench exits non-zero): a record created twice upstream, a webhook never received.
    parts = [part for part in results.values() if "skipped" not in part]
    results["ok"] = all(
        part["records_created_twice"] == 0 and part.get("webhooks", {}).get("not_received", 0) == 0 for part in parts
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--soak", type=float, default=SOAK_SECONDS)
    parser.add_argument("--replicas-count", type=int, default=REPLICA_COUNT, help="0 skips the replicas")
    parser.add_argument("--replicas-rate", type=float, default=REPLICA_RATE)
    parser.add_argument("--tracemalloc", type=Path, help="run the service under bench.traced, snapshots here")
    args = parser.parse_args()
    # A SIGTERM (a background run stopped) ends the run as Ctrl-C does: processes stopped, database dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.tracemalloc is not None:
        args.tracemalloc.mkdir(parents=True, exist_ok=True)
        figures = run_one_process(args.count, args.rate, args.soak, wrk_seconds=10, traced=args.tracemalloc.resolve())
        print(json.dumps(figures, indent=2))
        return
    print(json.dumps(run(args.count, args.rate, args.soak, args.replicas_count, args.replicas_rate), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
