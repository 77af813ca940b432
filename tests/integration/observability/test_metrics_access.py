"""GET /metrics shows every key's spend, so only the operator reads it: the METRICS_TOKEN (what Prometheus
sends), or an admin key. Any other key is 403, no credential 401, both in the error envelope; with no keys
configured at all (loopback only) it stays open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from novita_gpu.kit.settings import Settings
from novita_gpu.web.auth import owner_id
from tests.harness import SEED_BODY, Harness

KEY_A, KEY_B, ADMIN = "sk-metrics-key-a-0123456789", "sk-metrics-key-b-0123456789", "sk-metrics-admin-0123456789"
TOKEN = "metrics-token-0123456789abcdef"
SPEND = f'cost_month_to_date_usd{{api_key="{owner_id(KEY_A)}"}}'


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await Harness(tmp_path, api_keys=f"{KEY_A},{KEY_B}", admin_api_keys=ADMIN, metrics_token=TOKEN).start()
    try:
        created = await harness.http.post("/api/instances", json=SEED_BODY, headers=bearer(KEY_A))
        assert created.status_code == 201, created.text
        path = f"/api/instances/{created.json()['instanceId']}"

        async def ready() -> bool:
            return bool((await harness.http.get(path, headers=bearer(KEY_A))).json()["status"] == "ready")

        await harness.run_until(ready)
        harness.clock.advance(3600)  # A's instance has cost something: its series carries A's key id
        yield harness
    finally:
        await harness.stop()


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["requestId"] and "METRICS_TOKEN" in error["message"]
    assert SPEND not in response.text and TOKEN not in response.text


async def test_only_the_metrics_token_or_an_admin_key_reads_every_keys_spend(keyed: Harness) -> None:
    for headers in (bearer(TOKEN), bearer(ADMIN), {"X-API-Key": ADMIN}):
        answer = await keyed.http.get("/metrics", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain") and SPEND in answer.text
    for key in (KEY_A, KEY_B):  # A's own spend is in there too, with everyone else's: still not A's to read
        refused(await keyed.http.get("/metrics", headers=bearer(key)), 403, "FORBIDDEN")
    for headers in ({}, bearer("wrong"), bearer(TOKEN[:-1]), bearer(TOKEN + "x"), {"Authorization": f"Basic {TOKEN}"}):
        answer = await keyed.http.get("/metrics", headers=headers)
        refused(answer, 401, "UNAUTHORIZED")
        assert answer.headers["www-authenticate"] == "Bearer"
    # The token is for /metrics alone: it is no API key.
    assert (await keyed.http.get("/api/instances", headers=bearer(TOKEN))).status_code == 401
    # A key still reads its own spend where it always did.
    assert (await keyed.http.get("/api/costs", headers=bearer(KEY_A))).status_code == 200


async def test_without_a_metrics_token_an_admin_key_still_reads_it(tmp_path: Path) -> None:
    async with Harness(tmp_path, api_keys=KEY_A, admin_api_keys=ADMIN) as harness:
        assert (await harness.http.get("/metrics", headers=bearer(ADMIN))).status_code == 200
        refused(await harness.http.get("/metrics", headers=bearer(KEY_A)), 403, "FORBIDDEN")
        refused(await harness.http.get("/metrics"), 401, "UNAUTHORIZED")


async def test_with_no_keys_at_all_metrics_stay_open(harness: Harness) -> None:
    answer = await harness.http.get("/metrics")
    assert answer.status_code == 200 and "http_requests_total" in answer.text


def test_the_token_is_a_secret_never_shown() -> None:
    settings = Settings(_env_file=None, metrics_token=TOKEN)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    assert settings.metrics_token is not None and settings.metrics_token.get_secret_value() == TOKEN
