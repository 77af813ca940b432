"""GET /api/audit: filters, cursor pages newest first, and who reads what (admins their team's rows,
owners every team's, viewers and members none), on SQLite and PostgreSQL. Bad values are 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Harness, harness_on
from tests.integration.audit.trail import OWNER, call, create, events, key, page, team

pytestmark = pytest.mark.asyncio


@dataclass
class Trail:
    h: Harness
    ml: str
    cv: str
    keys: dict[str, dict[str, Any]]  # ml viewer, ml member, ml admin, cv admin
    made: list[str]  # the ml member's instances, oldest first, a minute apart


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def trail(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Trail]:
    async with harness_on(request.param, tmp_path, admin_api_keys=OWNER) as h:
        ml, cv = await team(h, "ml"), await team(h, "cv")
        keys = {
            "viewer": await key(h, "ml", "viewer", "ml-viewer"),
            "member": await key(h, "ml", "member", "ml-member"),
            "admin": await key(h, "ml", "admin", "ml-admin"),
            "cv admin": await key(h, "cv", "admin", "cv-admin"),
        }
        made = []
        for name in ("a", "b", "c"):
            h.clock.advance(60)
            made.append((await create(h, keys["member"]["secret"], name)).json()["instanceId"])
        h.clock.advance(60)
        assert (await create(h, keys["cv admin"]["secret"], "cv-job")).status_code == 201
        yield Trail(h, ml, cv, keys, made)


async def test_filters_narrow_the_trail(trail: Trail) -> None:
    h, member = trail.h, trail.keys["member"]
    everything = await events(h)
    assert len(everything) == 2 + 4 + 4  # two teams, four keys, four creates
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)  # newest first

    mine = await events(h, actor=member["id"])
    assert [r["target"] for r in mine] == trail.made[::-1]
    assert {r["actorName"] for r in mine} == {"ml-member"}
    assert [r["target"] for r in await events(h, target=trail.made[1])] == [trail.made[1]]
    assert len(await events(h, action="instance.create")) == 4
    assert len(await events(h, action="key.create")) == 4
    assert await events(h, action="instance.delete") == []

    by_name, by_id = await events(h, team="ml"), await events(h, team=trail.ml)
    assert by_name == by_id and {r["team"] for r in by_id} == {trail.ml}
    assert {r["action"] for r in by_id} == {"team.create", "key.create", "instance.create"}

    second = next(r for r in mine if r["target"] == trail.made[1])
    since = await events(h, actor=member["id"], **{"from": second["at"]})
    assert [r["target"] for r in since] == [trail.made[2], trail.made[1]]  # from is inclusive
    before = await events(h, actor=member["id"], to=second["at"])
    assert [r["target"] for r in before] == [trail.made[0]]  # to is exclusive
    both = await events(h, actor=member["id"], action="instance.create", **{"from": "2000-01-01T00:00:00+02:00"})
    assert both == mine


async def test_cursor_pages_walk_the_trail_newest_first_without_gaps_or_repeats(trail: Trail) -> None:
    h = trail.h
    whole = await page(h, OWNER, limit=500)
    assert whole["nextCursor"] is None
    for size in (1, 3):  # the keys' rows share one instant: the id orders them
        seen, cursor, pages = [], None, 0
        while True:
            shown = await page(h, OWNER, limit=size, **({"cursor": cursor} if cursor else {}))
            assert len(shown["events"]) <= size
            seen += shown["events"]
            pages += 1
            cursor = shown["nextCursor"]
            if cursor is None:
                break
        assert seen == whole["events"]
        assert pages == -(-len(whole["events"]) // size)
    member = trail.keys["member"]["id"]
    first = await page(h, OWNER, actor=member, limit=2)
    rest = await page(h, OWNER, actor=member, limit=2, cursor=first["nextCursor"])
    assert [r["target"] for r in first["events"] + rest["events"]] == trail.made[::-1]
    assert rest["nextCursor"] is None


async def test_admins_read_their_team_owners_every_team_viewers_and_members_nothing(trail: Trail) -> None:
    h, keys = trail.h, trail.keys
    for who in ("viewer", "member"):
        refused = await call(h, keys[who]["secret"], "GET", "/api/audit")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN", who

    ml_rows = await events(h, keys["admin"]["secret"])
    assert ml_rows and {r["team"] for r in ml_rows} == {trail.ml}
    assert ml_rows == await events(h, team=trail.ml)  # what the owner sees of team ml
    assert await events(h, keys["admin"]["secret"], team="ml") == ml_rows
    for other in ("cv", trail.cv, "no-such-team"):
        hidden = await call(h, keys["admin"]["secret"], "GET", "/api/audit", params={"team": other})
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "TEAM_NOT_FOUND", other
    cv_rows = await events(h, keys["cv admin"]["secret"])
    assert {r["team"] for r in cv_rows} == {trail.cv}
    assert not {r["id"] for r in cv_rows} & {r["id"] for r in ml_rows}
    assert await events(h, keys["cv admin"]["secret"], actor=keys["member"]["id"]) == []

    unknown = await call(h, OWNER, "GET", "/api/audit", params={"team": "no-such-team"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "TEAM_NOT_FOUND"
    assert {r["team"] for r in await events(h)} == {trail.ml, trail.cv}  # the owner's: both teams


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "VALIDATION_ERROR"),
        ({"limit": 501}, "VALIDATION_ERROR"),
        ({"limit": "ten"}, "VALIDATION_ERROR"),
        ({"from": "yesterday"}, "VALIDATION_ERROR"),
        ({"to": "2026-13-01T00:00:00Z"}, "VALIDATION_ERROR"),
        ({"from": "1767225600"}, "VALIDATION_ERROR"),
        ({"cursor": "not-a-cursor"}, "INVALID_CURSOR"),
        ({"cursor": "1767225600000000.inst_abc"}, "INVALID_CURSOR"),  # a list's cursor, not the trail's
        ({"action": "Instance.Create"}, "VALIDATION_ERROR"),
        ({"team": ""}, "VALIDATION_ERROR"),
        ({"target": "x" * 121}, "VALIDATION_ERROR"),
        ({"actr": "ak_x"}, "VALIDATION_ERROR"),
    ],
)
async def test_bad_query_values_are_400_in_the_envelope(tmp_path: Path, params: dict[str, Any], code: str) -> None:
    async with Harness(tmp_path, admin_api_keys=OWNER) as h:
        answer = await call(h, OWNER, "GET", "/api/audit", params=params)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == code and error["requestId"] == answer.headers["x-request-id"]
        assert error["details"], error
