"""A deployment on API_KEYS upgraded in place (store 0011 → 0012): every key keeps serving, each as a team
of its own holding the instances, events and budget it had; a key still cannot see another's instance."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from novita_gpu.web.auth import owner_id
from tests.fixtures.databases import fresh_database
from tests.harness import SEED_BODY, Harness
from tests.integration.kit.test_one_outbox_migration import migrate

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


def key(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_every_key_keeps_its_instances_events_and_budget_across_the_upgrade(tmp_path: Path, store: str) -> None:
    async with fresh_database(store, tmp_path) as url:
        before = await Harness(tmp_path, database_url=url, api_keys=f"{ALICE},{BOB}").start()
        try:
            made = {}
            for secret in (ALICE, BOB):
                answer = await before.http.post(
                    "/api/instances", json={**SEED_BODY, "name": "job"}, headers=key(secret)
                )
                assert answer.status_code == 201, answer.text
                made[secret] = answer.json()["instanceId"]
            budget = await before.http.put(
                "/api/budget", json={"monthlyLimitUsd": 250, "onExceeded": "refuseCreates"}, headers=key(ALICE)
            )
            assert budget.status_code == 200, budget.text
            await migrate(before, "0011")  # the store as the release before teams left it
            async with before.services.db.engine.connect() as conn:
                tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert "teams" not in tables and "api_keys" not in tables
        finally:
            await before.stop()

        after = await Harness(tmp_path, database_url=url, api_keys=f"{ALICE},{BOB}").start()  # upgrades at start
        try:
            for secret, other in ((ALICE, BOB), (BOB, ALICE)):
                mine = await after.http.get(f"/api/instances/{made[secret]}", headers=key(secret))
                assert mine.status_code == 200, mine.text
                events = await after.http.get(f"/api/instances/{made[secret]}/events", headers=key(secret))
                assert [e["to"] for e in events.json()["events"]][:1] == ["creating"]
                assert (await after.http.get(f"/api/instances/{made[other]}", headers=key(secret))).status_code == 404
                me = (await after.http.get("/api/me", headers=key(secret))).json()
                assert me["team"] == owner_id(secret) and me["role"] == "admin"
                teams = (await after.http.get("/api/teams", headers=key(secret))).json()["teams"]
                assert [t["id"] for t in teams] == [owner_id(secret)]
            alice_budget = (await after.http.get("/api/budget", headers=key(ALICE))).json()
            assert alice_budget["monthlyLimitUsd"] == 250
            team = (await after.http.get(f"/api/teams/{owner_id(ALICE)}", headers=key(ALICE))).json()
            assert team["quotas"]["monthlyBudgetUsd"] == 250 and team["use"]["gpus"]["used"] == 1
        finally:
            await after.stop()
