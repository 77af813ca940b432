"""Chaos: kill -9 at random moments during creates, stops and deletes, with slow creates and fault storms.

Issue 17's "done when": one service process on a SQLite store, driven by a few concurrent clients (creates
with an Idempotency-Key, stops and deletes by id of what they created) for about a minute, while the
emulator's faults change in phases (slow creates that outlast the service's upstream timeout, storms of
5xx, 429, dropped connections and latency, failed and ambiguous creates, calm) and the service is killed
with SIGKILL every 5-15 s and restarted at once on the same store. Issue 25 adds spot recovery: half the
creates are spot instances (onReclaim migrate, recreate, or now and then stop), and the faults add reclaim
storms of running spot instances (`POST /_emulator/reclaim`), migrates whose job fails
(`migrate_job_fails`) and migrates refused or left unanswered (scripted `failures` on
`/gpu/instance/migrate`, 400 or 5xx, before or after Novita acts); some other phases reclaim a few
instances too, and each reclaim phase picks whether a migrated instance keeps its id. Then faults off;
once every record is final and the webhook backlog is empty (bounded wait), it counts:

- lost: a create answered 201 whose record is missing, or a record that does not end where the last
  action accepted for it leads (create: ready; stop: stopped or terminated; delete: terminated). A
  `failed` record with a reason has ended (it is counted by reason, not as lost), and so has a spot record
  left `stopped` / `SPOT_RECLAIMED` by its policy (onReclaim stop, or maxRecoveries reached: reported);
- duplicated: Novita instances of a record (its upstream name and the `-r<n>` names of its recreates)
  alive beyond one at the end (must be 0); and, reported, instances beyond one under one name that were
  created and removed since (a migrated instance under a new id is not one);
- recovered too often: a record with more recovery attempts than reclaims of its instances (kill -9 at any
  step of a recovery must resume it once, not start another);
- orphaned: live upstream instances no record wants (no record of that name, a terminated record, a record
  without an instance or holding another one), and records whose instance is not in the state they show
  (stopped: `exited`, ready: `running`);
- stuck: records not final at the end, and /health's rows past their deadline;
- lost webhooks: every event of every record must have reached the receiver (matched by `webhook-id`,
  the delivery id the events endpoint lists); duplicates (at least once) are reported, not failed.

Exits non-zero (through `python -m bench`) when lost, alive duplicates, orphaned, stuck or lost webhooks
is nonzero. The processes' logs and a JSON report stay in a temp dir when anything is found.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import Delivery, emulator, make_room, serve_command, show, spawn, wait_http, webhook_receiver
from novita_gpu.instances.recovery import name_parts
from novita_gpu.kit.serving import free_port

CLIENTS = 4
DRIVE_SECONDS = 75.0
# Every path ends within the service's deadlines (45 s) plus a full reconcile pass; a recovery may take two
# (a migrate not running by its deadline, then a recreate) after its reclaim is seen.
SETTLE_SECONDS = 120.0
DEADLINE_SECONDS = 45  # STARTUP/ACTION/HEALTH_CHECK_TIMEOUT_SECONDS of the service under test
KILL_EVERY = (5.0, 15.0)
PHASE_SECONDS = (6.0, 9.0)
PAUSE = (0.2, 1.0)  # a client's pause between two actions
SPOT_SHARE = 0.5  # of the creates, spot instances
POLICIES = ("migrate", "migrate", "recreate", "recreate", "stop")  # their onReclaim, drawn at random
RECLAIM_ALSO = 0.6  # a phase of another kind reclaims a few spot instances too, this often
NO_RECLAIMS_BEFORE_END = 10.0  # seconds: the last reclaims leave room for their recoveries before the end
FINAL = {"ready", "stopped", "terminated", "failed"}
LEAVING = {"toRemove", "removing", "removed"}
EXPECTED = {"create": {"ready"}, "stop": {"stopped", "terminated"}, "delete": {"terminated"}}
EXAMPLES = 5

FAULTS_OFF: dict[str, Any] = {
    "latency_ms": 0.0,
    "drop_rate": 0.0,
    "rate_limit_rate": 0.0,
    "retry_after_seconds": 1.0,
    "server_error_rate": 0.0,
    "create_failures": 0,
    "create_failure_mode": "before",
    "create_delay_seconds": 0.0,
    "migrate_job_fails": 0,
    "failures": [],
}
PHASES = [
    "slow_creates",
    "server_errors",
    "rate_limits",
    "drops",
    "latency",
    "create_failures_after",
    "create_failures_before",
    "slow_creates_and_storm",
    "reclaims",
    "migrate_job_fails",
    "migrate_refused",
    "calm",
]
RECLAIMING = {"reclaims": (4, 10), "migrate_job_fails": (3, 6), "migrate_refused": (3, 6)}  # spot instances reclaimed


def phase_faults(kind: str, rng: random.Random) -> dict[str, Any]:
    """The emulator's faults for one phase (everything else off)."""
    faults: dict[str, Any] = {}
    if kind in ("slow_creates", "slow_creates_and_storm"):
        # Longer than the service's 2 s upstream timeout: the create goes unanswered, the instance appears.
        faults["create_delay_seconds"] = round(rng.uniform(3, 8), 1)
    if kind in ("server_errors", "slow_creates_and_storm"):
        faults["server_error_rate"] = round(rng.uniform(0.2, 0.5), 2)
    if kind in ("rate_limits", "slow_creates_and_storm"):
        faults["rate_limit_rate"] = round(rng.uniform(0.2, 0.5), 2)
        faults["retry_after_seconds"] = rng.choice([0, 1])
    if kind == "drops":
        faults["drop_rate"] = round(rng.uniform(0.15, 0.35), 2)
    if kind == "latency":
        faults["latency_ms"] = rng.choice([300, 800, 1500])
    if kind.startswith("create_failures"):
        faults["create_failures"] = rng.randint(2, 6)
        faults["create_failure_mode"] = kind.rsplit("_", 1)[1]
    if kind == "migrate_job_fails":
        faults["migrate_job_fails"] = rng.randint(1, 4)
    if kind == "migrate_refused":
        # 400: Novita refuses (the service recreates); 5xx before: not made, after: made but answered 5xx
        # (the service looks at what Novita did before sending it again).
        status = rng.choice([400, 400, 500, 503])
        reason = "MIGRATE_INSUFFICIENT_RESOURCE" if status == 400 else ""
        mode = "before" if status == 400 else rng.choice(["before", "after"])
        faults["failures"] = [
            {
                "path": "/gpu/instance/migrate",
                "status": status,
                "reason": reason,
                "count": rng.randint(1, 4),
                "mode": mode,
            }
        ]
    return {**FAULTS_OFF, **faults}


def upstream_name(name: str, instance_id: str) -> str:
    """A record's unique name at Novita (src/novita_gpu/instances/service.py); its recreates after spot
    reclaims go out under this name with `-r<n>` (instances/recovery.py)."""
    return f"{name.replace('_', '-')}-{instance_id[5:13]}"


def root_of(instance: dict[str, Any]) -> str:
    """The upstream name of the record a Novita instance belongs to (its name without `-r<n>`)."""
    return name_parts(instance["name"])[0]


def migration_target(instance: dict[str, Any]) -> bool:
    """An instance a migrate made under a new id (its timeline begins `migrating`): not a duplicate."""
    return bool(instance["history"]) and instance["history"][0]["status"] == "migrating"


@dataclass
class Action:
    kind: str  # create, stop, delete
    code: int  # the answer that accepted it
    sent: float  # seconds since the drive started
    answered: float
    attempts: int


@dataclass
class Tracked:
    """A record the driver created, and every action the service accepted for it, in order."""

    instance_id: str
    name: str
    client: int
    actions: list[Action] = field(default_factory=list)

    @property
    def last(self) -> str:
        return self.actions[-1].kind


@dataclass
class Drive:
    started: float = field(default_factory=time.monotonic)
    records: dict[str, Tracked] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "create 201", "stop 409", "create retried"...
    unanswered: list[dict[str, Any]] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)
    kills: list[dict[str, Any]] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)  # the service ended by itself (it must not)
    reclaims: list[dict[str, Any]] = field(default_factory=list)  # {at, phase, ids}: spot reclaims sent
    phases: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)


class Service:
    """`novita-gpu serve` on a fixed port and store, killed with SIGKILL and restarted at will."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = tmp / "service.log"
        self.proc = spawn(serve_command(self.port), env, self.log)

    def kill_and_restart(self) -> int:
        """SIGKILL, then start again at once on the same store; returns the killed process's pid."""
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        with self.log.open("ab") as out:
            out.write(f"=== chaos: SIGKILL pid {pid} at {time.time():.3f}, restarting ===\n".encode())
        self.proc = spawn(serve_command(self.port), self.env, self.log)
        return pid

    def wait_up(self) -> None:
        try:
            wait_http(f"{self.url}/health")
        except RuntimeError as exc:
            tail = "\n".join(log_lines(self.log, [""], 10))
            raise RuntimeError(f"{exc}; the end of {self.log}:\n{tail}") from exc

    def restart_if_exited(self) -> int | None:
        """The exit code if the service ended by itself (then it is started again), else None."""
        code = self.proc.poll()
        if code is None:
            return None
        with self.log.open("ab") as out:
            out.write(f"=== chaos: pid {self.proc.pid} exited by itself ({code}), restarting ===\n".encode())
        self.proc = spawn(serve_command(self.port), self.env, self.log)
        return code

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the drive -------------------------------------------------------------------------------------


async def send(
    http: httpx.AsyncClient, drive: Drive, kind: str, method: str, path: str, until: float, **kwargs: Any
) -> tuple[httpx.Response | None, int]:
    """Send until the service answers (it may be down, or answer 503/429 while Novita is): the same request,
    so a create keeps its Idempotency-Key. Returns the answer (None past `until`) and the attempts made."""
    attempts = 0
    drive.in_flight[kind] += 1
    try:
        while True:
            attempts += 1
            try:
                response = await http.request(method, path, **kwargs)
                if response.status_code not in (429, 500, 502, 503, 504):
                    return response, attempts
                drive.answers[f"{kind} {response.status_code} (retried)"] += 1
            except httpx.TransportError as exc:
                drive.answers[f"{kind} {type(exc).__name__} (retried)"] += 1
            if time.monotonic() >= until:
                return None, attempts
            await asyncio.sleep(0.25)
    finally:
        drive.in_flight[kind] -= 1


async def client(n: int, http: httpx.AsyncClient, drive: Drive, rng: random.Random, drive_until: float) -> None:
    answer_until = drive_until + 30
    created = 0
    while time.monotonic() < drive_until:
        mine = [t for t in drive.records.values() if t.client == n and t.last != "delete"]
        roll = rng.random()
        if not mine or roll < 0.45:
            created += 1
            name = f"chaos_{n}_{created}"
            body: dict[str, Any] = {"name": name, "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
            if rng.random() < SPOT_SHARE:
                body["billingMode"] = "spot"
                body["recovery"] = {"onReclaim": rng.choice(POLICIES)}
            key = str(uuid.uuid4())
            sent = drive.now()
            response, attempts = await send(
                http,
                drive,
                "create",
                "POST",
                "/api/instances",
                answer_until,
                json=body,
                headers={"Idempotency-Key": key},
            )
            if response is None:
                drive.unanswered.append({"kind": "create", "name": name, "idempotencyKey": key, "sent": sent})
            else:
                drive.answers[f"create {response.status_code}"] += 1
                if response.status_code == 201:
                    instance_id = response.json()["instanceId"]
                    tracked = drive.records.setdefault(instance_id, Tracked(instance_id, name, n))
                    tracked.actions.append(Action("create", 201, sent, drive.now(), attempts))
                    if attempts > 1:
                        drive.answers["create 201 after a retry"] += 1
        else:
            # Half the time the newest record (most likely still being created), else any of them.
            target = mine[-1] if rng.random() < 0.5 else rng.choice(mine)
            kind = "stop" if roll < 0.75 else "delete"
            method, path = ("POST", f"/api/instances/{target.instance_id}/stop")
            if kind == "delete":
                method, path = ("DELETE", f"/api/instances/{target.instance_id}")
            sent = drive.now()
            response, attempts = await send(http, drive, kind, method, path, answer_until)
            if response is None:
                drive.unanswered.append({"kind": kind, "instanceId": target.instance_id, "sent": sent})
            else:
                drive.answers[f"{kind} {response.status_code}"] += 1
                if response.status_code in (200, 202):
                    target.actions.append(Action(kind, response.status_code, sent, drive.now(), attempts))
        await asyncio.sleep(rng.uniform(*PAUSE))


MOVING = {
    "creating": "creating,starting",
    "recovering": "recovering",
    "stopping": "stopping",
    "terminating": "terminating",
}


async def in_motion(http: httpx.AsyncClient) -> dict[str, int]:
    """How many records the service is creating, stopping and deleting right now (best effort)."""
    counts: dict[str, int] = {}
    for label, statuses in MOVING.items():
        try:
            page = await http.get("/api/instances", params={"status": statuses, "limit": 1}, timeout=1)
            counts[label] = int(page.json()["total"])
        except (httpx.HTTPError, KeyError, ValueError):
            pass
    return counts


async def killer(
    service: Service, http: httpx.AsyncClient, drive: Drive, rng: random.Random, drive_until: float
) -> None:
    while True:
        kill_at = time.monotonic() + rng.uniform(*KILL_EVERY)
        if kill_at > drive_until - 2:
            kill_at = drive_until
        while time.monotonic() < kill_at:
            await asyncio.sleep(min(0.5, max(0.0, kill_at - time.monotonic())))
            code = service.restart_if_exited()
            if code is not None:
                drive.exits.append({"at": drive.now(), "code": code, "log": log_lines(service.log, [""], 15)})
        if kill_at >= drive_until:
            return
        moving = await in_motion(http)
        requests = {k: v for k, v in drive.in_flight.items() if v}
        phase = drive.phases[-1]["phase"] if drive.phases else None
        pid = service.kill_and_restart()
        drive.kills.append({"at": drive.now(), "pid": pid, "phase": phase, "moving": moving, "requests": requests})


async def reclaim_some(http: httpx.AsyncClient, drive: Drive, rng: random.Random, count: int, phase: str) -> None:
    """Reclaim `count` running spot instances chosen at random (Novita's notice, then the stop)."""
    listing = await http.get("/_emulator/instances")
    running = [
        i["id"]
        for i in listing.json()["instances"]
        if i["billingMode"] == "spot"
        and i["visible"]
        and i["status"] == "running"
        and i["history"]
        and i["history"][-1]["spotStatus"] == "running"
    ]
    chosen = rng.sample(running, min(count, len(running)))
    if not chosen:
        return
    answer = await http.post("/_emulator/reclaim", json={"ids": chosen})
    if answer.status_code != 200:  # one of them changed meanwhile (the lot is refused): one by one
        reclaimed = []
        for one in chosen:
            if (await http.post("/_emulator/reclaim", json={"ids": [one]})).status_code == 200:
                reclaimed.append(one)
    else:
        reclaimed = answer.json()["reclaimed"]
    if reclaimed:
        drive.reclaims.append({"at": drive.now(), "phase": phase, "ids": reclaimed})


async def phaser(emu: str, drive: Drive, rng: random.Random, drive_until: float) -> None:
    async with httpx.AsyncClient(base_url=emu, timeout=10) as http:
        order = ["calm"]  # a calm start, then every kind of phase once in a random order, and again
        while time.monotonic() < drive_until:
            if not order:
                order = rng.sample(PHASES, len(PHASES))
            kind = order.pop(0)
            faults = phase_faults(kind, rng)
            (await http.put("/_emulator/faults", json=faults)).raise_for_status()
            changed = {k: v for k, v in faults.items() if v != FAULTS_OFF[k]}
            drive.phases.append({"at": drive.now(), "phase": kind, "faults": changed})
            length = max(0.0, min(rng.uniform(*PHASE_SECONDS), drive_until - time.monotonic()))
            reclaims = RECLAIMING.get(kind) or ((1, 4) if rng.random() < RECLAIM_ALSO else None)
            if reclaims is not None and time.monotonic() + NO_RECLAIMS_BEFORE_END < drive_until:
                if kind in RECLAIMING:
                    spot = {"migrateNewId": rng.random() < 0.5}
                    (await http.put("/_emulator/spot", json=spot)).raise_for_status()
                    drive.phases[-1]["faults"] = {**drive.phases[-1]["faults"], **spot}
                # In two waves: at once, and halfway through the phase.
                first = rng.randint(*reclaims)
                await reclaim_some(http, drive, rng, (first + 1) // 2, kind)
                await asyncio.sleep(length / 2)
                await reclaim_some(http, drive, rng, first // 2, kind)
                await asyncio.sleep(length / 2)
            else:
                await asyncio.sleep(length)
        (await http.put("/_emulator/faults", json=FAULTS_OFF)).raise_for_status()


async def run_drive(url: str, emu: str, service: Service, seed: int, seconds: float) -> Drive:
    drive = Drive()
    drive_until = time.monotonic() + seconds
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:
        await asyncio.gather(
            phaser(emu, drive, random.Random(rng.random()), drive_until),
            killer(service, http, drive, random.Random(rng.random()), drive_until),
            *(client(n, http, drive, random.Random(rng.random()), drive_until) for n in range(CLIENTS)),
        )
    return drive


# -- the end state -------------------------------------------------------------------------------


def all_records(http: httpx.Client) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/instances", params=params)
        page.raise_for_status()
        body = page.json()
        records.extend(body["instances"])
        cursor = body.get("nextCursor")
        if not cursor:
            return records


@dataclass
class EndState:
    records: list[dict[str, Any]]
    upstream: list[dict[str, Any]]
    health: dict[str, Any]


def end_state(http: httpx.Client, emu: str) -> EndState:
    health = http.get("/health").json()
    upstream = httpx.get(f"{emu}/_emulator/instances", timeout=30).json()["instances"]
    return EndState(all_records(http), upstream, health)


def upstream_findings(state: EndState) -> dict[str, list[dict[str, Any]]]:
    """Duplicates (alive, removed), orphans and state mismatches from the emulator's truth. A record's instances
    are those under its upstream name and its recreates' `-r<n>` names; those it keeps (keepReclaimed) are its
    own too."""
    by_root: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for inst in state.upstream:
        by_root[root_of(inst)].append(inst)
    owners = {upstream_name(r["name"], r["instanceId"]): r for r in state.records}
    found: dict[str, list[dict[str, Any]]] = {
        "duplicated_alive": [],
        "duplicated_removed": [],
        "orphaned": [],
        "wrong_state": [],
    }

    def live(inst: dict[str, Any]) -> bool:
        return bool(inst["visible"]) and inst["status"] not in LEAVING

    def kept(record: dict[str, Any]) -> set[str]:
        return set(record.get("recovery", {}).get("keptInstanceIds", ()))

    for root, record in owners.items():
        instances = by_root.get(root, [])
        alive = [i for i in instances if live(i) and i["id"] not in kept(record)]
        extra_alive = max(0, len(alive) - 1)
        for _ in range(extra_alive):
            found["duplicated_alive"].append({"record": record["instanceId"], "upstream": instances})
        by_name = Counter(i["name"] for i in instances if not migration_target(i))
        extra_made = sum(max(0, n - 1) for n in by_name.values())
        for _ in range(max(0, extra_made - extra_alive)):
            found["duplicated_removed"].append({"record": record["instanceId"], "upstream": instances})
        wanted = next((i for i in instances if i["id"] == record["novitaInstanceId"]), None)
        status = record["status"]
        if status in ("stopped", "ready") and record["novitaInstanceId"] is not None:
            must = "exited" if status == "stopped" else "running"
            if wanted is None or not wanted["visible"] or wanted["status"] != must:
                found["wrong_state"].append(
                    {"record": record["instanceId"], "status": status, "must": must, "upstream": wanted}
                )
        if status == "ready" and record["novitaInstanceId"] is None:
            found["wrong_state"].append({"record": record["instanceId"], "status": status, "must": "an instance"})
    for inst in state.upstream:
        if not live(inst):
            continue
        owner = owners.get(root_of(inst))
        why = None
        if owner is None:
            why = "no record has this name"
        elif owner["status"] == "terminated":
            why = "its record is terminated"
        elif inst["id"] in kept(owner):
            why = None
        elif owner["novitaInstanceId"] is None:
            why = f"its {owner['status']} record holds no instance"
        elif owner["novitaInstanceId"] != inst["id"]:
            why = f"its {owner['status']} record holds {owner['novitaInstanceId']}"
        if why is not None:
            found["orphaned"].append(
                {"upstream": inst, "why": why, "record": owner["instanceId"] if owner is not None else None}
            )
    return found


def recovery_findings(state: EndState, drive: Drive) -> dict[str, Any]:
    """What the spot recoveries did, and records recovered more often than their instances were reclaimed (a
    kill -9 during a recovery must resume it, not begin another)."""
    root_of_id = {i["id"]: root_of(i) for i in state.upstream}
    reclaims_of: Counter[str] = Counter(root_of_id.get(i, "") for r in drive.reclaims for i in r["ids"])
    too_often: list[dict[str, Any]] = []
    outcomes: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    for record in state.records:
        recovery = record.get("recovery") or {}
        history = recovery.get("history", ())
        for step in history:
            outcomes[f"{step['path']} {step['outcome']}"] += 1
        if recovery.get("attempt"):
            attempts[recovery["onReclaim"]] += 1
        reclaimed = reclaims_of[upstream_name(record["name"], record["instanceId"])]
        if int(recovery.get("attempt", 0)) > reclaimed:
            too_often.append(
                {"record": record["instanceId"], "reclaims": reclaimed, "attempts": recovery.get("attempt")}
            )
    return {
        "too_often": too_often,
        "reclaims_sent": sum(len(r["ids"]) for r in drive.reclaims),
        "records_reclaimed": sum(1 for n in reclaims_of.values() if n),
        "records_recovering_at_least_once": dict(attempts),
        "steps": dict(sorted(outcomes.items())),
    }


def settled(state: EndState) -> bool:
    webhooks = state.health.get("services", {}).get("webhooks", {})
    upstream = upstream_findings(state)
    return (
        all(r["status"] in FINAL for r in state.records)
        and webhooks.get("pending") == 0
        and not upstream["duplicated_alive"]
        and not upstream["orphaned"]
        and not upstream["wrong_state"]
    )


def settle(http: httpx.Client, emu: str, seconds: float) -> tuple[EndState, float]:
    """Wait (bounded) until every record is final, no webhook is owed and Novita holds what the records
    say; returns the state then (or at the bound) and the seconds waited."""
    started = time.monotonic()
    next_note = 10.0
    while True:
        try:
            state = end_state(http, emu)
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.5)
            continue
        waited = time.monotonic() - started
        if settled(state) or waited >= seconds:
            return state, round(waited, 1)
        if waited >= next_note:
            next_note += 10
            show(f"   settling, {waited:.0f} s", waiting_on(state))
        time.sleep(1.0)


def waiting_on(state: EndState) -> dict[str, Any]:
    upstream = upstream_findings(state)
    return {
        "not final": dict(Counter(r["status"] for r in state.records if r["status"] not in FINAL)),
        "webhooks pending": state.health.get("services", {}).get("webhooks", {}).get("pending"),
        **{k: len(v) for k, v in upstream.items() if v and k != "duplicated_removed"},
    }


def webhook_findings(
    http: httpx.Client, records: list[dict[str, Any]], received: list[Delivery], hook_url: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Every event's delivery to the receiver, matched by webhook-id (the delivery id); returns the
    findings and each record's events (for the report)."""
    arrivals: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in received:
        arrivals[delivery.headers.get("webhook-id", "")].append(delivery)
    found: dict[str, list[dict[str, Any]]] = {"lost": [], "duplicates": [], "mismatched": [], "out_of_order": []}
    events_of: dict[str, list[dict[str, Any]]] = {}
    known: set[str] = set()
    for record in records:
        events = http.get(f"/api/instances/{record['instanceId']}/events").json()["events"]
        events_of[record["instanceId"]] = events
        firsts: list[float] = []
        for event in events:
            deliveries = [d for d in event["webhooks"] if d["url"] == hook_url]
            if not deliveries:
                found["lost"].append({"record": record["instanceId"], "event": event, "why": "no delivery queued"})
            for d in deliveries:
                known.add(d["deliveryId"])
                got = arrivals.get(d["deliveryId"], [])
                if not got:
                    found["lost"].append(
                        {
                            "record": record["instanceId"],
                            "event": {k: event[k] for k in ("id", "at", "from", "to", "reason")},
                            "delivery": {k: d[k] for k in ("deliveryId", "status", "attempts", "lastError")},
                        }
                    )
                    continue
                firsts.append(got[0].arrived)
                if len(got) > 1:
                    found["duplicates"].append(
                        {"record": record["instanceId"], "deliveryId": d["deliveryId"], "times": len(got)}
                    )
                payload = got[0].payload
                if payload.get("instanceId") != record["instanceId"] or payload.get("status") != event["to"]:
                    found["mismatched"].append({"deliveryId": d["deliveryId"], "event": event, "payload": payload})
        if firsts != sorted(firsts):
            found["out_of_order"].append({"record": record["instanceId"]})
    for msg_id, got in arrivals.items():
        if msg_id not in known:
            found["mismatched"].append({"deliveryId": msg_id, "why": "matches no event", "payload": got[0].payload})
    return found, events_of


def lost_and_failed(
    drive: Drive, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, list[str]], list[dict[str, Any]]]:
    """Records that do not end where the last accepted action leads; failed ones by reason; stuck ones."""
    by_id = {r["instanceId"]: r for r in records}
    lost: list[dict[str, Any]] = []
    failed: dict[str, list[str]] = defaultdict(list)
    stuck = [
        {"record": r["instanceId"], "status": r["status"], "statusMessage": r["statusMessage"]}
        for r in records
        if r["status"] not in FINAL
    ]
    for tracked in drive.records.values():
        record = by_id.get(tracked.instance_id)
        actions = [f"{a.kind}@{a.sent}s={a.code}" for a in tracked.actions]
        if record is None:
            lost.append({"record": tracked.instance_id, "why": "missing from the store", "actions": actions})
            continue
        status = record["status"]
        if status in EXPECTED[tracked.last] or status not in FINAL:
            continue  # as asked, or stuck (counted there)
        if status == "failed" and record["statusReason"]:
            failed[record["statusReason"]].append(tracked.instance_id)
            continue
        if status == "stopped" and record["statusReason"] == "SPOT_RECLAIMED" and by_policy(record):
            failed["SPOT_RECLAIMED (stopped by its recovery policy)"].append(tracked.instance_id)
            continue
        lost.append(
            {
                "record": tracked.instance_id,
                "why": f"ended {status} ({record['statusReason']}) after an accepted {tracked.last}",
                "actions": actions,
            }
        )
    return lost, dict(failed), stuck


def by_policy(record: dict[str, Any]) -> bool:
    """A reclaimed spot record its policy leaves stopped: onReclaim stop, or its recoveries used up."""
    recovery = record.get("recovery") or {}
    return recovery.get("onReclaim") == "stop" or int(recovery.get("attempt", 0)) >= int(
        recovery.get("maxRecoveries", 0)
    )


def failed_findings(state: EndState, failed: dict[str, list[str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Failed records that Novita contradicts: a stop or delete that timed out although Novita carried it
    out (its instance is exited / removed), and a create given up although Novita made the instance."""
    done: list[dict[str, Any]] = []
    made: list[dict[str, Any]] = []
    for reason, ids in failed.items():
        for record_id in ids:
            record = next(r for r in state.records if r["instanceId"] == record_id)
            name = upstream_name(record["name"], record_id)
            mine = [i for i in state.upstream if root_of(i) == name]
            own = next((i for i in mine if i["id"] == record["novitaInstanceId"]), None)
            brief = {
                "record": record_id,
                "reason": reason,
                "failedAt": record["failedAt"],
                "statusMessage": record["statusMessage"],
                "upstream": [{k: i[k] for k in ("id", "status", "visible", "createdAt", "removedAt")} for i in mine],
            }
            if own is not None and (
                (reason == "STOP_TIMEOUT" and own["status"] == "exited")
                or (reason == "DELETE_TIMEOUT" and own["status"] in LEAVING)
            ):
                done.append(brief)
            elif record["novitaInstanceId"] is None and mine:
                made.append(brief)
    return done, made


def log_lines(log: Path, needles: list[str], limit: int = 40) -> list[str]:
    if not log.exists():
        return []
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if any(n in ln for n in needles)]
    return lines[-limit:]


def evidence(
    record_id: str, state: EndState, events_of: dict[str, list[dict[str, Any]]], drive: Drive, log: Path
) -> dict[str, Any]:
    """What is known about one record: its view, events, the driver's actions, Novita's truth, log lines."""
    record = next((r for r in state.records if r["instanceId"] == record_id), None)
    if record is None:
        return {"record": record_id, "view": None}
    name = upstream_name(record["name"], record["instanceId"])
    upstream = [i for i in state.upstream if root_of(i) == name]
    tracked = drive.records.get(record["instanceId"])
    return {
        "record": record["instanceId"],
        "upstreamName": name,
        "view": {
            k: record[k]
            for k in ("status", "statusReason", "statusMessage", "novitaInstanceId", "createdAt", "recovery")
        },
        "driverActions": [vars(a) for a in tracked.actions] if tracked else None,
        "events": [
            {k: e[k] for k in ("id", "at", "from", "to", "reason", "message")} for e in events_of.get(record_id, [])
        ],
        "upstream": upstream,
        "log": log_lines(log, [n for n in (record["instanceId"], name, *(i["id"] for i in upstream)) if n]),
    }


# -- the run ---------------------------------------------------------------------------------------


def run(seconds: float = DRIVE_SECONDS, seed: int | None = None) -> dict[str, Any]:
    seed = int(os.environ.get("CHAOS_SEED", "0")) or seed or random.SystemRandom().randrange(1, 1_000_000)
    seconds = float(os.environ.get("CHAOS_SECONDS", seconds))
    tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
    results: dict[str, Any] = {"seed": seed, "drive_seconds": seconds, "clients": CLIENTS}
    print(f"seed {seed} (CHAOS_SEED={seed} repeats the choices), logs in {tmp}", flush=True)
    began = time.monotonic()
    tidy = False
    try:
        with webhook_receiver() as (hook_url, received), emulator(tmp, speed=20) as emu:
            make_room(emu)
            env = {
                "NOVITA_API_KEY": "any",
                "NOVITA_API_BASE_URL": f"{emu}/gpu-instance/openapi",
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'chaos.db'}",
                "WEBHOOK_URL": hook_url,
                "WEBHOOK_ALLOW_LOOPBACK": "true",
                "NOVITA_TIMEOUT_SECONDS": "2",
                "NOVITA_RETRY_DEADLINE_SECONDS": "5",
                "STARTUP_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
                "ACTION_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
                "HEALTH_CHECK_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
                "AUTO_STOP_ENABLED": "false",
                "LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
                "LOG_FORMAT": "json",
            }
            service = Service(tmp, env)
            try:
                service.wait_up()
                drive = asyncio.run(run_drive(service.url, emu, service, seed, seconds))
                drive_ended = drive.now()
                service.wait_up()
                with httpx.Client(base_url=service.url, timeout=30) as http:
                    state, waited = settle(http, emu, SETTLE_SECONDS)
                    hooks, events_of = webhook_findings(http, state.records, received, hook_url)
                _passed, tidy = report(
                    results, drive, state, hooks, events_of, len(received), waited, drive_ended, service.log, tmp
                )
            finally:
                service.stop()
    finally:
        results["total_seconds"] = round(time.monotonic() - began, 1)
        print(f"chaos run took {results['total_seconds']} s", flush=True)
        if tidy and not os.environ.get("CHAOS_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept for inspection: {tmp} (service.log, emulator.log, chaos.db, report.json)", flush=True)
    return results


def report(
    results: dict[str, Any],
    drive: Drive,
    state: EndState,
    hooks: dict[str, list[dict[str, Any]]],
    events_of: dict[str, list[dict[str, Any]]],
    received: int,
    waited: float,
    drive_ended: float,
    log: Path,
    tmp: Path,
) -> tuple[bool, bool]:
    """Prints the figures and findings, writes report.json; returns (passed, nothing to look into)."""
    lost, failed, stuck = lost_and_failed(drive, state.records)
    upstream = upstream_findings(state)
    recoveries = recovery_findings(state, drive)
    instances_health = state.health.get("services", {}).get("instances", {})
    past_deadline = int(instances_health.get("pastDeadline", 0))
    statuses = Counter(r["status"] for r in state.records)
    counts = {
        "lost": len(lost),
        "duplicated_alive": len(upstream["duplicated_alive"]),
        "duplicated_removed": len(upstream["duplicated_removed"]),
        "recovered_too_often": len(recoveries["too_often"]),
        "orphaned": len(upstream["orphaned"]),
        "wrong_upstream_state": len(upstream["wrong_state"]),
        "stuck": len(stuck),
        "past_deadline": past_deadline,
        "failed_actions_retrying": int(instances_health.get("failedActionsRetrying", 0)),
        "lost_webhooks": len(hooks["lost"]),
        "webhook_duplicates": len(hooks["duplicates"]),
        "webhook_mismatched": len(hooks["mismatched"]),
        "webhook_out_of_order": len(hooks["out_of_order"]),
        "unanswered_requests": len(drive.unanswered),
        "service_exits": len(drive.exits),
    }
    failing = [
        "lost",
        "duplicated_alive",
        "recovered_too_often",
        "orphaned",
        "wrong_upstream_state",
        "stuck",
        "past_deadline",
        "lost_webhooks",
        "webhook_mismatched",
        "unanswered_requests",
        "service_exits",
    ]
    ok = not any(counts[k] for k in failing)
    results.update(
        {
            "drive_ended_seconds": drive_ended,
            "settle_seconds": waited,
            "kills": len(drive.kills),
            "kill_moments": drive.kills,
            "phases": drive.phases,
            "requests": dict(sorted(drive.answers.items())),
            "records": len(state.records),
            "records_created_by_driver": len(drive.records),
            "final_statuses": dict(sorted(statuses.items())),
            "failed_by_reason": {k: len(v) for k, v in sorted(failed.items())},
            "upstream_instances": len(state.upstream),
            "reclaims": drive.reclaims,
            "recoveries": {k: v for k, v in recoveries.items() if k != "too_often"},
            "events": sum(len(e) for e in events_of.values()),
            "webhooks_received": received,
            "counts": counts,
            "ok": ok,
        }
    )
    show(
        "drive",
        {
            "seconds": drive_ended,
            "clients": CLIENTS,
            "kills": len(drive.kills),
            "phases": len(drive.phases),
            "settled_after_s": waited,
        },
    )
    for i, k in enumerate(drive.kills):
        show(f"   kill {i + 1} at {k['at']} s", {"phase": k["phase"], **k["moving"], "requests": k["requests"]})
    print("   phases: " + ", ".join(f"{p['at']} s {p['phase']} {p['faults'] or ''}" for p in drive.phases), flush=True)
    show("   answers", results["requests"])
    show("records", {"in store": len(state.records), "created by the driver": len(drive.records), **statuses})
    if failed:
        show("   failed by reason", results["failed_by_reason"])
    done_upstream, made_upstream = failed_findings(state, failed)
    counts["failed_though_done_upstream"] = len(done_upstream)
    counts["failed_though_created_upstream"] = len(made_upstream)
    show("upstream instances", {"created": len(state.upstream)})
    show(
        "spot reclaims",
        {
            "sent": recoveries["reclaims_sent"],
            "records reclaimed": recoveries["records_reclaimed"],
            "recovering at least once (by policy)": recoveries["records_recovering_at_least_once"],
        },
    )
    show("   recovery steps (path outcome)", recoveries["steps"])
    show("webhooks", {"events": results["events"], "received": received})
    print(f"{'check':32s} {'count':>6s}  verdict", flush=True)
    for name, count in counts.items():
        verdict = ("FAIL" if count else "ok") if name in failing else "(reported)"
        print(f"{name:32s} {count:6d}  {verdict}", flush=True)
    findings: dict[str, list[dict[str, Any]]] = {
        "lost": lost,
        "duplicated_alive": upstream["duplicated_alive"],
        "duplicated_removed": upstream["duplicated_removed"],
        "recovered_too_often": recoveries["too_often"],
        "orphaned": upstream["orphaned"],
        "wrong_upstream_state": upstream["wrong_state"],
        "stuck": stuck,
        "failed_though_done_upstream": done_upstream,
        "failed_though_created_upstream": made_upstream,
        "lost_webhooks": hooks["lost"],
        "webhook_duplicates": hooks["duplicates"],
        "webhook_mismatched": hooks["mismatched"],
        "webhook_out_of_order": hooks["out_of_order"],
        "unanswered_requests": drive.unanswered,
        "service_exits": drive.exits,
    }
    examples: dict[str, list[dict[str, Any]]] = {}
    for name, items in findings.items():
        if not items:
            continue
        examples[name] = items[:EXAMPLES]
        print(f"-- {name}: {len(items)}, e.g.", flush=True)
        for item in items[:EXAMPLES]:
            print("   " + json.dumps(item, default=str)[:600], flush=True)
    results["examples"] = examples
    doubtful = [*failing, "failed_though_done_upstream", "failed_though_created_upstream"]
    suspects = {str(i["record"]) for k in doubtful for i in findings.get(k, []) if i.get("record")}
    detail = {s: evidence(s, state, events_of, drive, log) for s in sorted(suspects)[:30]}
    (tmp / "report.json").write_text(
        json.dumps({"results": results, "findings": findings, "evidence": detail}, indent=2, default=str)
    )
    return ok, ok and not suspects


if __name__ == "__main__":  # pragma: no cover
    outcome = run()
    print(json.dumps(outcome))
    raise SystemExit(0 if outcome.get("ok") else 1)
