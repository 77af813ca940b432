"""Spot recovery: what a reclaim of a spot instance leads to, and the record of each recovery (docs/spot.md).

A reclaimed spot instance comes back under the same record and name: `migrate` (Novita moves the exited
instance to another node; it keeps network storage, not the local disk), falling back to `recreate` (a new
instance from the same spec under the record's next upstream name, `-r<n>`), or it stays stopped (`stop`,
or past `maxRecoveries` in a rolling 24 h). The row's `recovery` JSON holds the recovery under way and
the history of those before; this module reads and writes it, and nothing here calls Novita. Every row
holds its policy: a create stores it whole, and rows older than spot recovery get the server's defaults
at start-up (`fill_policies`).

The reclaimed instance (it holds the local disk) is kept while the recovery runs: if the recovery is given
up before a replacement exists (a stop, a delete, no capacity), the record goes back to it, so it can be
started again. Once a replacement is ready it is no longer wanted, and ownership deletes it on sight, unless
`keepReclaimed` (then it is kept until the record is deleted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import update

from novita_gpu.audit.actions import OK, SPOT_RECOVERY
from novita_gpu.audit.recorder import add_beside, system
from novita_gpu.kit.clock import iso
from novita_gpu.kit.db import Database
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance

Path = Literal["migrate", "recreate"]
Outcome = Literal["in_progress", "recovered", "failed", "abandoned"]

WINDOW = timedelta(hours=24)  # maxRecoveries counts the recoveries begun in this rolling window
_HISTORY_KEPT = 50  # entries kept per record (older ones are dropped; the window needs far fewer)
_GENERATION = re.compile(r"^(?P<root>.+)-r(?P<n>[0-9]+)$")


class Observer(Protocol):
    """Where reclaims and recoveries are counted (observability/metrics.py's Metrics)."""

    def observe_reclaim(self) -> None: ...
    def observe_recovery(self, path: str, outcome: str, reclaim_to_ready: float | None = None) -> None: ...


class Unobserved:
    def observe_reclaim(self) -> None:
        pass

    def observe_recovery(self, path: str, outcome: str, reclaim_to_ready: float | None = None) -> None:
        pass


@dataclass(frozen=True)
class Policy:
    on_reclaim: Literal["migrate", "recreate", "stop"]
    max_recoveries: int
    fallback_to_on_demand: bool
    keep_reclaimed: bool

    def json(self) -> dict[str, Any]:
        return {
            "onReclaim": self.on_reclaim,
            "maxRecoveries": self.max_recoveries,
            "fallbackToOnDemand": self.fallback_to_on_demand,
            "keepReclaimed": self.keep_reclaimed,
        }


def default_policy(settings: Settings) -> Policy:
    return Policy(settings.spot_on_reclaim, settings.spot_max_recoveries, settings.spot_fallback_to_on_demand, False)


_BUILT_IN = Policy("migrate", 3, False, False)  # the settings' defaults, for a row shown before start-up filled it


async def fill_policies(db: Database, settings: Settings) -> None:
    """Give rows written before spot recovery existed the server's policy, so every view shows the one that
    applies (one UPDATE; a no-op once done, and harmless when replicas race)."""
    async with db.write() as session:
        await session.execute(
            update(Instance)
            .where(Instance.recovery_policy.is_(None))
            .values(recovery_policy=default_policy(settings).json())
        )


def policy_of(row: Instance, settings: Settings | None = None) -> Policy:
    """The row's policy; fields it lacks take the server's defaults."""
    stored = row.recovery_policy or {}
    base = default_policy(settings) if settings is not None else _BUILT_IN
    return Policy(
        stored.get("onReclaim", base.on_reclaim),
        int(stored.get("maxRecoveries", base.max_recoveries)),
        bool(stored.get("fallbackToOnDemand", base.fallback_to_on_demand)),
        bool(stored.get("keepReclaimed", base.keep_reclaimed)),
    )


def merged_policy(current: Policy, changes: dict[str, Any]) -> dict[str, Any]:
    """`current` with the fields a create or PATCH set (camelCase, None: unchanged), as stored."""
    return {**current.json(), **{k: v for k, v in changes.items() if v is not None}}


# -- upstream names ------------------------------------------------------------------------------


def create_name(row: Instance) -> str:
    """The name the record's next (or current) create goes out under: its upstream name, then `-r<n>` for
    the n-th recreate, so a replacement never shares a name with what it replaces."""
    generation = row.upstream_generation or 0
    return row.upstream_name if generation == 0 else f"{row.upstream_name}-r{generation}"


def name_parts(name: str) -> tuple[str, int]:
    """A listed instance's name as (the record's upstream name, generation). Upstream names end in eight
    hex digits, so a trailing `-r<n>` is always a generation, never part of the name."""
    match = _GENERATION.match(name)
    return (match["root"], int(match["n"])) if match else (name, 0)


# -- the recovery under way ------------------------------------------------------------------------


def state(row: Instance) -> dict[str, Any]:
    return dict(row.recovery or {})


def active(row: Instance) -> bool:
    return bool((row.recovery or {}).get("active"))


def path(row: Instance) -> str | None:
    return (row.recovery or {}).get("path") if active(row) else None


def migrate_sent_at(row: Instance) -> datetime | None:
    sent = (row.recovery or {}).get("migrateSentAt")
    return None if sent is None else datetime.fromisoformat(sent.replace("Z", "+00:00"))


def recent(row: Instance, now: datetime) -> int:
    """Recoveries begun within the rolling window."""
    since = iso(now - WINDOW) or ""
    return len({e["attempt"] for e in (row.recovery or {}).get("history", ()) if e["at"] >= since})


def wanted_ids(recovery: dict[str, Any] | None) -> set[str]:
    """Upstream instances a record keeps besides its own: the reclaimed one while its recovery runs, and
    those kept with keepReclaimed."""
    if not recovery:
        return set()
    kept = set(recovery.get("kept", ()))
    reclaimed = recovery.get("reclaimedId")
    return kept | {reclaimed} if reclaimed and recovery.get("active") else kept


def begin(row: Instance, now: datetime, chosen: Path, *, reclaimed_at: datetime) -> int:
    """Start a recovery of `row` (its instance was reclaimed) on `chosen`; returns the attempt. The record's
    instance is the reclaimed one, unless a recovery was under way: then it is that one's replacement, and
    the instance first reclaimed (the one with the disk) stays the one kept."""
    current = state(row)
    attempt = int(current.get("attempt", 0)) + 1
    reclaimed = current.get("reclaimedId") if current.get("active") else row.novita_instance_id
    history = list(current.get("history", ()))
    if current.get("active") and history and history[-1]["outcome"] == "in_progress":
        history[-1] = {**history[-1], "outcome": "failed", "message": "Its replacement was reclaimed too."}
    history.append(_entry(attempt, now, chosen, row.novita_instance_id if chosen == "migrate" else None))
    row.recovery = {
        **current,
        "active": True,
        "attempt": attempt,
        "path": chosen,
        "startedAt": iso(now),
        "reclaimedAt": iso(reclaimed_at),
        "reclaimedId": reclaimed,
        "cluster": row.cluster_id,
        # Where the instance kept runs, to show again should the record go back to it (`finish`).
        "placement": current.get("placement") if current.get("active") else _placement(row),
        "onDemand": False,
        "migrateSentAt": None,
        "jobId": None,
        "history": history[-_HISTORY_KEPT:],
    }
    return attempt


_PLACEMENT = ("cluster_id", "region", "product_id", "price_per_hour", "billing_mode")


def _placement(row: Instance) -> dict[str, Any]:
    return {column: getattr(row, column) for column in _PLACEMENT}


def _entry(attempt: int, at: datetime, chosen: str, upstream_id: str | None) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": iso(at),
        "path": chosen,
        "upstreamId": upstream_id,
        "outcome": "in_progress",
        "message": None,
    }


def _update(row: Instance, **changes: Any) -> None:
    row.recovery = {**state(row), **changes}  # a new dict: the JSON column sees the change


def _close_entry(row: Instance, outcome: Outcome, message: str | None) -> list[dict[str, Any]]:
    history = list(state(row).get("history", ()))
    if history and history[-1]["outcome"] == "in_progress":
        history[-1] = {**history[-1], "outcome": outcome, "message": message}
    return history


def migrate_sent(row: Instance, at: datetime | None) -> None:
    """The migrate goes out now (intent, written before the call), or is known not made (None)."""
    _update(row, migrateSentAt=iso(at))


def migrated(row: Instance, upstream_id: str, job_id: str | None) -> None:
    history = list(state(row).get("history", ()))
    if history:
        history[-1] = {**history[-1], "upstreamId": upstream_id}
    _update(row, migrateSentAt=None, jobId=job_id or None, history=history)


def to_recreate(row: Instance, now: datetime, why: str) -> None:
    """The migrate failed (`why`): the same attempt goes on as a recreate."""
    history = _close_entry(row, "failed", why)
    history.append(_entry(int(state(row).get("attempt", 1)), now, "recreate", None))
    _update(row, path="recreate", migrateSentAt=None, history=history[-_HISTORY_KEPT:])


def with_replacement(current: dict[str, Any] | None, upstream_id: str) -> dict[str, Any] | None:
    """`current` (a row's recovery) with the replacement's id in the attempt's entry; None: no change."""
    history = list((current or {}).get("history", ()))
    if not (current or {}).get("active") or not history or history[-1]["outcome"] != "in_progress":
        return None
    history[-1] = {**history[-1], "upstreamId": upstream_id}
    return {**(current or {}), "history": history}


def on_demand(row: Instance) -> None:
    _update(row, onDemand=True)


def finish(row: Instance, now: datetime, outcome: Outcome, message: str | None, *, keep_reclaimed: bool) -> None:
    """End the recovery under way. Without a replacement, the record goes back to the reclaimed instance;
    with one, the reclaimed instance is no longer wanted (ownership deletes it) unless kept."""
    current = state(row)
    if not current.get("active"):
        return
    reclaimed = current.get("reclaimedId")
    kept = list(current.get("kept", ()))
    if row.novita_instance_id is None and reclaimed:
        row.novita_instance_id = reclaimed
        row.upstream_status = "exited"
        row.create_attempted_at = None
        for column, value in (current.get("placement") or {}).items():
            setattr(row, column, value)  # where the reclaimed instance is, not where a replacement was tried
    elif reclaimed and reclaimed != row.novita_instance_id and keep_reclaimed and reclaimed not in kept:
        kept.append(reclaimed)
    _update(
        row,
        active=False,
        reclaimedId=None,
        migrateSentAt=None,
        kept=kept,
        endedAt=iso(now),
        history=_close_entry(row, outcome, message),
    )


def end(
    row: Instance, now: datetime, outcome: Outcome, message: str | None, settings: Settings, observer: Observer
) -> None:
    """End `row`'s recovery under way (if any), as `finish`, count it, and record it in the audit trail in the
    transaction the row is loaded in (every ending passes here: ready, failed, gone, stopped, abandoned)."""
    ended = path(row)
    if ended is None:
        return
    took = took_seconds(row, now) if outcome == "recovered" else None
    attempt = state(row).get("attempt")
    finish(row, now, outcome, message, keep_reclaimed=policy_of(row, settings).keep_reclaimed)
    observer.observe_recovery(ended, outcome, took)
    result = OK if outcome == "recovered" else f"RECOVERY_{outcome.upper()}"
    details = {"path": ended, "attempt": attempt, "outcome": outcome, "message": message, "seconds": took}
    entry = system(SPOT_RECOVERY, "recovery.end", team=row.owner, target=row.id, outcome=result, details=details)
    add_beside(row, entry, now)


def took_seconds(row: Instance, now: datetime) -> float | None:
    """Seconds from the reclaim to `now` for the recovery under way."""
    reclaimed_at = state(row).get("reclaimedAt")
    if reclaimed_at is None:
        return None
    return (now - datetime.fromisoformat(reclaimed_at.replace("Z", "+00:00"))).total_seconds()


def notice_key(upstream_id: str, reclaim_time: int) -> str:
    return f"{upstream_id}@{reclaim_time}"


def noticed(row: Instance, key: str) -> bool:
    return (row.recovery or {}).get("notice") == key


def note_notice(row: Instance, key: str) -> None:
    _update(row, notice=key)


# -- how it is shown -------------------------------------------------------------------------------


def view(row: Instance) -> dict[str, Any]:
    """The view's `recovery`: the policy, then the recovery under way (or the last) and the history."""
    current = row.recovery or {}
    return {
        **policy_of(row).json(),
        "inProgress": bool(current.get("active")),
        "attempt": current.get("attempt", 0),
        "path": current.get("path"),
        "startedAt": current.get("startedAt"),
        "onDemand": bool(current.get("onDemand")),
        "keptInstanceIds": list(current.get("kept", ())),
        "history": [dict(e) for e in current.get("history", ())],
    }


def event_fields(row: Instance) -> dict[str, Any]:
    """What a status event says of the recovery under way: `recovered: true` and the attempt."""
    current = row.recovery or {}
    if not current.get("active"):
        return {}
    return {"recovered": True, "attempt": current.get("attempt"), "recoveryPath": current.get("path")}
