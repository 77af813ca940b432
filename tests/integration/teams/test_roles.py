"""Who may do what, over HTTP: every route against every role of team ml, a key of another team, an owner
key, and keys that must not work (expired, revoked, rotated past their grace) (docs/teams.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.harness import SEED_BODY, Harness

OWNER_KEY = "owner-key-0123456789"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class World:
    harness: Harness
    keys: dict[str, str]  # who -> secret
    instance: str  # an instance of team ml
    volume: str  # a volume of team ml
    ml: str  # team ml's id
    key_ids: dict[str, str]


async def call(
    h: Harness, secret: str | None, method: str, path: str, body: Any = None, **headers: str
) -> httpx.Response:
    sent = {"Authorization": f"Bearer {secret}"} if secret else {}
    return await h.http.request(method, path, json=body, headers={**sent, **headers})


async def make_key(h: Harness, team: str, role: str, name: str, **extra: Any) -> dict[str, Any]:
    made = await call(h, OWNER_KEY, "POST", "/api/keys", {"name": name, "team": team, "role": role, **extra})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("roles")
    async with Harness(tmp, admin_api_keys=OWNER_KEY, key_rotation_grace_seconds=60) as h:
        ml = (await call(h, OWNER_KEY, "POST", "/api/teams", {"name": "ml"})).json()["id"]
        cv = (await call(h, OWNER_KEY, "POST", "/api/teams", {"name": "cv"})).json()["id"]
        keys: dict[str, str] = {"owner": OWNER_KEY}
        ids: dict[str, str] = {}
        for role in ("viewer", "member", "admin"):
            made = await make_key(h, "ml", role, f"ml-{role}")
            keys[role], ids[role] = made["secret"], made["id"]
        other = await make_key(h, "cv", "admin", "cv-admin")
        keys["other team"] = other["secret"]
        expiring = await make_key(
            h, "ml", "admin", "ml-expiring", expiresAt=(h.clock.now() + timedelta(seconds=30)).isoformat()
        )
        keys["expired"] = expiring["secret"]
        revoked = await make_key(h, "ml", "admin", "ml-revoked")
        keys["revoked"], ids["revoked"] = revoked["secret"], revoked["id"]
        rotated = await make_key(h, "ml", "admin", "ml-rotated")
        keys["rotated, old secret in grace"] = rotated["secret"]
        renewed = await call(h, OWNER_KEY, "POST", f"/api/keys/{rotated['id']}/rotate")
        assert renewed.status_code == 200, renewed.text
        keys["rotated, new secret"] = renewed.json()["secret"]
        assert (await call(h, OWNER_KEY, "DELETE", f"/api/keys/{revoked['id']}")).status_code == 200

        created = await call(h, keys["member"], "POST", "/api/instances", {**SEED_BODY, "name": "ml-job"})
        assert created.status_code == 201, created.text
        volume = await call(
            h, keys["member"], "POST", "/api/volumes", {"name": "ml-data", "region": "US-TX-04", "sizeGb": 10}
        )
        assert volume.status_code == 201, volume.text
        pool = await call(h, keys["admin"], "POST", "/api/pools", {**SEED_BODY, "name": "ml-pool", "max": 20})
        assert pool.status_code == 201, pool.text
        h.clock.advance(45)  # the expiring key has expired; the first rotation's grace (60 s) still runs
        yield World(h, keys, created.json()["instanceId"], volume.json()["volumeId"], ml, ids)
        assert cv


# (method, path, body) -> the callers allowed; every other caller gets the status in `refused` by kind.
WHO = (
    "viewer",
    "member",
    "admin",
    "owner",
    "other team",
    "expired",
    "revoked",
    "rotated, old secret in grace",
    "rotated, new secret",
)
READERS = {"viewer", "member", "admin", "owner", "rotated, old secret in grace", "rotated, new secret"}
MEMBERS = READERS - {"viewer"}
ADMINS = MEMBERS - {"member"}
TEAM_ML = {"viewer", "member", "admin", "rotated, old secret in grace", "rotated, new secret"}  # not owner: own team


def routes(w: World) -> list[tuple[str, str, Any, set[str], dict[str, str]]]:
    """(method, path, body, who may, headers): `who may` see a 2xx, 4xx other than 401/403/404 for bad state."""
    i, v = w.instance, w.volume
    x_team = {"X-Team": "ml"}
    return [
        ("GET", "/api/me", None, READERS | {"other team"}, {}),
        ("GET", "/api/instances", None, READERS | {"other team"}, {}),
        ("GET", f"/api/instances/{i}", None, TEAM_ML, {}),
        ("GET", f"/api/instances/{i}", None, TEAM_ML | {"owner"}, x_team),
        ("GET", f"/api/instances/{i}/events", None, TEAM_ML, {}),
        ("PATCH", f"/api/instances/{i}", {"maxRuntimeMinutes": 120}, TEAM_ML - {"viewer"}, {}),
        ("PUT", f"/api/instances/{i}/last-used", None, TEAM_ML - {"viewer"}, {}),
        ("POST", "/api/instances", {**SEED_BODY, "name": "probe"}, MEMBERS | {"other team"}, {}),
        ("POST", f"/api/instances/{i}/stop", None, TEAM_ML - {"viewer"}, {}),
        ("POST", f"/api/instances/{i}/start", None, TEAM_ML - {"viewer"}, {}),
        ("GET", "/api/volumes", None, READERS | {"other team"}, {}),
        ("GET", f"/api/volumes/{v}", None, TEAM_ML, {}),
        ("POST", "/api/volumes", {"name": "probe", "region": "US-TX-04", "sizeGb": 10}, MEMBERS | {"other team"}, {}),
        ("GET", "/api/pools", None, READERS | {"other team"}, {}),
        ("GET", "/api/pools/ml-pool", None, TEAM_ML, {}),
        ("POST", "/api/pools", {**SEED_BODY, "name": "probe-pool", "max": 1}, ADMINS | {"other team"}, {}),
        ("PATCH", "/api/pools/ml-pool", {"minReady": 0}, TEAM_ML & ADMINS, {}),
        ("PATCH", "/api/pools/ml-pool", {"minReady": 0}, (TEAM_ML & ADMINS) | {"owner"}, x_team),
        ("POST", "/api/pools/ml-pool/claim", {"name": "claim-probe"}, TEAM_ML - {"viewer"}, {}),
        ("GET", "/api/costs", None, READERS | {"other team"}, {}),
        ("GET", "/api/budget", None, READERS | {"other team"}, {}),
        ("PUT", "/api/budget", {"monthlyLimitUsd": 500, "onExceeded": "refuseCreates"}, ADMINS | {"other team"}, {}),
        ("GET", "/api/keys", None, ADMINS | {"other team"}, {}),
        ("POST", "/api/keys", {"name": "probe", "role": "member"}, ADMINS | {"other team"}, {}),
        ("POST", "/api/keys", {"name": "probe", "role": "owner"}, {"owner"}, {}),
        ("GET", "/api/teams", None, READERS | {"other team"}, {}),
        ("GET", "/api/teams/ml", None, TEAM_ML | {"owner"}, {}),
        ("PATCH", "/api/teams/ml", {"quotas": {"maxUsdPerHour": 1000}}, (TEAM_ML & ADMINS) | {"owner"}, {}),
        ("POST", "/api/teams", {"name": "probe"}, {"owner"}, {}),
        ("GET", "/api/volumes/unmanaged", None, {"owner"}, {}),
        ("GET", "/api/audit", None, ADMINS | {"other team"}, {}),
        ("GET", "/api/audit?team=ml", None, (TEAM_ML & ADMINS) | {"owner"}, {}),
        ("GET", "/metrics", None, {"owner"}, {}),
        ("DELETE", f"/api/volumes/{v}", None, TEAM_ML - {"viewer"}, {}),
        ("DELETE", f"/api/instances/{i}", None, TEAM_ML - {"viewer"}, {}),
    ]


def refusal(who: str, method: str, team_only: bool) -> set[int]:
    """What a caller that may not is told: 401 for a key that does not work, 404 for another team's resource
    (never 403: existence does not leak), 403 for a role too low."""
    if who in ("expired", "revoked"):
        return {401}
    if team_only and who in ("other team", "owner"):
        return {404}
    return {403}


async def test_each_route_answers_each_caller_as_its_role_allows(world: World) -> None:
    h = world.harness
    wrong: list[str] = []
    for method, path, body, allowed, headers in routes(world):
        team_only = any(x in path for x in (world.instance, world.volume, "/api/teams/ml", "team=ml", "ml-pool"))
        for who in WHO:
            answer = await call(h, world.keys[who], method, path, body, **headers)
            if who in allowed:
                ok = answer.status_code not in (401, 403, 404) and answer.status_code < 500
            else:
                ok = answer.status_code in refusal(who, method, team_only)
            if not ok:
                wrong.append(f"{who:>30}  {method} {path} {headers or ''} -> {answer.status_code} {answer.text[:120]}")
    assert wrong == [], "\n".join(wrong)


async def test_a_rotated_secret_stops_working_when_its_grace_ends(world: World) -> None:
    h = world.harness
    in_grace = world.keys["rotated, old secret in grace"]
    assert (await call(h, in_grace, "GET", "/api/me")).status_code == 200
    h.clock.advance(61)
    h.services.keys.forget()
    assert (await call(h, in_grace, "GET", "/api/me")).status_code == 401
    assert (await call(h, world.keys["rotated, new secret"], "GET", "/api/me")).status_code == 200


async def test_keys_are_listed_without_secrets_and_me_says_who_is_calling(world: World) -> None:
    h = world.harness
    me = (await call(h, world.keys["viewer"], "GET", "/api/me")).json()
    assert me == {
        "team": world.ml,
        "teamName": "ml",
        "keyId": world.key_ids["viewer"],
        "keyName": "ml-viewer",
        "role": "viewer",
    }
    listed = (await call(h, world.keys["admin"], "GET", "/api/keys")).text
    for secret in world.keys.values():
        assert secret not in listed
    keys = (await call(h, world.keys["admin"], "GET", "/api/keys")).json()["keys"]
    assert {k["teamName"] for k in keys} == {"ml"}  # an admin sees its own team's keys only
    assert all(k["prefix"].startswith("ngk_") and len(k["prefix"]) == 12 for k in keys)
    assert all(len(s) >= 4 + 43 for who, s in world.keys.items() if who != "owner")  # 256 random bits
