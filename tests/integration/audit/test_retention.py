"""Retention forgets audit rows older than AUDIT_RETENTION_DAYS (0 keeps them all), counts them in its
metrics like the other kinds, and records each sweep that deleted anything in the trail itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Harness
from tests.integration.audit.trail import OWNER, call, events, key, stored, team

pytestmark = pytest.mark.asyncio
DAY = 86400.0


async def test_rows_older_than_the_retention_are_deleted_and_the_sweep_recorded(tmp_path: Path) -> None:
    async with Harness(tmp_path, admin_api_keys=OWNER, audit_retention_days=30) as h:
        await team(h, "ml")
        old = {row.id for row in await stored(h)}
        h.clock.advance(20 * DAY)
        await key(h, "ml", "admin", "kept")
        kept = {row.id for row in await stored(h)} - old
        assert old and kept

        h.clock.advance(10 * DAY - 1)  # the oldest row is 30 days old less a second: kept
        assert (await h.services.retention.sweep())["audit_events"] == 0
        h.clock.advance(2)
        swept = await h.services.retention.sweep()
        assert swept["audit_events"] == len(old)

        left = {row.id for row in await stored(h)}
        assert not left & old and kept <= left
        [purge] = await events(h, actor="system:retention")
        assert purge["action"] == "retention.purge" and purge["target"] == "audit_events"
        assert purge["details"] == {"deleted": len(old)} and purge["team"] is None and purge["outcome"] == "ok"
        metrics = (await call(h, OWNER, "GET", "/api/metrics")).json()
        assert metrics["retention"]["auditEvents"] == len(old)
        scraped = (await call(h, OWNER, "GET", "/metrics")).text
        assert f'retention_deleted_total{{kind="audit_events"}} {float(len(old))}' in scraped
        assert (await h.services.retention.sweep())["audit_events"] == 0  # nothing more, and no row for it
        assert len(await events(h, actor="system:retention")) == 1

        admin = await key(h, "ml", "admin", "ml-admin")  # rows of no team are the owners' to read
        assert await events(h, admin["secret"], actor="system:retention") == []


async def test_zero_days_keeps_the_whole_trail(tmp_path: Path) -> None:
    async with Harness(tmp_path, admin_api_keys=OWNER, audit_retention_days=0) as h:
        await team(h, "ml")
        rows = len(await stored(h))
        h.clock.advance(3650 * DAY)
        assert (await h.services.retention.sweep())["audit_events"] == 0
        assert len(await stored(h)) == rows
