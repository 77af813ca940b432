"""Team quotas, checked in the transaction that would exceed them: exact under concurrency on two replicas
sharing PostgreSQL, and a revoked key refused by both replicas within two seconds (docs/teams.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from novita_gpu.services import build_services
from tests.harness import SEED_BODY, Harness, harness_on, second_replica

OWNER_KEY = "owner-key-0123456789"


async def call(client: httpx.AsyncClient, key: str, method: str, path: str, body: Any = None) -> httpx.Response:
    return await client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})


async def team_with_member(h: Harness, quotas: dict[str, Any]) -> str:
    """Team ml with `quotas`, and the secret of a member key of it."""
    assert (await call(h.http, OWNER_KEY, "POST", "/api/teams", {"name": "ml"})).status_code == 201
    patched = await call(h.http, OWNER_KEY, "PATCH", "/api/teams/ml", {"quotas": quotas})
    assert patched.status_code == 200, patched.text
    made = await call(h.http, OWNER_KEY, "POST", "/api/keys", {"name": "ml-member", "team": "ml", "role": "member"})
    assert made.status_code == 201, made.text
    secret: str = made.json()["secret"]
    return secret


async def test_a_create_past_max_gpus_or_max_usd_per_hour_is_refused_with_the_figures(tmp_path: Path) -> None:
    async with Harness(tmp_path, admin_api_keys=OWNER_KEY) as h:
        member = await team_with_member(h, {"maxGpus": 3, "maxUsdPerHour": 0.8})
        first = await call(h.http, member, "POST", "/api/instances", {**SEED_BODY, "name": "a", "gpuNum": 2})
        assert first.status_code == 201, first.text
        refused = await call(h.http, member, "POST", "/api/instances", {**SEED_BODY, "name": "b", "gpuNum": 2})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert (
            error["code"] == "QUOTA_EXCEEDED"
            and "maxGpus is 3: it holds 2 and this asks for 2 more" in error["message"]
        )
        assert error["details"] == [{"field": "maxGpus", "message": "limit 3, in use 2, requested 2"}]
        # Two RTX 4090 at 0.58 USD/h (AS-SGP-02's price), one more at 0.29: past 0.8 USD/h.
        pricey = await call(h.http, member, "POST", "/api/instances", {**SEED_BODY, "name": "c"})
        assert pricey.status_code == 403 and pricey.json()["error"]["details"][0]["field"] == "maxUsdPerHour"
        team = (await call(h.http, member, "GET", "/api/teams/ml")).json()
        assert team["use"]["gpus"] == {"limit": 3.0, "used": 2.0}
        assert team["use"]["usdPerHour"]["used"] == pytest.approx(first.json()["pricePerHour"])

        stopped = await call(h.http, member, "POST", f"/api/instances/{first.json()['instanceId']}/stop")
        assert stopped.status_code == 202  # stopped before Novita made it: it holds nothing now
        assert (await call(h.http, member, "POST", "/api/instances", {**SEED_BODY, "name": "d"})).status_code == 201


@pytest.fixture
async def two_replicas(tmp_path: Path) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    """Two services on one PostgreSQL database and one emulator: the harness's, and a second one."""
    async with harness_on("postgres", tmp_path, admin_api_keys=OWNER_KEY) as h, second_replica(h) as (other, _):
        yield h, other


@pytest.mark.postgres
async def test_fifty_concurrent_creates_on_two_replicas_get_exactly_max_gpus(
    two_replicas: tuple[Harness, httpx.AsyncClient],
) -> None:
    h, other = two_replicas
    member = await team_with_member(h, {"maxGpus": 4})
    clients = [h.http, other]
    answers = await asyncio.gather(
        *(call(clients[i % 2], member, "POST", "/api/instances", {**SEED_BODY, "name": f"job-{i}"}) for i in range(50))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 4 and codes.count(403) == 46, codes
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 403} == {"QUOTA_EXCEEDED"}
    listed = (await call(h.http, member, "GET", "/api/instances")).json()
    assert listed["total"] == 4


@pytest.mark.postgres
async def test_fifty_concurrent_starts_on_two_replicas_start_exactly_max_gpus(
    two_replicas: tuple[Harness, httpx.AsyncClient],
) -> None:
    h, other = two_replicas
    member = await team_with_member(h, {})
    h.http.headers["Authorization"] = f"Bearer {member}"  # the harness's own reads (until_status)
    ids = []
    for i in range(8):
        made = await call(h.http, member, "POST", "/api/instances", {**SEED_BODY, "name": f"job-{i}"})
        ids.append(made.json()["instanceId"])
    for instance_id in ids:
        await h.until_status(instance_id, "ready")
        assert (await call(h.http, member, "POST", f"/api/instances/{instance_id}/stop")).status_code == 202
    for instance_id in ids:
        await h.until_status(instance_id, "stopped")
    assert (await call(h.http, OWNER_KEY, "PATCH", "/api/teams/ml", {"quotas": {"maxGpus": 4}})).status_code == 200

    clients = [h.http, other]
    answers = await asyncio.gather(
        *(call(clients[i % 2], member, "POST", f"/api/instances/{ids[i % 8]}/start") for i in range(50))
    )
    assert {a.status_code for a in answers} <= {200, 202, 403}, [a.text for a in answers]
    # The other replica's starts reach this one's reads within its read cache's second (READ_CACHE_SECONDS).
    h.clock.advance(1.0)
    views = [(await call(h.http, member, "GET", f"/api/instances/{i}")).json() for i in ids]
    assert sorted(v["status"] for v in views).count("starting") == 4, [v["status"] for v in views]
    assert (await call(h.http, member, "GET", "/api/teams/ml")).json()["use"]["gpus"]["used"] == 4


@pytest.mark.postgres
async def test_a_revoked_key_is_refused_by_both_replicas_within_two_seconds(
    two_replicas: tuple[Harness, httpx.AsyncClient],
) -> None:
    h, other = two_replicas
    member = await team_with_member(h, {})
    made = await call(h.http, OWNER_KEY, "POST", "/api/keys", {"name": "leaving", "team": "ml", "role": "viewer"})
    secret, key_id = made.json()["secret"], made.json()["id"]
    for client in (h.http, other):
        assert (await call(client, secret, "GET", "/api/me")).status_code == 200  # both know it (and cache it)
    revoked_at = time.monotonic()
    assert (await call(h.http, OWNER_KEY, "DELETE", f"/api/keys/{key_id}")).status_code == 200
    refused: dict[int, float] = {}
    while len(refused) < 2 and time.monotonic() - revoked_at < 5:
        for n, client in enumerate((h.http, other)):
            if n not in refused and (await call(client, secret, "GET", "/api/me")).status_code == 401:
                refused[n] = time.monotonic() - revoked_at
        await asyncio.sleep(0.05)  # polling a real-time cache (teams/keys.py CACHE_SECONDS), not waiting for state
    assert set(refused) == {0, 1} and max(refused.values()) < 2.0, refused
    assert (await call(other, member, "GET", "/api/me")).status_code == 200


async def test_the_services_own_team_names_are_refused_and_a_second_process_starts_on_the_store(tmp_path: Path) -> None:
    async with Harness(tmp_path, admin_api_keys=OWNER_KEY) as h:
        for name in ("default", "key-0123456789ab"):
            refused = await call(h.http, OWNER_KEY, "POST", "/api/teams", {"name": name})
            assert refused.status_code == 409 and refused.json()["error"]["code"] == "NAME_TAKEN", refused.text
            assert "the service's own" in refused.json()["error"]["message"]
        # A second process on the same store finds the environment's teams made and starts.
        services = await build_services(h.settings, h.clock)
        await services.aclose()
