"""Which Novita a store's instances live in, so that one store never mixes two worlds.

Replicas share a store only when they share a Novita. A replica in emulator mode has an emulated account
of its own: joined to replicas of a real account (or to another emulator-mode replica), each side would
see the other's instances missing from its Novita and mark them gone. The first process records its
Novita in the store; a process of another Novita is refused at start-up while the store holds instances
that are not terminated. Once none is left, the store may move to another Novita (from trying the
emulator to real GPUs, say), which is logged.
"""

from __future__ import annotations

import structlog
from sqlalchemy import func, select, update

from novita_gpu.instances.lifecycle import Status
from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import Instance, UpstreamListing

log = structlog.get_logger(__name__)


class MixedUpstreams(Exception):
    """This process's Novita is not the one the store's live instances live in (the message says what to do)."""


def novita_upstream() -> str:
    """Any Novita reached with NOVITA_API_KEY: its URL is not compared (a standalone emulator moving to
    another port, or Novita behind a proxy, is the same account; two accounts cannot be told by URL)."""
    return "novita"


def emulator_upstream(account: str) -> str:
    return f"emulator {account}"


def _describe(upstream: str, *, own: bool = False) -> str:
    kind, _, where = upstream.partition(" ")
    if kind == "novita":
        return "the Novita API (NOVITA_API_KEY mode)"
    return "its own built-in emulator" if own else f"the emulated account {where} of another emulator-mode process"


def _advice(mine: str, theirs: str) -> str:
    if mine.startswith("emulator") and theirs.startswith("novita"):
        return "Set NOVITA_API_KEY and NOVITA_API_BASE_URL as the other replicas do, or use another DATABASE_URL"
    if mine.startswith("emulator"):
        return (
            "Each emulator-mode process has an account of its own: run one replica, or point every replica at "
            "one standalone `novita-gpu emulator` (docs/deployment.md), or use another DATABASE_URL"
        )
    return "Delete those instances in emulator mode first, or use another DATABASE_URL"


async def claim_store(db: Database, mine: str) -> None:
    """Record `mine` as the store's Novita, or raise MixedUpstreams when live instances live in another."""
    async with db.write() as session:
        recorded = await session.scalar(select(UpstreamListing.upstream).where(UpstreamListing.id == 1))
        if recorded == mine:
            return
        if recorded is not None:
            live = await session.scalar(
                select(func.count()).select_from(Instance).where(Instance.status != Status.TERMINATED)
            )
            if live:
                raise MixedUpstreams(
                    f"this store holds {live} instance{'s' if live != 1 else ''} of {_describe(recorded)}, but "
                    f"this process would use {_describe(mine, own=True)}: two worlds in one store would see each "
                    f"other's instances as gone. {_advice(mine, recorded)}."
                )
            log.warning(
                "store_upstream_changed",
                message=f"the store moves from {_describe(recorded)} to {_describe(mine, own=True)} (it holds no live instance)",
            )
        await session.execute(update(UpstreamListing).where(UpstreamListing.id == 1).values(upstream=mine))
