"""API keys: every /api route needs one when keys are configured; instances belong to their key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import SEED_BODY, Harness

KEY_A, KEY_B = "key-alpha-0123456789", "key-bravo-0123456789"


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await Harness(tmp_path, api_keys=f"{KEY_A},{KEY_B}").start()
    try:
        yield h
    finally:
        await h.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_without_a_valid_key_are_401(keyed: Harness) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic abc"}):
        response = await keyed.http.get("/api/instances", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert KEY_A not in response.text
    assert (await keyed.http.post("/api/instances", json=SEED_BODY)).status_code == 401
    assert (await keyed.http.get("/metrics")).status_code == 401
    assert (await keyed.http.get("/api/cache/stats")).status_code == 401
    assert (await keyed.http.get("/health")).status_code == 200
    assert (await keyed.http.get("/api/instances", headers={"X-API-Key": KEY_A})).status_code == 200


async def test_instances_belong_to_the_key_that_created_them(keyed: Harness) -> None:
    created = await keyed.http.post("/api/instances", json=SEED_BODY, headers=bearer(KEY_A))
    assert created.status_code == 201
    instance_id = created.json()["instanceId"]
    other = await keyed.http.get(f"/api/instances/{instance_id}", headers=bearer(KEY_B))
    assert other.status_code == 404 and other.json()["error"]["code"] == "INSTANCE_NOT_FOUND"  # existence never leaks
    assert (await keyed.http.post(f"/api/instances/{instance_id}/stop", headers=bearer(KEY_B))).status_code == 404
    assert (await keyed.http.get("/api/instances", headers=bearer(KEY_B))).json()["total"] == 0
    # names are per key: B may use the same name
    same_name = await keyed.http.post("/api/instances", json=SEED_BODY, headers=bearer(KEY_B))
    assert same_name.status_code == 201
    by_name = await keyed.http.post(
        "/api/instances/stop", json={"instanceName": SEED_BODY["name"]}, headers=bearer(KEY_A)
    )
    assert by_name.json()["instanceId"] == instance_id


async def test_a_cached_instance_is_still_shown_only_to_its_key(keyed: Harness) -> None:
    created = await keyed.http.post("/api/instances", json=SEED_BODY, headers=bearer(KEY_A))
    path = f"/api/instances/{created.json()['instanceId']}"
    for _ in range(2):  # the second read is answered from the read cache
        assert (await keyed.http.get(path, headers=bearer(KEY_A))).status_code == 200
    assert (await keyed.http.get(path, headers={"X-API-Key": KEY_A})).status_code == 200
    assert (await keyed.http.get(path, headers=bearer(KEY_B))).status_code == 404
    for headers in ({}, bearer("wrong"), {"X-API-Key": KEY_A[:-1]}):
        response = await keyed.http.get(path, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHORIZED"
    # The list page, cached for A, likewise.
    for _ in range(2):
        assert (await keyed.http.get("/api/instances", headers=bearer(KEY_A))).json()["total"] == 1
    assert (await keyed.http.get("/api/instances", headers=bearer(KEY_B))).json()["total"] == 0
    for headers in ({}, bearer("wrong")):
        assert (await keyed.http.get("/api/instances", headers=headers)).status_code == 401


def test_refuses_to_listen_publicly_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEYS", "ALLOW_UNAUTHENTICATED")}
    exe = Path(sys.executable).parent / "novita-gpu"
    result = subprocess.run(
        [str(exe), "serve", "--host", "0.0.0.0", "--port", "0"],
        env={**env, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "API_KEYS" in result.stderr and "ALLOW_UNAUTHENTICATED" in result.stderr
