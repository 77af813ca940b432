"""Another key's instance is not found: every instance route answers another key exactly what it answers for
an id (or name) that does not exist, 404 INSTANCE_NOT_FOUND, so a key learns nothing of what others have,
and the instance is left as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import SEED_BODY, Harness

KEY_A, KEY_B = "sk-owner-key-a-0123456789", "sk-owner-key-b-0123456789"
UNKNOWN_ID = "inst_00000000000000000000"
UNKNOWN_NAME = "nobody-has-this-name"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Call:
    """One instance route; `{id}` and `{name}` are filled with the instance's (or an unknown one's)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)

    async def send(self, http: httpx.AsyncClient, key: str, instance_id: str, name: str) -> httpx.Response:
        body = self.body and {k: v.format(name=name) if isinstance(v, str) else v for k, v in self.body.items()}
        return await http.request(
            self.method,
            self.path.format(id=instance_id),
            json=body,
            params=self.params,
            headers=bearer(key),
        )


BY_ID = [
    Call("GET", "/api/instances/{id}"),
    Call("GET", "/api/instances/{id}", params={"waitFor": "ready", "timeout": "0"}),
    Call("DELETE", "/api/instances/{id}"),
    Call("PATCH", "/api/instances/{id}", body={"maxRuntimeMinutes": 120}),
    Call("POST", "/api/instances/{id}/stop"),
    Call("POST", "/api/instances/{id}/start"),
    Call("PUT", "/api/instances/{id}/last-used"),
    Call("GET", "/api/instances/{id}/events"),
    Call("GET", "/api/instances/{id}/events/stream", params={"follow": "false"}),
]
BY_NAME = [
    Call("POST", "/api/instances/stop", body={"instanceName": "{name}"}),
    Call("POST", "/api/instances/start", body={"instanceName": "{name}"}),
    Call("POST", "/api/instances/delete", body={"instanceName": "{name}"}),
]


@pytest.fixture
async def two_keys(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await Harness(tmp_path, api_keys=f"{KEY_A},{KEY_B}").start()
    try:
        yield harness
    finally:
        await harness.stop()


async def a_ready_instance_of_a(harness: Harness) -> dict[str, Any]:
    created = await harness.http.post("/api/instances", json=SEED_BODY, headers=bearer(KEY_A))
    assert created.status_code == 201, created.text
    instance_id = created.json()["instanceId"]

    async def ready() -> bool:
        seen = await harness.http.get(f"/api/instances/{instance_id}", headers=bearer(KEY_A))
        return bool(seen.json()["status"] == "ready")

    await harness.run_until(ready)
    for _ in range(2):  # the second read is answered from the read cache: B must not be answered from it
        assert (await harness.http.get(f"/api/instances/{instance_id}", headers=bearer(KEY_A))).status_code == 200
    view: dict[str, Any] = (await harness.http.get(f"/api/instances/{instance_id}", headers=bearer(KEY_A))).json()
    return view


def _shape(response: httpx.Response, ref: str) -> tuple[int, str, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"].replace(ref, "<ref>"), response.headers.get("allow")


@pytest.mark.parametrize("call", BY_ID, ids=lambda c: f"{c.method} {c.path} {c.params}")
async def test_another_keys_instance_by_id_is_not_found(two_keys: Harness, call: Call) -> None:
    harness = two_keys
    mine = await a_ready_instance_of_a(harness)
    instance_id = mine["instanceId"]
    theirs = await call.send(harness.http, KEY_B, instance_id, mine["name"])
    unknown = await call.send(harness.http, KEY_B, UNKNOWN_ID, UNKNOWN_NAME)
    assert theirs.status_code == 404, theirs.text
    assert theirs.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
    assert _shape(theirs, instance_id) == _shape(unknown, UNKNOWN_ID)  # the same answer, word for word
    assert "another" not in theirs.text.lower()
    # Nothing changed for A.
    after = (await harness.http.get(f"/api/instances/{instance_id}", headers=bearer(KEY_A))).json()
    assert (after["status"], after["maxRuntimeMinutes"], after["autoStop"]) == (
        mine["status"],
        mine["maxRuntimeMinutes"],
        mine["autoStop"],
    )


@pytest.mark.parametrize("call", BY_NAME, ids=lambda c: f"{c.method} {c.path}")
async def test_another_keys_instance_by_name_is_not_found(two_keys: Harness, call: Call) -> None:
    harness = two_keys
    mine = await a_ready_instance_of_a(harness)
    theirs = await call.send(harness.http, KEY_B, mine["instanceId"], mine["name"])
    unknown = await call.send(harness.http, KEY_B, UNKNOWN_ID, UNKNOWN_NAME)
    assert theirs.status_code == 404, theirs.text
    assert theirs.json()["error"]["code"] == "INSTANCE_NOT_FOUND"
    assert _shape(theirs, mine["name"]) == _shape(unknown, UNKNOWN_NAME)
    after = (await harness.http.get(f"/api/instances/{mine['instanceId']}", headers=bearer(KEY_A))).json()
    assert after["status"] == "ready"


async def test_a_sync_counts_only_the_callers_own_instances(two_keys: Harness) -> None:
    harness = two_keys
    created = await harness.http.post("/api/instances", json=SEED_BODY, headers=bearer(KEY_A))
    assert created.status_code == 201, created.text
    # B has no instance: a full pass that sends A's create and looks at it says nothing of it to B.
    synced_b = await harness.http.post("/api/instances/sync", headers=bearer(KEY_B))
    assert synced_b.status_code == 200, synced_b.text
    assert synced_b.json() == {"claimed": 0, "changed": 0, "ready": 0, "busy": False}
    synced_a = (await harness.http.post("/api/instances/sync", headers=bearer(KEY_A))).json()
    assert synced_a["claimed"] == 1 and synced_a["busy"] is True  # A's instance is on its way
    instance_id = created.json()["instanceId"]
    # A's instance goes all the way to ready driven by B's syncs alone, and B hears of none of it.
    for _ in range(1200):
        synced_b = (await harness.http.post("/api/instances/sync", headers=bearer(KEY_B))).json()
        assert synced_b == {"claimed": 0, "changed": 0, "ready": 0, "busy": False}
        if (await harness.http.get(f"/api/instances/{instance_id}", headers=bearer(KEY_A))).json()["status"] == "ready":
            break
        harness.clock.advance(0.5)
    else:
        raise AssertionError("A's instance never became ready")
