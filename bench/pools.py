"""`python -m bench pools` (issue 26): how long a user waits for a ready GPU, cold or from a warm pool.

One `novita-gpu serve` (its settings' defaults, auto-stop off) on a SQLite file in a temp dir against
`novita-gpu emulator --speed 15` with room for every create. The template's image (pytorch-jupyter's) is
given a size through `PUT /_emulator/images` (15 GB at Novita's 0.1 GB/s: a cold pull is 150 emulated
seconds), and each cluster many nodes (`nodesPerCluster`), so that every create lands on a node that has
never pulled it: a cold create stays cold. It measures the time from a request's send to the instance's
`readyAt` (awaited with `GET /api/instances/{id}?waitFor=ready`) for:

1. a cold create (`POST /api/instances`, no pool, in EU-01): 50 in batches of 10, then 50 at once;
2. a claim from stopped (`POST /api/pools/{name}/claim` on a pool with `minStopped: 50`, `minReady: 0`,
   all 50 stopped before the first claim; US-CA-06): 50 one after the other, then 50 at once;
3. a claim from ready (a pool with `minReady: 50`): answered `ready` at once, so the time is the HTTP
   answer's latency; 50 one after the other, then 50 at once;
4. a prewarmed cold create: a pool with `prewarm: true` in US-TX-04 (one stopped member, so that the pool
   knows its cluster) asks Novita to prewarm the image there; once its task has `Succeeded`, plain cold
   creates with `region: US-TX-04`: 50 in batches of 10, then 50 at once.

A pool's `max` is the count, so no refill runs during a round (a member being refilled would be handed out
`ready` once booted, before the keeper stops it); after each round the claimed instances are deleted and
the pool refills to its targets. Figures are printed in EMULATED seconds (real seconds times the
emulator's speed), as the waits would be on Novita, with the real seconds beside them and the service's
own share in real seconds ("ours"): from the request to its call reaching Novita (the emulator's create,
or start), plus from the app's boot there to our `readyAt`. That share is the service's own work, polling
and probing, which does not run faster with the emulator: multiplied by the speed it is overstated, so
the emulated figures of the short paths are upper bounds (Novita's part is the rest). A ready claim is the
service's answer alone: its real latency is the figure that counts.

It prints each pool's idle cost per hour (`GET /api/pools/{name}`, `idleCost`) with all its members idle,
what 50 ready and 50 stopped members cost per hour, and the trade-off in money. Checks: every claim got a
distinct instance (by record and by Novita id: no member handed out twice), from the source its round is
about (`claim.source`), every measured instance reached `ready` (the prewarmed ones in the prewarmed
cluster), no 5xx answer, no error logged, and each pool refilled to its targets at the end. A pool that
never fills ends the run there. Exits non-zero (through `python -m bench`) when a check fails; the logs,
the store and report.json then stay in a temp dir (`POOLS_KEEP=1` keeps them anyway). `python -m
bench.pools --help` for the counts, the batch, the speed, the image's size and service settings. About 4
minutes on 2 cores at the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.chaos import Service, log_lines
from bench.common import emulator, make_room, show
from novita_gpu.observability.metrics import percentiles

COUNT = 50
BATCH = 10
SPEED = 15.0
IMAGE_GB = 15.0
PULL_GB_PER_SECOND = 0.1
NODES_PER_CLUSTER = 100_000  # every create on a fresh node: a cold create never finds the image there
PRODUCT = "RTX 4090 24GB"
TEMPLATE = "pytorch-jupyter"
TEMPLATE_ID = "101"  # the emulator's id of pytorch-jupyter, whose image is sized
COLD_REGION = "EU-01"
POOL_REGION = "US-CA-06"
PREWARM_REGION = "US-TX-04"
# Real seconds: a pool's fill (cold creates at the emulator's speed, then the keeper's parking), one instance
# to ready, a prewarm task.
FILL_SECONDS = 180.0
READY_SECONDS = 120.0
PREWARM_SECONDS = 180.0


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class PoolNeverFilled(RuntimeError):
    """A pool that did not reach its targets in time (the run stops there)."""


@dataclass
class Sample:
    """One request for a GPU and what became of it."""

    path: str  # cold | stopped | ready | prewarmed
    round: str  # sequential | at once
    name: str
    sent: float  # unix seconds, just before the request
    latency: float  # real seconds to the HTTP answer
    status_code: int
    instance_id: str | None = None
    answered_status: str | None = None
    source: str | None = None  # claim.source
    status: str | None = None  # after the wait
    ready_at: float | None = None
    novita_id: str | None = None
    cluster_id: str | None = None
    called_at: float | None = None  # the emulator's truth: the create, or the start, reached Novita
    app_booted_at: float | None = None  # and the app booted

    @property
    def seconds(self) -> float | None:
        """Real seconds from the request to ready: a ready claim's answer, else its readyAt."""
        if self.path == "ready":
            return self.latency if self.answered_status == "ready" else None
        return None if self.ready_at is None else self.ready_at - self.sent

    @property
    def service_share(self) -> float | None:
        """Real seconds of the service's own: from the request to its call reaching Novita (the emulator's
        create, or start), and from the app's boot there to our readyAt (noticing it, probing it)."""
        if self.path == "ready" or None in (self.ready_at, self.called_at, self.app_booted_at):
            return None
        assert self.ready_at is not None and self.called_at is not None and self.app_booted_at is not None
        return (self.called_at - self.sent) + (self.ready_at - self.app_booted_at)


@dataclass
class Bench:
    url: str
    emu: str
    speed: float
    http: httpx.AsyncClient = field(init=False)
    answers: Counter[str] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, never sent again: a 5xx is a finding, kept with what was asked and answered."""
        response = await self.http.request(method, path, **kwargs)
        self.answers[f"{method} {response.status_code}"] += 1
        if response.status_code >= 500:
            self.server_errors.append(
                {
                    "request": f"{method} {path}",
                    "body": kwargs.get("json"),
                    "status": response.status_code,
                    "answer": response.text[:1000],
                }
            )
        return response

    # -- pools ---------------------------------------------------------------------------------------

    async def make_pool(self, name: str, region: str, **targets: Any) -> dict[str, Any]:
        body = {"name": name, "productName": PRODUCT, "templateId": TEMPLATE, "region": region, **targets}
        response = await self.request("POST", "/api/pools", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/pools {body} answered {response.status_code}: {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    async def pool(self, name: str) -> dict[str, Any]:
        response = await self.request("GET", f"/api/pools/{name}")
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    async def full(self, name: str, *, claimed: int, seconds: float = FILL_SECONDS) -> dict[str, Any]:
        """Wait until the pool holds exactly its targets idle (none warming) and `claimed` claimed ones;
        PoolNeverFilled past `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            view = await self.pool(name)
            members = view["members"]
            wanted = {"ready": view["minReady"], "stopped": view["minStopped"], "warming": 0, "claimed": claimed}
            if all(members[k] == v for k, v in wanted.items()):
                return view
            if time.monotonic() > deadline:
                raise PoolNeverFilled(
                    f"pool {name} did not reach {wanted} within {seconds:.0f} s; GET /api/pools/{name} answered "
                    + json.dumps(view)
                )
            await asyncio.sleep(0.5)

    # -- requests for a GPU --------------------------------------------------------------------------

    async def create(self, path: str, round_: str, name: str, region: str) -> Sample:
        body = {"name": name, "productName": PRODUCT, "templateId": TEMPLATE, "region": region}
        return await self._ask(path, round_, name, "/api/instances", body)

    async def claim(self, path: str, round_: str, name: str, pool: str) -> Sample:
        return await self._ask(path, round_, name, f"/api/pools/{pool}/claim", {"name": name})

    async def _ask(self, path: str, round_: str, name: str, url: str, body: dict[str, Any]) -> Sample:
        sent = time.time()
        started = time.perf_counter()
        response = await self.request("POST", url, json=body)
        sample = Sample(path, round_, name, sent, time.perf_counter() - started, response.status_code)
        self.samples.append(sample)
        if response.status_code != 201:
            sample.status = f"refused {response.status_code}: {response.text[:300]}"
            return sample
        answer = response.json()
        sample.instance_id = answer["instanceId"]
        sample.answered_status = answer["status"]
        sample.source = (answer.get("claim") or {}).get("source")
        if answer["status"] == "ready":
            self._took(sample, answer)
            return sample
        await self.wait_ready(sample)
        return sample

    async def wait_ready(self, sample: Sample) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            params = {"waitFor": "ready,failed,terminated", "timeout": 30}
            response = await self.request("GET", f"/api/instances/{sample.instance_id}", params=params)
            if response.status_code == 200:
                view = response.json()
                if view["status"] in ("ready", "failed", "terminated"):
                    self._took(sample, view)
                    return
            else:
                await asyncio.sleep(0.5)
        sample.status = "not ready in time"

    @staticmethod
    def _took(sample: Sample, view: dict[str, Any]) -> None:
        sample.status = view["status"]
        sample.ready_at = epoch(view["readyAt"]) if view.get("readyAt") else None
        sample.novita_id = view.get("novitaInstanceId")
        sample.cluster_id = view.get("clusterId")

    async def rounds(self, count: int, batch: int, ask: Callable[[int], Awaitable[Sample]]) -> list[Sample]:
        """`count` requests, `batch` at a time (each batch awaited to ready before the next)."""
        done: list[Sample] = []
        for first in range(0, count, batch):
            done += await asyncio.gather(*(ask(i) for i in range(first, min(count, first + batch))))
        return done

    async def delete_all(self, samples: list[Sample]) -> None:
        ids = [s.instance_id for s in samples if s.instance_id]
        for first in range(0, len(ids), 25):
            await asyncio.gather(*(self.request("DELETE", f"/api/instances/{i}") for i in ids[first : first + 25]))

    async def boots(self) -> None:
        """Each sample's upstream call and app boot as the emulator saw them: the create's, or for a claim
        from stopped the start's (the first `toStart` after the request) and its latest boot."""
        truth = {t["id"]: t for t in (await self.http.get(f"{self.emu}/_emulator/instances")).json()["instances"]}
        for sample in self.samples:
            seen = truth.get(sample.novita_id or "")
            if seen is None or sample.app_booted_at is not None:
                continue
            if sample.path == "stopped":
                starts = [h["at"] for h in seen["history"] if h["status"] == "toStart" and h["at"] >= sample.sent]
                sample.called_at = starts[0] if starts else None
            else:
                sample.called_at = seen["createdAt"]
            sample.app_booted_at = seen.get("appBootedAt")


# -- the drive ---------------------------------------------------------------------------------------


async def drive(bench: Bench, results: dict[str, Any], count: int, batch: int) -> None:
    limits = httpx.Limits(max_connections=max(64, 2 * count))
    async with httpx.AsyncClient(base_url=bench.url, timeout=60, limits=limits) as bench.http:
        # The prewarm pool first: its task runs while the cold creates are measured, in another cluster.
        await bench.make_pool("prewarm", PREWARM_REGION, minStopped=1, max=1, prewarm=True)

        print(f"cold creates in {COLD_REGION} ...", flush=True)
        cold = await bench.rounds(
            count, batch, lambda i: bench.create("cold", "sequential", f"cold-s-{i}", COLD_REGION)
        )
        cold += await bench.rounds(count, count, lambda i: bench.create("cold", "at once", f"cold-a-{i}", COLD_REGION))
        await bench.boots()
        await bench.delete_all(cold)

        print("filling a pool of stopped members and one of ready members ...", flush=True)
        # max = count: no refill runs during a round (a refill kept stopped is handed out ready while it boots).
        await bench.make_pool("stopped", POOL_REGION, minStopped=count, minReady=0, max=count)
        await bench.make_pool("ready", POOL_REGION, minReady=count, minStopped=0, max=count)
        idle: dict[str, dict[str, Any]] = {}
        for name in ("stopped", "ready"):
            started = time.monotonic()
            view = await bench.full(name, claimed=0)
            idle[name] = view["idleCost"]
            results.setdefault("fill_real_seconds", {})[name] = round(time.monotonic() - started, 1)

        for name in ("stopped", "ready"):
            print(f"claims from {name} ...", flush=True)
            first = await bench.rounds(count, 1, claims(bench, name, "sequential"))
            await bench.delete_all(first)
            await bench.full(name, claimed=0)
            second = await bench.rounds(count, count, claims(bench, name, "at once"))
            await bench.boots()
            await bench.delete_all(second)
            results.setdefault("pools_at_end", {})[name] = await bench.full(name, claimed=0)

        print(f"waiting for the prewarm in {PREWARM_REGION} ...", flush=True)
        task = await prewarmed(bench)
        results["prewarm_task"] = task
        idle["prewarm"] = (await bench.pool("prewarm"))["idleCost"]
        warm = await bench.rounds(
            count, batch, lambda i: bench.create("prewarmed", "sequential", f"warm-s-{i}", PREWARM_REGION)
        )
        warm += await bench.rounds(
            count, count, lambda i: bench.create("prewarmed", "at once", f"warm-a-{i}", PREWARM_REGION)
        )
        await bench.boots()
        results["prewarm_cluster"] = task["clusterId"]
        results["idle_cost"] = idle
        results["pools_at_end"]["prewarm"] = await bench.pool("prewarm")


def claims(bench: Bench, pool: str, round_: str) -> Callable[[int], Awaitable[Sample]]:
    return lambda i: bench.claim(pool, round_, f"{pool}-{round_[0]}-{i}", pool)


async def prewarmed(bench: Bench) -> dict[str, Any]:
    deadline = time.monotonic() + PREWARM_SECONDS
    while True:
        view = await bench.pool("prewarm")
        tasks = view["prewarm"]["tasks"]
        done = [t for t in tasks if t["state"] == "Succeeded"]
        if done:
            task: dict[str, Any] = done[0]
            return task
        if time.monotonic() > deadline or any(t["state"] == "Failed" for t in tasks):
            raise PoolNeverFilled(
                f"the prewarm pool's task did not succeed; GET /api/pools/prewarm: {json.dumps(view)}"
            )
        await asyncio.sleep(1)


# -- figures and checks ------------------------------------------------------------------------------


def figures(samples: list[Sample], speed: float) -> dict[str, Any]:
    took = [s.seconds for s in samples if s.seconds is not None]
    if not took:
        return {"n": 0}
    emulated = percentiles(took, speed)
    real = percentiles(took)
    out: dict[str, Any] = {
        "n": len(took),
        "p50": round(emulated["p50"] or 0, 1),
        "p95": round(emulated["p95"] or 0, 1),
        "max": round(max(took) * speed, 1),
        "real p50": real["p50"],
        "real p95": real["p95"],
    }
    lags = [s.service_share for s in samples if s.service_share is not None]
    if lags:
        lag = percentiles(lags)
        out["ours p50 (real s)"] = round(lag["p50"] or 0, 2)
        out["ours p95 (real s)"] = round(lag["p95"] or 0, 2)
    return out


def findings(bench: Bench, prewarm_cluster: str | None) -> dict[str, list[Any]]:
    claims = [s for s in bench.samples if s.path in ("stopped", "ready")]
    found: dict[str, list[Any]] = {}
    for key, attribute in (("instance", "instance_id"), ("novita instance", "novita_id")):
        seen = Counter(getattr(s, attribute) for s in claims if getattr(s, attribute))
        found[f"claims sharing one {key}"] = [
            {"id": k, "claims": [s.name for s in claims if getattr(s, attribute) == k]}
            for k, n in seen.items()
            if n > 1
        ]
    found["claims not from the pool's source"] = [
        {"claim": s.name, "source": s.source} for s in claims if s.status_code == 201 and s.source != s.path
    ]
    found["not ready"] = [
        {"request": s.name, "instance": s.instance_id, "status": s.status}
        for s in bench.samples
        if s.seconds is None or s.status != "ready"
    ]
    found["prewarmed creates elsewhere"] = [
        {"create": s.name, "clusterId": s.cluster_id}
        for s in bench.samples
        if s.path == "prewarmed" and s.cluster_id != prewarm_cluster
    ]
    found["service 5xx"] = bench.server_errors
    return found


def error_lines(log: Path) -> list[str]:
    return log_lines(log, ['"level":"error"', '"level":"critical"', "Traceback"], 1000)


def report(results: dict[str, Any], bench: Bench, log: Path, speed: float) -> bool:
    paths = (
        ("cold", "cold create"),
        ("stopped", "claim from stopped"),
        ("ready", "claim from ready"),
        ("prewarmed", "prewarmed cold create"),
    )
    table: dict[str, Any] = {}
    batch = results["batch"]
    print(
        f"request to ready, emulated s (real s x speed {speed:g}), real s beside; sequential: claims one by one, "
        f"creates {batch} at a time",
        flush=True,
    )
    for path, title in paths:
        for round_ in ("sequential", "at once"):
            mine = [s for s in bench.samples if s.path == path and s.round == round_]
            fig = figures(mine, speed)
            table[f"{path} {round_}"] = fig
            show(f"   {title:22s} {round_:10s}", fig)
    results["to_ready"] = table

    idle = results.get("idle_cost", {})
    ready_cost = idle.get("ready", {}).get("usdPerHour", 0.0)
    stopped_cost = idle.get("stopped", {}).get("usdPerHour", 0.0)
    count = results["count"]
    for name, cost in idle.items():
        show(f"idle cost of pool {name} ($/h)", cost)
    p50 = {path: (table.get(f"{path} sequential") or {}).get("p50") for path, _ in paths}
    if p50["ready"] is not None and p50["stopped"] is not None and p50["cold"] is not None:
        trade = (
            f"keeping {count} ready members costs ${ready_cost:.2f}/h (${ready_cost / count:.4f}/h each), "
            f"{count} stopped ones ${stopped_cost:.2f}/h (${stopped_cost / count:.4f}/h each): a ready member "
            f"saves {p50['stopped'] - p50['ready']:.0f} s per claim over a stopped one for "
            f"${(ready_cost - stopped_cost) / count:.4f}/h more, a stopped one "
            f"{p50['cold'] - p50['stopped']:.0f} s over a cold create (p50, emulated s)"
        )
        results["trade_off"] = trade
        print(trade, flush=True)

    found = findings(bench, results.get("prewarm_cluster"))
    errors = error_lines(log)
    found["service error log lines"] = errors
    ends = results.get("pools_at_end", {})
    found["pools not at their targets at the end"] = [
        {"pool": name, "members": view["members"], "minReady": view["minReady"], "minStopped": view["minStopped"]}
        for name, view in ends.items()
        if (view["members"]["ready"], view["members"]["stopped"]) != (view["minReady"], view["minStopped"])
    ]
    if len(ends) != 3:
        found["pools not at their targets at the end"].append({"pools checked": sorted(ends)})
    counts = {name: len(items) for name, items in found.items()}
    print(f"{'check':40s} {'count':>6s}  verdict", flush=True)
    for name, value in counts.items():
        print(f"{name:40s} {value:6d}  {'FAIL' if value else 'ok'}", flush=True)
    for name, items in found.items():
        if items:
            print(f"-- {name}: e.g.", flush=True)
            for item in items[:3]:
                print("   " + json.dumps(item, default=str)[:800], flush=True)
    show("answers", dict(sorted(bench.answers.items())))
    results["counts"] = counts
    results["examples"] = {name: items[:5] for name, items in found.items() if items}
    results["answers"] = dict(bench.answers)
    return not any(counts.values())


# -- the run -----------------------------------------------------------------------------------------


def run(
    count: int = COUNT,
    batch: int = BATCH,
    speed: float = SPEED,
    image_gb: float = IMAGE_GB,
    pull_gb_per_second: float = PULL_GB_PER_SECOND,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    if not 1 <= count <= 100:
        raise ValueError("count must be 1-100: a pool's max (the count here) is at most 100")
    tmp = Path(tempfile.mkdtemp(prefix="pools-"))
    results: dict[str, Any] = {
        "count": count,
        "batch": batch,
        "emulator_speed": speed,
        "image_gb": image_gb,
        "pull_gb_per_second": pull_gb_per_second,
        "cold_pull_emulated_seconds": round(image_gb / pull_gb_per_second, 1),
        "service_env": env or {},
    }
    print(f"logs in {tmp}", flush=True)
    print(
        f"emulator speed {speed:g}: figures in emulated seconds (real x {speed:g}); image {image_gb:g} GB at "
        f"{pull_gb_per_second:g} GB/s (a cold pull {image_gb / pull_gb_per_second:.0f} emulated s)",
        flush=True,
    )
    began = time.monotonic()
    ok = False
    try:
        with emulator(tmp, speed=speed) as emu:
            make_room(emu)
            template = httpx.get(
                f"{emu}/gpu-instance/openapi/v1/template",
                params={"templateId": TEMPLATE_ID},
                headers={"Authorization": "Bearer bench"},
            )
            template.raise_for_status()
            image = template.json()["template"]["image"]
            settings = {
                "sizesGb": {image: image_gb},
                "pullGbPerSecond": pull_gb_per_second,
                "nodesPerCluster": NODES_PER_CLUSTER,
            }
            httpx.put(f"{emu}/_emulator/images", json=settings).raise_for_status()
            results["image"] = image
            service_env = {
                "NOVITA_API_KEY": "any",
                "NOVITA_API_BASE_URL": f"{emu}/gpu-instance/openapi",
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'pools.db'}",
                "AUTO_STOP_ENABLED": "false",
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                **(env or {}),
            }
            service = Service(tmp, service_env)
            bench = Bench(service.url, emu, speed)
            try:
                service.wait_up()
                try:
                    asyncio.run(drive(bench, results, count, batch))
                except PoolNeverFilled as exc:
                    print(f"STOPPED: {exc}", flush=True)
                    results["stopped_at"] = str(exc)
                ok = report(results, bench, service.log, speed) and "stopped_at" not in results
            finally:
                service.stop()
            results["samples"] = [{**vars(s), "seconds": s.seconds} for s in bench.samples]
            results["ok"] = ok
            (tmp / "report.json").write_text(json.dumps(results, indent=2, default=str))
            del results["samples"]  # in report.json only
    finally:
        results["ok"] = ok
        results["total_seconds"] = round(time.monotonic() - began, 1)
        print(f"pools run took {results['total_seconds']} s", flush=True)
        if ok and not os.environ.get("POOLS_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept for inspection: {tmp} (service.log, emulator.log, pools.db, report.json)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT, help="requests per path and round (1-100)")
    parser.add_argument("--batch", type=int, default=BATCH, help="cold creates sent together in the sequential round")
    parser.add_argument("--speed", type=float, default=SPEED, help="the emulator's speed")
    parser.add_argument("--image-gb", type=float, default=IMAGE_GB, help="the template image's size")
    parser.add_argument("--pull-gb-per-second", type=float, default=PULL_GB_PER_SECOND, help="Novita's pull rate")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a service setting")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    outcome = run(args.count, args.batch, args.speed, args.image_gb, args.pull_gb_per_second, env)
    print(json.dumps(outcome, indent=2, default=str))
    raise SystemExit(0 if outcome.get("ok") else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
