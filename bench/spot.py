"""`python -m bench spot` (issue 25): a reclaim storm on spot instances, one kill -9 in the middle of it.

One `novita-gpu serve` (its settings' defaults) on a SQLite file against `novita-gpu emulator --speed 20`
(room for every create), webhooks to a local receiver. 100 spot instances are created at once, half with
`onReclaim: migrate`, half with `recreate`, and brought to `ready`; then 50 of them (half of each path) are
reclaimed within 10 s through the emulator's `POST /_emulator/reclaim {"ids"}`, in batches one second
apart: Novita's notice first (30 real seconds: the emulator's 30 emulated seconds would last 1.5 s at speed
20, shorter than the service's steady listing interval, which Novita's notice is not), then the stop. While
recoveries are under way, once a quarter of the reclaimed records are recovering at once or half have
recovered already, the service is killed with SIGKILL and restarted at once on the same store. Then it
waits (bounded) until every record is `ready` with no recovery under way, Novita holds one live instance
per record and no webhook is owed, and prints:

- reclaim-to-ready per path, p50/p95/max: from the reclaim request to the record's next `ready` event
  (so Novita's notice included), from Novita's stop (the notice over: the emulator's timeline) to that
  `ready`, and its two parts: the stop to the `instance.reclaimed` event (the service's next listing),
  and that event to `ready` (the migrate or the recreate, the boot, the health check); how many notices
  the service saw (`instance.reclaim_notice`); the same for the records whose recovery the kill spanned;
- the upstream calls from the first reclaim until settled, by endpoint (the emulator's request counters,
  which a kill of the service does not reset), and the service's own counters (`reclaims_total`,
  `recoveries_total`) summed over the two processes;
- Novita's instances at the end: exactly one live (not removed) instance per record, the one the record
  holds, `running`; none that no record owns (grouped by the record's upstream name and its `-r<n>`
  generations); and how many were made per path;
- every event of every record received by the webhook receiver (matched by `webhook-id`), and each
  reclaimed record's `instance.reclaimed`, `instance.recovering` and `ready` with `recovered: true`;
- each reclaimed record recovered exactly once (one attempt, ended `recovered`), the others untouched; the
  service's 5xx answers to the bench's polls, and its error log lines.

Exits non-zero (through `python -m bench`) when any of these checks fails; the logs, the store and a
report.json then stay in a temp dir (`SPOT_KEEP=1` keeps them anyway). `python -m bench.spot --help` for
the counts, the speed, the notice, the kill's moment or none, the emulator's migrate answering with a new
id, and service settings (`--env KEY=VALUE`). About 50 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.chaos import LEAVING, Service, all_records, log_lines, upstream_name, webhook_findings
from bench.common import Delivery, emulator, make_room, show, webhook_receiver
from novita_gpu.instances.recovery import name_parts
from novita_gpu.observability.metrics import percentiles

COUNT = 100
RECLAIM = 50
RECLAIM_SECONDS = 10.0
BATCHES = 10
SPEED = 20.0
# The kill: while some reclaimed records are recovering, once a quarter of them are (a wave seen at once) or
# half of them have recovered already (recoveries spread out).
KILL_RECOVERING = 0.25
KILL_RECOVERED = 0.5
# Novita's reclaim notice, in real seconds: the emulator's 30 emulated seconds, not divided by its speed, so
# that the notice outlasts the service's steady listing interval (15 s) as it does on Novita.
NOTICE_SECONDS = 30.0
SETTLE_SECONDS = 240.0
PATHS = ("migrate", "recreate")
IN_MOTION = ("recovering", "starting", "running", "health_checking")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Storm:
    """What the bench did and saw between the first reclaim and the end."""

    started: float = field(default_factory=time.monotonic)
    reclaimed_at: dict[str, float] = field(default_factory=dict)  # record id -> unix time of its reclaim request
    kill: dict[str, Any] | None = None
    kill_unix: float | None = None
    polls: int = 0
    poll_errors: Counter[str] = field(default_factory=Counter)  # "503", "ConnectError" ...
    server_errors: list[dict[str, Any]] = field(default_factory=list)  # 5xx answers (other than while down)
    metrics_before_kill: dict[str, float] = field(default_factory=dict)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)


# -- creates -----------------------------------------------------------------------------------------


async def create_all(url: str, count: int) -> dict[str, str]:
    """`count` spot instances at once, alternately migrate and recreate; returns record id -> path."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def one(i: int) -> tuple[str, str]:
            path = PATHS[i % 2]
            body = {
                "name": f"spot_{path[0]}_{i}",
                "productName": "RTX 4090 24GB",
                "templateId": "pytorch-jupyter",
                "billingMode": "spot",
                "recovery": {"onReclaim": path},
            }
            headers = {"Idempotency-Key": f"spot-bench-{i}"}
            for attempt in range(5):  # a connection closed under the request is sent again under its key
                try:
                    response = await http.post("/api/instances", json=body, headers=headers)
                    if response.status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if attempt == 4:
                    raise RuntimeError(f"create {i} was not accepted")
                await asyncio.sleep(0.5)
            response.raise_for_status()
            return str(response.json()["instanceId"]), path

        return dict(await asyncio.gather(*(one(i) for i in range(count))))


def wait_all_ready(http: httpx.Client, count: int, seconds: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        records = all_records(http)
        if len(records) == count and all(r["status"] in ("ready", "failed") for r in records):
            return records
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all ready in {seconds} s: {Counter(r['status'] for r in records)}")
        time.sleep(0.5)


# -- the storm ---------------------------------------------------------------------------------------


def service_counters(url: str) -> dict[str, float]:
    """The service's spot and upstream counters from /metrics (a process's own: a kill resets them)."""
    answer = httpx.get(f"{url}/metrics", timeout=5)
    found: dict[str, float] = defaultdict(float)
    if answer.status_code != 200:  # e.g. /metrics kept for an operator key
        return {}
    text = answer.text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "reclaims_total":
                found["reclaims"] += sample.value
            elif sample.name == "recoveries_total":
                found[f"recoveries {sample.labels['path']} {sample.labels['outcome']}"] += sample.value
            elif sample.name == "upstream_calls_total":
                found["upstream_calls"] += sample.value
            elif sample.name in ("reclaim_to_ready_seconds_count", "reclaim_to_ready_seconds_sum"):
                found[sample.name] += sample.value
    return dict(found)


async def reclaimer(emu: str, targets: list[tuple[str, str]], storm: Storm, seconds: float, batches: int) -> None:
    """Reclaim `targets` (record id, Novita id) in `batches` batches spread evenly over `seconds`."""
    per_batch = -(-len(targets) // batches) if targets else 0
    gap = seconds / batches
    async with httpx.AsyncClient(base_url=emu, timeout=10) as http:
        for n in range(batches):
            chunk = targets[n * per_batch : (n + 1) * per_batch]
            if chunk:
                sent = time.time()
                answer = await http.post("/_emulator/reclaim", json={"ids": [novita for _, novita in chunk]})
                answer.raise_for_status()
                for record_id, _ in chunk:
                    storm.reclaimed_at[record_id] = sent
            await asyncio.sleep(max(0.0, storm.started + (n + 1) * gap - time.monotonic()))


async def monitor(
    service: Service, reclaimed: set[str], storm: Storm, kill: bool, kill_delay: float, until: float
) -> list[dict[str, Any]]:
    """Poll the records four times a second; kill -9 and restart the service `kill_delay` seconds after the
    moment KILL_RECOVERING / KILL_RECOVERED describe. Returns when every record is ready with no recovery under way (or at `until`)."""
    in_progress = max(1, round(len(reclaimed) * KILL_RECOVERING))
    recovered = max(1, round(len(reclaimed) * KILL_RECOVERED))
    records: list[dict[str, Any]] = []
    armed: float | None = None
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        while time.monotonic() < until:
            await asyncio.sleep(0.25)
            storm.polls += 1
            try:
                page = await http.get("/api/instances", params={"limit": 500})
            except httpx.TransportError as exc:
                storm.poll_errors[type(exc).__name__] += 1
                continue
            if page.status_code != 200:
                storm.poll_errors[str(page.status_code)] += 1
                if page.status_code >= 500 and page.status_code != 503:
                    storm.server_errors.append({"at": storm.now(), "status": page.status_code, "body": page.text[:300]})
                continue
            records = page.json()["instances"]
            mine = [r for r in records if r["instanceId"] in reclaimed]
            recovering = [r for r in mine if r["recovery"]["inProgress"]]
            done = sum(1 for r in mine if r["recovery"]["attempt"] and not r["recovery"]["inProgress"])
            if kill and armed is None and recovering and (len(recovering) >= in_progress or done >= recovered):
                armed = time.monotonic()
            if armed is not None and storm.kill is None and time.monotonic() >= armed + kill_delay:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    storm.metrics_before_kill = service_counters(service.url)
                storm.kill_unix = time.time()
                pid = service.kill_and_restart()
                storm.kill = {
                    "at_s": storm.now(),
                    "pid": pid,
                    "reclaims_sent": len(storm.reclaimed_at),
                    "reclaimed_records": dict(Counter(status_of(r) for r in mine)),
                }
                show("   kill -9", storm.kill)
                continue
            done = all(r["status"] == "ready" and not r["recovery"]["inProgress"] for r in records)
            if done and len(storm.reclaimed_at) == len(reclaimed) and all(r["recovery"]["attempt"] for r in mine):
                return records
    return records


def status_of(record: dict[str, Any]) -> str:
    """A record's status, `ready` split by whether its recovery has happened."""
    if record["status"] == "ready":
        return "ready (recovered)" if record["recovery"]["attempt"] else "ready (not yet seen)"
    return str(record["status"])


# -- the end state -----------------------------------------------------------------------------------


def live(inst: dict[str, Any]) -> bool:
    return bool(inst["visible"]) and inst["status"] not in LEAVING


def upstream_check(records: list[dict[str, Any]], upstream: list[dict[str, Any]]) -> dict[str, Any]:
    """Novita's instances per record (by upstream name root): exactly one live, the record's own, running."""
    by_root: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for inst in upstream:
        by_root[name_parts(inst["name"])[0]].append(inst)
    roots = {upstream_name(r["name"], r["instanceId"]): r for r in records}
    not_one: list[dict[str, Any]] = []
    made: dict[str, Counter[int]] = {p: Counter() for p in PATHS}
    for root, record in roots.items():
        mine = by_root.get(root, [])
        alive = [i for i in mine if live(i)]
        made[record["recovery"]["onReclaim"]][len(mine)] += 1
        own = alive[0] if len(alive) == 1 else None
        if own is None or own["id"] != record["novitaInstanceId"] or own["status"] != "running":
            brief = [{k: i[k] for k in ("id", "name", "status", "visible")} for i in mine]
            not_one.append({"record": record["instanceId"], "holds": record["novitaInstanceId"], "upstream": brief})
    orphans = [
        {k: i[k] for k in ("id", "name", "status")}
        for root, insts in by_root.items()
        if root not in roots
        for i in insts
    ]
    return {
        "not_one_live": not_one,
        "orphans": [o for o in orphans if o["status"] not in LEAVING],
        "instances_made": {p: {str(k): v for k, v in sorted(c.items())} for p, c in made.items()},
        "upstream_total": len(upstream),
        "upstream_live": sum(live(i) for i in upstream),
    }


def settle(http: httpx.Client, emu: str, seconds: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Wait (bounded) until every record is ready, Novita holds one live instance each and no webhook is owed."""
    started = time.monotonic()
    while True:
        try:
            records = all_records(http)
            upstream = httpx.get(f"{emu}/_emulator/instances", timeout=30).json()["instances"]
            pending = http.get("/health").json().get("services", {}).get("webhooks", {}).get("pending")
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.5)
            continue
        check = upstream_check(records, upstream)
        waited = round(time.monotonic() - started, 1)
        ready = all(r["status"] == "ready" and not r["recovery"]["inProgress"] for r in records)
        if (ready and not check["not_one_live"] and not check["orphans"] and pending == 0) or waited >= seconds:
            return records, upstream, waited
        time.sleep(0.5)


@dataclass
class Timing:
    record: str
    path: str  # the policy's
    took: str  # the path that recovered it (a migrate may fall back to recreate)
    to_ready: float | None  # the reclaim request to the next ready
    stop_to_ready: float | None  # the notice's end (Novita stops the instance) to the next ready
    stop_to_seen: float | None  # the notice's end to the service's instance.reclaimed
    seen_to_ready: float | None
    notice_seen: bool  # the service saw Novita's notice (instance.reclaim_notice)
    across_kill: bool


def reclaim_stops(upstream: list[dict[str, Any]], targets: dict[str, str], storm: Storm) -> dict[str, float]:
    """Per reclaimed record: when Novita stopped its instance (the notice over, spotStatus `reclaiming`)."""
    by_id = {i["id"]: i for i in upstream}
    stops: dict[str, float] = {}
    for record_id, novita_id in targets.items():
        sent = storm.reclaimed_at.get(record_id)
        inst = by_id.get(novita_id)
        if sent is None or inst is None:
            continue
        at = next((h["at"] for h in inst["history"] if h["spotStatus"] == "reclaiming" and h["at"] >= sent - 1), None)
        if at is not None:
            stops[record_id] = float(at)
    return stops


def timings(
    http: httpx.Client, records: list[dict[str, Any]], storm: Storm, stops: dict[str, float]
) -> tuple[list[Timing], dict[str, list[dict[str, Any]]]]:
    """Per reclaimed record: its reclaim request (and Novita's stop) to its `instance.reclaimed` event and to
    its next `ready`."""
    found: list[Timing] = []
    events_of: dict[str, list[dict[str, Any]]] = {}
    kill = storm.kill_unix

    def since(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else end - start

    for record in records:
        rid = record["instanceId"]
        events = http.get(f"/api/instances/{rid}/events").json()["events"]
        events_of[rid] = events
        sent = storm.reclaimed_at.get(rid)
        if sent is None:
            continue
        after = [e for e in events if epoch(e["at"]) >= sent]
        seen = next((epoch(e["at"]) for e in after if e["to"] == "recovering"), None)  # instance.reclaimed
        ready = next((epoch(e["at"]) for e in after if e["to"] == "ready" and epoch(e["at"]) >= (seen or sent)), None)
        notice = any(e.get("event") == "instance.reclaim_notice" for e in after)
        history = record["recovery"]["history"]
        stop = stops.get(rid)
        found.append(
            Timing(
                rid,
                record["recovery"]["onReclaim"],
                history[-1]["path"] if history else "none",
                since(sent, ready),
                since(stop, ready),
                since(stop, seen),
                since(seen, ready),
                notice,
                kill is not None and sent <= kill and (ready is None or ready >= kill),
            )
        )
    return found, events_of


def figures(values: list[float | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None]
    if not known:
        return {"n": 0}
    p = percentiles(known)
    return {"n": len(known), "p50": p["p50"], "p95": p["p95"], "max": round(max(known), 2)}


def recovery_findings(records: list[dict[str, Any]], reclaimed: set[str]) -> list[dict[str, Any]]:
    """Reclaimed records recovered exactly once (one attempt, ended recovered); the others never touched."""
    wrong = []
    for r in records:
        rec = r["recovery"]
        if r["instanceId"] in reclaimed:
            outcomes = [e["outcome"] for e in rec["history"]]
            ok = rec["attempt"] == 1 and outcomes and outcomes[-1] == "recovered" and outcomes.count("recovered") == 1
        else:
            ok = rec["attempt"] == 0 and not rec["history"]
        if not ok or r["status"] != "ready":
            wrong.append({"record": r["instanceId"], "status": r["status"], "recovery": rec})
    return wrong


def recovery_webhooks(received: list[Delivery], reclaimed: set[str]) -> list[dict[str, Any]]:
    """Reclaimed records missing one of instance.reclaimed, instance.recovering, a recovered instance.ready."""
    got: dict[str, set[str]] = defaultdict(set)
    for d in received:
        p = d.payload
        if p.get("instanceId") not in reclaimed:
            continue
        event = str(p.get("event"))
        if event == "instance.ready" and p.get("recovered") is True and p.get("attempt") == 1:
            event = "instance.ready (recovered)"
        got[str(p["instanceId"])].add(event)
    wanted = {"instance.reclaimed", "instance.recovering", "instance.ready (recovered)"}
    return [{"record": rid, "missing": sorted(wanted - got[rid])} for rid in sorted(reclaimed) if wanted - got[rid]]


def error_lines(log: Path) -> list[str]:
    return log_lines(log, ['"level":"error"', '"level":"critical"', "Traceback"], 1000)


# -- the run -----------------------------------------------------------------------------------------


def run(
    count: int = COUNT,
    reclaim: int = RECLAIM,
    reclaim_seconds: float = RECLAIM_SECONDS,
    speed: float = SPEED,
    kill: bool = True,
    migrate_new_id: bool = False,
    notice_seconds: float | None = NOTICE_SECONDS,
    kill_delay: float = 0.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    reclaim = min(reclaim, count)
    tmp = Path(tempfile.mkdtemp(prefix="spot-"))
    results: dict[str, Any] = {
        "count": count,
        "reclaimed": reclaim,
        "reclaim_seconds": reclaim_seconds,
        "emulator_speed": speed,
        "kill": kill,
        "kill_delay_seconds": kill_delay,
        "migrate_new_id": migrate_new_id,
        "notice_seconds": notice_seconds,
        "service_env": env or {},
    }
    print(f"logs in {tmp}", flush=True)
    began = time.monotonic()
    ok = False
    try:
        with webhook_receiver() as (hook_url, received), emulator(tmp, speed=speed) as emu:
            make_room(emu)
            spot: dict[str, Any] = {"migrateNewId": migrate_new_id}
            if notice_seconds is not None:  # real seconds; the emulator's are emulated (divided by its speed)
                spot["noticeSeconds"] = notice_seconds * speed
            settings = httpx.put(f"{emu}/_emulator/spot", json=spot)
            settings.raise_for_status()
            results["notice_real_seconds"] = round(settings.json()["noticeSeconds"] / speed, 2)
            service_env = {
                "NOVITA_API_KEY": "any",
                "NOVITA_API_BASE_URL": f"{emu}/gpu-instance/openapi",
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'spot.db'}",
                "WEBHOOK_URL": hook_url,
                "WEBHOOK_ALLOW_LOOPBACK": "true",
                "AUTO_STOP_ENABLED": "false",
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                **(env or {}),
            }
            service = Service(tmp, service_env)
            try:
                service.wait_up()
                ok = storm_and_check(
                    results, service, emu, hook_url, received, count, reclaim, reclaim_seconds, kill, kill_delay
                )
            finally:
                service.stop()
            write_report(tmp, results)
    finally:
        results["total_seconds"] = round(time.monotonic() - began, 1)
        print(f"spot run took {results['total_seconds']} s", flush=True)
        if ok and not os.environ.get("SPOT_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept for inspection: {tmp} (service.log, emulator.log, spot.db, report.json)", flush=True)
    return results


def write_report(tmp: Path, results: dict[str, Any]) -> None:
    (tmp / "report.json").write_text(json.dumps(results, indent=2, default=str))


def storm_and_check(
    results: dict[str, Any],
    service: Service,
    emu: str,
    hook_url: str,
    received: list[Delivery],
    count: int,
    reclaim: int,
    reclaim_seconds: float,
    kill: bool,
    kill_delay: float,
) -> bool:
    started = time.monotonic()
    paths = asyncio.run(create_all(service.url, count))
    with httpx.Client(base_url=service.url, timeout=30) as http:
        records = wait_all_ready(http, count)
    results["all_ready_seconds"] = round(time.monotonic() - started, 1)
    results["failed_before_reclaims"] = sum(r["status"] == "failed" for r in records)
    show("created", {"records": count, "all ready after s": results["all_ready_seconds"], **Counter(paths.values())})

    by_path = {p: [r for r in records if paths[r["instanceId"]] == p and r["status"] == "ready"] for p in PATHS}
    half = reclaim // 2
    chosen = by_path["migrate"][: reclaim - half], by_path["recreate"][:half]
    interleaved = [r for pair in zip(*chosen, strict=False) for r in pair] + chosen[0][len(chosen[1]) :]
    targets = [(r["instanceId"], r["novitaInstanceId"]) for r in interleaved]
    reclaimed = {rid for rid, _ in targets}

    httpx.delete(f"{emu}/_emulator/stats").raise_for_status()
    storm = Storm()
    until = storm.started + reclaim_seconds + SETTLE_SECONDS

    async def drive() -> list[dict[str, Any]]:
        reclaims = asyncio.create_task(reclaimer(emu, targets, storm, reclaim_seconds, BATCHES))
        watched = await monitor(service, reclaimed, storm, kill, kill_delay, until)
        await reclaims
        return watched

    asyncio.run(drive())
    service.wait_up()
    with httpx.Client(base_url=service.url, timeout=30) as http:
        records, upstream, waited = settle(http, emu, max(10.0, until - time.monotonic()))
        settled_s = storm.now()
        calls = httpx.get(f"{emu}/_emulator/stats").json()
        counters_after = service_counters(service.url)
        timed, _events = timings(http, records, storm, reclaim_stops(upstream, dict(targets), storm))
        hooks, _ = webhook_findings(http, records, received, hook_url)
    check = upstream_check(records, upstream)
    wrong = recovery_findings(records, reclaimed)
    missing_hooks = recovery_webhooks(received, reclaimed)
    errors = error_lines(service.log)

    per_path: dict[str, Any] = {}
    for p in PATHS:
        mine = [t for t in timed if t.path == p]
        per_path[p] = {
            "reclaim_to_ready": figures([t.to_ready for t in mine]),
            "stop_to_ready": figures([t.stop_to_ready for t in mine]),
            "stop_to_seen": figures([t.stop_to_seen for t in mine]),
            "seen_to_ready": figures([t.seen_to_ready for t in mine]),
            "notices_seen": sum(t.notice_seen for t in mine),
            "across_kill_reclaim_to_ready": figures([t.to_ready for t in mine if t.across_kill]),
            "recovered_by": dict(Counter(t.took for t in mine)),
        }
    combined = {
        "reclaim_to_ready": figures([t.to_ready for t in timed]),
        "across_kill_reclaim_to_ready": figures([t.to_ready for t in timed if t.across_kill]),
        "not_across_kill_reclaim_to_ready": figures([t.to_ready for t in timed if not t.across_kill]),
    }
    summed = Counter(storm.metrics_before_kill) + Counter(counters_after)
    counts = {
        "records_not_ready": sum(r["status"] != "ready" for r in records),
        "not_recovered_exactly_once": len(wrong),
        "not_one_live_upstream": len(check["not_one_live"]),
        "orphaned_upstream": len(check["orphans"]),
        "lost_webhooks": len(hooks["lost"]),
        "webhook_mismatched": len(hooks["mismatched"]),
        "recovery_webhooks_missing": len(missing_hooks),
        "service_5xx": len(storm.server_errors),
        "service_error_log_lines": len(errors),
        "webhook_duplicates": len(hooks["duplicates"]),
        "webhook_out_of_order": len(hooks["out_of_order"]),
    }
    reported_only = {"webhook_duplicates", "webhook_out_of_order"}
    ok = not any(v for k, v in counts.items() if k not in reported_only) and len(storm.reclaimed_at) == reclaim
    results.update(
        {
            "reclaims_sent": len(storm.reclaimed_at),
            "reclaims_spread_s": round(max(storm.reclaimed_at.values()) - min(storm.reclaimed_at.values()), 2)
            if storm.reclaimed_at
            else None,
            "kill_moment": storm.kill,
            "settled_after_first_reclaim_s": settled_s,
            "settle_waited_after_monitor_s": waited,
            "per_path": per_path,
            "all_paths": combined,
            "upstream_calls": {"window_s": settled_s, "total": sum(calls.values()), "by_endpoint": calls},
            "service_counters_summed_over_both_processes": dict(sorted(summed.items())),
            "upstream": {k: check[k] for k in ("instances_made", "upstream_total", "upstream_live")},
            "webhooks_received": len(received),
            "polls": storm.polls,
            "poll_errors": dict(storm.poll_errors),
            "counts": counts,
            "examples": {
                "not_recovered_exactly_once": wrong[:5],
                "not_one_live_upstream": check["not_one_live"][:5],
                "orphaned_upstream": check["orphans"][:5],
                "lost_webhooks": hooks["lost"][:5],
                "recovery_webhooks_missing": missing_hooks[:5],
                "service_5xx": storm.server_errors[:5],
                "service_error_log_lines": errors[:10],
                "slowest": [vars(t) for t in sorted(timed, key=lambda t: -(t.to_ready or 1e9))[:5]],
            },
            "ok": ok,
        }
    )
    show(
        "reclaims",
        {
            "sent": len(storm.reclaimed_at),
            "within_s": results["reclaims_spread_s"],
            "notice_s": results.get("notice_real_seconds"),
            "settled after s": settled_s,
            "kill at s": storm.kill["at_s"] if storm.kill else None,
        },
    )
    for p in PATHS:
        for label, fig in per_path[p].items():
            show(f"   {p:8s} {label}", fig if isinstance(fig, dict) else {"n": fig})
    for label, fig in combined.items():
        show(f"   both     {label}", fig)
    show("upstream calls (first reclaim -> settled)", {"total": sum(calls.values()), **calls})
    show("service counters (both processes)", dict(sorted(summed.items())))
    show("upstream instances", {**check["instances_made"], "total": len(upstream), "live": check["upstream_live"]})
    show("webhooks", {"received": len(received), "polls": storm.polls, "poll errors": dict(storm.poll_errors)})
    print(f"{'check':32s} {'count':>6s}  verdict", flush=True)
    for name, value in counts.items():
        verdict = "(reported)" if name in reported_only else ("FAIL" if value else "ok")
        print(f"{name:32s} {value:6d}  {verdict}", flush=True)
    for name, items in results["examples"].items():
        if items and name != "slowest":
            print(f"-- {name}: e.g.", flush=True)
            for item in items[:3]:
                print("   " + json.dumps(item, default=str)[:600], flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=COUNT, help="spot instances created")
    parser.add_argument("--reclaim", type=int, default=RECLAIM, help="of which reclaimed (half of each path)")
    parser.add_argument("--reclaim-seconds", type=float, default=RECLAIM_SECONDS, help="the reclaims' spread")
    parser.add_argument("--speed", type=float, default=SPEED, help="the emulator's speed")
    parser.add_argument("--no-kill", action="store_true", help="no kill -9 during the recoveries")
    parser.add_argument(
        "--kill-delay", type=float, default=0.0, help="seconds from the kill's moment (see KILL_*) to the kill"
    )
    parser.add_argument("--migrate-new-id", action="store_true", help="a migrated instance gets a new id")
    parser.add_argument(
        "--notice-seconds",
        type=float,
        default=NOTICE_SECONDS,
        help="Novita's reclaim notice in real seconds (default 30; 1.5 is the emulator's own at speed 20, 0 none)",
    )
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a service setting")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    outcome = run(
        args.count,
        args.reclaim,
        args.reclaim_seconds,
        args.speed,
        not args.no_kill,
        args.migrate_new_id,
        args.notice_seconds,
        args.kill_delay,
        env,
    )
    print(json.dumps(outcome, indent=2, default=str))
    raise SystemExit(0 if outcome.get("ok") else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
