"""Every mutating request is one row of the audit trail, read back over HTTP: who (the key's id and name),
in which team, what (the route's action) to what (the path's id, or a create's new id), how it went (ok
or the error's code, with the status) and the request id. Refusals of a known key are recorded too; a
request without a valid key, a read and a path no route matches are not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Harness
from tests.integration.audit.trail import OWNER, call, create, events, key, stored, team

pytestmark = pytest.mark.asyncio


@dataclass
class Teams:
    h: Harness
    ml: str
    cv: str
    member: dict[str, Any]  # alice, a member of ml
    viewer: dict[str, Any]  # vic, a viewer of ml
    other: dict[str, Any]  # carol, a member of cv


@pytest.fixture
async def teams(tmp_path: Path) -> AsyncIterator[Teams]:
    async with Harness(tmp_path, admin_api_keys=OWNER) as h:
        ml, cv = await team(h, "ml"), await team(h, "cv")
        yield Teams(
            h,
            ml,
            cv,
            await key(h, "ml", "member", "alice"),
            await key(h, "ml", "viewer", "vic"),
            await key(h, "cv", "member", "carol"),
        )


async def until(h: Harness, secret: str, instance_id: str, *statuses: str) -> None:
    async def reached() -> bool:
        view = await call(h, secret, "GET", f"/api/instances/{instance_id}")
        return bool(view.json()["status"] in statuses)

    await h.run_until(reached)


async def test_a_users_create_stop_and_delete_each_leave_a_row_with_the_right_actor(teams: Teams) -> None:
    h, alice = teams.h, teams.member
    made = await create(h, alice["secret"], "job", headers={"X-Request-Id": "trace-create-1"})
    assert made.status_code == 201, made.text
    instance_id = made.json()["instanceId"]
    await until(h, alice["secret"], instance_id, "ready")
    stopped = await call(h, alice["secret"], "POST", f"/api/instances/{instance_id}/stop")
    assert stopped.status_code == 202, stopped.text
    await until(h, alice["secret"], instance_id, "stopped")
    deleted = await call(h, alice["secret"], "DELETE", f"/api/instances/{instance_id}")
    assert deleted.status_code == 202, deleted.text

    rows = await events(h, target=instance_id)
    assert [r["action"] for r in rows] == ["instance.delete", "instance.stop", "instance.create"]  # newest first
    for row, answer in zip(rows, (deleted, stopped, made), strict=True):
        assert row["actor"] == alice["id"] and row["actorName"] == "alice"
        assert row["team"] == teams.ml and row["target"] == instance_id
        assert row["outcome"] == "ok" and row["details"] == {"status": answer.status_code}
        assert row["requestId"] == answer.headers["x-request-id"]
    assert rows[-1]["requestId"] == "trace-create-1"  # the caller's own request id, as the answer echoes it
    assert rows[0]["at"] >= rows[-1]["at"]


async def test_refusals_of_a_known_key_are_recorded_with_their_outcome(teams: Teams) -> None:
    h, alice, vic, carol = teams.h, teams.member, teams.viewer, teams.other
    made = await create(h, alice["secret"], "job")
    instance_id = made.json()["instanceId"]

    refused = await call(h, vic["secret"], "POST", f"/api/instances/{instance_id}/stop")  # a viewer may only read
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
    hidden = await call(h, carol["secret"], "POST", f"/api/instances/{instance_id}/stop")  # another team's: 404
    assert hidden.status_code == 404
    quota = await call(h, OWNER, "PATCH", "/api/teams/ml", {"quotas": {"maxGpus": 1}})
    assert quota.status_code == 200, quota.text
    over = await create(h, alice["secret"], "one-too-many")
    assert over.status_code == 403 and over.json()["error"]["code"] == "QUOTA_EXCEEDED"
    await call(h, alice["secret"], "DELETE", f"/api/instances/{instance_id}")
    await until(h, alice["secret"], instance_id, "terminated")
    late = await call(h, alice["secret"], "POST", f"/api/instances/{instance_id}/stop")
    assert late.status_code == 409, late.text

    [viewer_row] = await events(h, actor=vic["id"])
    assert viewer_row["action"] == "instance.stop" and viewer_row["target"] == instance_id
    assert viewer_row["outcome"] == "FORBIDDEN" and viewer_row["details"] == {"status": 403}
    assert viewer_row["team"] == teams.ml and viewer_row["actorName"] == "vic"
    [other_row] = await events(h, actor=carol["id"])
    assert other_row["outcome"] == "INSTANCE_NOT_FOUND" and other_row["details"] == {"status": 404}
    assert other_row["team"] == teams.cv  # recorded in the caller's team: ml's trail does not show it
    [quota_row] = await events(h, action="team.update")
    assert quota_row["actor"] != alice["id"] and quota_row["target"] == teams.ml and quota_row["team"] == teams.ml
    creates = await events(h, actor=alice["id"], action="instance.create")
    assert [(r["outcome"], r["target"], r["details"]["status"]) for r in creates] == [
        ("QUOTA_EXCEEDED", None, 403),
        ("ok", instance_id, 201),
    ]
    [late_row, *_] = await events(h, actor=alice["id"], action="instance.stop")
    assert late_row["outcome"] == late.json()["error"]["code"] and late_row["details"] == {"status": 409}


async def test_no_row_without_a_valid_key_for_reads_or_for_no_route(teams: Teams) -> None:
    h, alice = teams.h, teams.member
    before = len(await stored(h))
    assert (await call(h, "ngk_not-a-key", "POST", "/api/instances", {"name": "x"})).status_code == 401
    assert (await call(h, None, "DELETE", "/api/keys/ak_00000000000000000000")).status_code == 401
    assert (await call(h, alice["secret"], "GET", "/api/instances")).status_code == 200
    assert (await call(h, alice["secret"], "POST", "/api/nothing-here")).status_code == 404
    assert (await call(h, alice["secret"], "PUT", "/api/instances/inst_x")).status_code == 405
    assert (await call(h, OWNER, "PUT", f"/api/keys/{alice['id']}")).status_code == 405
    assert len(await stored(h)) == before

    # Refused before the auth dependency ran (the body is not JSON): still the key's row.
    bad = await h.http.post(
        "/api/instances",
        content=b"{not json",
        headers={"Authorization": f"Bearer {alice['secret']}", "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    [row] = await events(h, actor=alice["id"])
    assert row["action"] == "instance.create" and row["outcome"] == bad.json()["error"]["code"]
    assert row["team"] == teams.ml and row["details"] == {"status": 400}


async def test_an_owner_acting_in_a_team_is_recorded_in_that_team(teams: Teams) -> None:
    h = teams.h
    made = await create(h, OWNER, "owners-job", headers={"X-Team": "ml"})
    assert made.status_code == 201, made.text
    [row] = await events(h, action="instance.create", target=made.json()["instanceId"])
    assert row["team"] == teams.ml and row["actor"].startswith("key-")  # an ADMIN_API_KEYS key's id, not itself
    admin = await key(h, "ml", "admin", "ml-admin")
    assert [r["target"] for r in await events(h, admin["secret"], action="instance.create")] == [
        made.json()["instanceId"]
    ]


async def test_a_keys_secret_never_reaches_the_audit_trail(teams: Teams) -> None:
    h = teams.h
    made = await key(h, "ml", "admin", "bob")
    rotated = await call(h, OWNER, "POST", f"/api/keys/{made['id']}/rotate")
    assert rotated.status_code == 200, rotated.text
    secrets = [made["secret"], rotated.json()["secret"], OWNER, teams.member["secret"]]
    used = await call(h, rotated.json()["secret"], "POST", "/api/keys", {"name": "by-bob", "role": "viewer"})
    assert used.status_code == 201, used.text
    secrets.append(used.json()["secret"])
    revoked = await call(h, OWNER, "DELETE", f"/api/keys/{made['id']}")
    assert revoked.status_code == 200, revoked.text

    rows = await events(h, target=made["id"])
    assert [(r["action"], r["outcome"], r["team"]) for r in rows] == [
        ("key.revoke", "ok", teams.ml),
        ("key.rotate", "ok", teams.ml),
        ("key.create", "ok", teams.ml),  # the key's team, though the owner key's own team is another
    ]
    [by_bob] = await events(h, actor=made["id"])
    assert by_bob["action"] == "key.create" and by_bob["target"] == used.json()["id"]

    answer = (await call(h, OWNER, "GET", "/api/audit", params={"limit": 500})).text
    everything = [
        repr([getattr(row, column) for column in ("team", "actor", "actor_name", "action", "target", "outcome")])
        + repr(row.request_id)
        + repr(row.details)
        for row in await stored(h)
    ]
    for secret in secrets:
        for fragment in (secret, secret[12:]):  # whole, or past the prefix the key list shows
            assert fragment not in answer
            assert not [line for line in everything if fragment in line]
