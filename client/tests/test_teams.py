"""Who a key is, teams, their keys and the audit trail, through `Client` and `AsyncClient` (each scenario run
through both) and through `novita-gpu me|teams|audit`, against a stand-in service: the requests sent and
what is printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from conftest import FakeService, Request, Scenario, answer, items
from novita_gpu_client import KEEP, ApiError
from novita_gpu_client.cli import app

ME = {"team": "team_0123456789abcdef", "teamName": "ml", "keyId": "ak_0123456789abcdef0123", "keyName": "alice"}
SECRET = "ngk_" + "s" * 43


def team(**more: Any) -> dict[str, Any]:
    return {
        "id": "team_0123456789abcdef",
        "name": "ml",
        "quotas": {"maxGpus": 4, "maxUsdPerHour": None, "monthlyBudgetUsd": 100.0},
        "use": {
            "gpus": {"limit": 4, "used": 3},
            "usdPerHour": {"limit": None, "used": 1.16},
            "monthUsd": {"limit": 100.0, "used": 12.5},
        },
        "keys": 2,
        "createdAt": "2026-01-02T03:04:05.123456Z",
        "updatedAt": "2026-01-02T03:04:05.123456Z",
        **more,
    }


def key(key_id: str = "ak_0123456789abcdef0123", name: str = "alice", **more: Any) -> dict[str, Any]:
    return {
        "id": key_id,
        "name": name,
        "prefix": "ngk_abcdefgh",
        "team": "team_0123456789abcdef",
        "teamName": "ml",
        "role": "admin",
        "createdAt": "2026-01-02T03:04:05Z",
        "createdBy": "key-000000000000",
        "rotatedAt": None,
        "lastUsedAt": None,
        "expiresAt": None,
        "revokedAt": None,
        "previousValidUntil": None,
        **more,
    }


def event(number: int, **more: Any) -> dict[str, Any]:
    return {
        "id": f"ev_{number}",
        "at": f"2026-01-02T03:04:{number:02d}.5Z",
        "team": "team_0123456789abcdef",
        "actor": "ak_0123456789abcdef0123",
        "actorName": "alice",
        "action": "instance.stop",
        "target": "inst_0123456789abcdef0123",
        "outcome": "ok",
        "requestId": f"{number:032x}",
        "details": {},
        **more,
    }


def paged(*pages: list[dict[str, Any]]) -> Callable[[Request], tuple[int, Any]]:
    """GET /api/audit: page n for cursor `cn` (the first without one)."""

    def handler(request: Request) -> tuple[int, Any]:
        at = int((request.param("cursor") or "c0")[1:])
        more = f"c{at + 1}" if at + 1 < len(pages) else None
        return 200, {"events": pages[at], "nextCursor": more}

    return handler


# -- the SDK, blocking and asyncio ------------------------------------------------------------------------


def test_me_and_teams(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("GET", "/api/me", (200, {**ME, "role": "admin"}))
    service.route("GET", "/api/teams", (200, {"teams": [team()]}))
    service.route("GET", "/api/teams/ml%2Fx", (200, team()))  # one path segment, whatever the ref holds
    service.route("POST", "/api/teams", (201, team(name="cv")))
    service.route("PATCH", "/api/teams/ml", (200, team()))

    async def scenario(client: Any) -> None:
        assert (await answer(client.me()))["role"] == "admin"
        assert (await answer(client.list_teams()))["teams"][0]["name"] == "ml"
        assert (await answer(client.get_team("ml/x")))["use"]["gpus"] == {"limit": 4, "used": 3}
        assert (await answer(client.create_team("cv")))["name"] == "cv"
        await answer(client.update_team("ml", max_gpus=8))
        await answer(client.update_team("ml", name="ml2", max_gpus=None, monthly_budget_usd=250.5))
        await answer(client.update_team("ml", name="ml3", max_usd_per_hour=KEEP))

    run(scenario)
    assert service.sent("GET", "/api/me")[0].headers["authorization"] == "Bearer sk-test"
    assert service.sent("POST", "/api/teams")[0].body == {"name": "cv"}
    # Only what is given: a quota left out keeps its value, None is null (no limit).
    assert [r.body for r in service.sent("PATCH", "/api/teams/ml")][:3] == [
        {"quotas": {"maxGpus": 8}},
        {"name": "ml2", "quotas": {"maxGpus": None, "monthlyBudgetUsd": 250.5}},
        {"name": "ml3"},
    ]


def test_keys_made_rotated_revoked_and_what_is_sent_again(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("GET", "/api/keys", (200, {"keys": [key()]}))
    service.route("POST", "/api/keys", (201, {**key(name="grafana", role="viewer"), "secret": SECRET}))
    rotated = {**key(rotatedAt="2026-01-03T00:00:00Z", previousValidUntil="2026-01-04T00:00:00Z"), "secret": SECRET}
    service.route("POST", "/api/keys/ak_0123456789abcdef0123/rotate", (200, rotated))
    busy = {"error": {"code": "UNAVAILABLE", "message": "Try again.", "requestId": "req-503"}}
    service.route("POST", "/api/keys/ak_ffffffffffffffffffff/rotate", (503, busy))
    service.route("DELETE", "/api/keys/ak_ffffffffffffffffffff", (503, busy))
    service.route("DELETE", "/api/keys/ak_0123456789abcdef0123", (200, key(revokedAt="2026-01-03T00:00:00Z")))

    async def scenario(client: Any) -> None:
        assert (await answer(client.list_keys()))["keys"][0]["id"] == "ak_0123456789abcdef0123"
        await answer(client.list_keys(team="ml"))
        expires = datetime(2027, 6, 30, tzinfo=UTC)
        made = await answer(client.create_key("grafana", "viewer", team="ml", expires_at=expires))
        assert made["secret"] == SECRET
        await answer(client.create_key("ci", "member"))
        assert (await answer(client.rotate_key("ak_0123456789abcdef0123")))["previousValidUntil"]
        assert (await answer(client.revoke_key("ak_0123456789abcdef0123")))["revokedAt"]
        for unavailable in (client.rotate_key, client.revoke_key):
            with pytest.raises(ApiError) as refused:
                await answer(unavailable("ak_ffffffffffffffffffff"))
            assert refused.value.status == 503

    run(scenario)
    listed = service.sent("GET", "/api/keys")
    assert [r.param("team") for r in listed] == [None, "ml"]
    bodies = [r.body for r in service.sent("POST", "/api/keys")][:2]
    assert bodies == [
        {"name": "grafana", "role": "viewer", "team": "ml", "expiresAt": "2027-06-30T00:00:00+00:00"},
        {"name": "ci", "role": "member"},
    ]
    # A rotate sent again would rotate twice (the first secret lost): never; a revoke is safe to repeat.
    assert len(service.sent("POST", "/api/keys/ak_ffffffffffffffffffff/rotate")) == 1
    assert len(service.sent("DELETE", "/api/keys/ak_ffffffffffffffffffff")) == 3  # FAST's 3 attempts


def test_audit_one_page_with_its_filters_and_every_page_in_turn(
    run: Callable[[Scenario], None], service: FakeService
) -> None:
    service.route("GET", "/api/audit", paged([event(3), event(2)], [event(1)]))

    async def scenario(client: Any) -> None:
        page = await answer(
            client.audit(
                team="ml",
                actor="ak_0123456789abcdef0123",
                target="inst_1",
                action="instance.stop",
                start=datetime(2026, 1, 1, tzinfo=UTC),
                end="2026-02-01T00:00:00Z",
                limit=2,
            )
        )
        assert [e["id"] for e in page["events"]] == ["ev_3", "ev_2"] and page["nextCursor"] == "c1"
        every = await items(client.iter_audit(action="instance.stop", page_size=2))
        assert [e["id"] for e in every] == ["ev_3", "ev_2", "ev_1"]
        first = await items(client.iter_audit(page_size=2), at_most=1)  # stopped early: no page more read
        assert [e["id"] for e in first] == ["ev_3"]

    run(scenario)
    sent = service.sent("GET", "/api/audit")
    assert sent[0].query == {
        "team": ["ml"],
        "actor": ["ak_0123456789abcdef0123"],
        "target": ["inst_1"],
        "action": ["instance.stop"],
        "from": ["2026-01-01T00:00:00+00:00"],
        "to": ["2026-02-01T00:00:00Z"],
        "limit": ["2"],
    }
    assert [(r.param("cursor"), r.param("action"), r.param("limit")) for r in sent[1:4]] == [
        (None, "instance.stop", "2"),
        ("c1", "instance.stop", "2"),
        (None, None, "2"),
    ]
    assert len(sent) == 4


# -- the commands -----------------------------------------------------------------------------------------

NO_CONFIG = {"NOVITA_GPU_CONFIG": str(Path(__file__).parent / "no-such-config.toml"), "NOVITA_GPU_PROFILE": None}


def cli(service: FakeService, *args: str, columns: int = 80, **kw: Any) -> Result:
    env = {**NO_CONFIG, "NOVITA_GPU_URL": service.url, "NOVITA_GPU_API_KEY": "sk-cli", "COLUMNS": str(columns)}
    return CliRunner().invoke(app, list(args), env=env, **kw)


def ok(result: Result, columns: int = 80) -> str:
    """The output of a command that went well, every line within `columns`."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), "\n".join(line for line in lines if len(line) > columns)
    return result.stdout


def test_me_says_the_team_the_key_and_what_its_role_may_do(service: FakeService) -> None:
    service.route("GET", "/api/me", (200, {**ME, "role": "viewer"}))
    shown = ok(cli(service, "me"))
    assert "team   ml (team_0123456789abcdef)" in shown
    assert "key    alice (ak_0123456789abcdef0123)" in shown
    assert "role   viewer: reads the team's instances" in shown
    assert json.loads(ok(cli(service, "me", "--json")))["role"] == "viewer"


def test_teams_list_get_create_and_update(service: FakeService) -> None:
    service.route("GET", "/api/me", (200, {**ME, "role": "admin"}))
    service.route("GET", "/api/teams", (200, {"teams": [team(), team(id="team_ffffffffffffffff", name="cv")]}))
    service.route("GET", "/api/teams/team_0123456789abcdef", (200, team()))
    service.route("POST", "/api/teams", (201, team(name="cv")))
    service.route("PATCH", "/api/teams/cv", (200, team(name="cv")))
    service.route("PATCH", "/api/teams/team_0123456789abcdef", (200, team()))

    listed = ok(cli(service, "teams", "list")).splitlines()
    assert listed[0].split() == ["NAME", "ID", "GPUS", "$/H", "MONTH", "$", "KEYS"]
    assert listed[1].split() == ["ml", "team_0123456789abcdef", "3/4", "1.16/-", "12.50/100.00", "2"]
    assert [t["name"] for t in json.loads(ok(cli(service, "teams", "list", "--json")))] == ["ml", "cv"]

    shown = ok(cli(service, "teams", "get"))  # this key's team: asked of /api/me
    assert "gpus        3 of 4 (1 left)" in shown
    assert "usd/hour    $1.1600 (no limit)" in shown
    assert "this month  $12.50 of $100.00 ($87.50 left)" in shown
    assert "created     2026-01-02T03:04:05Z" in shown
    assert ok(cli(service, "teams", "create", "cv")).splitlines()[2].split() == ["name", "cv"]

    ok(cli(service, "teams", "update", "cv", "--max-gpus", "none", "--monthly-budget", "250.5"))
    ok(cli(service, "teams", "update", "--name", "ml2", "--max-usd-per-hour", "3"))
    assert [r.body for r in service.requests if r.method == "PATCH"] == [
        {"quotas": {"maxGpus": None, "monthlyBudgetUsd": 250.5}},
        {"name": "ml2", "quotas": {"maxUsdPerHour": 3.0}},
    ]
    nothing = cli(service, "teams", "update", "cv")
    assert (nothing.exit_code, nothing.stderr) == (
        2,
        "error: nothing to change: give --name, --max-gpus, --max-usd-per-hour or --monthly-budget\n",
    )
    bad = cli(service, "teams", "update", "cv", "--max-gpus", "1.5")
    assert bad.exit_code == 2 and "'1.5' is neither a whole number nor none" in bad.stderr
    assert len([r for r in service.requests if r.method == "PATCH"]) == 2  # neither was sent


def test_keys_create_and_rotate_print_the_secret_once_on_a_line_of_its_own(service: FakeService) -> None:
    made = {**key(name="grafana", role="viewer", expiresAt="2026-02-01T00:00:00Z"), "secret": SECRET}
    service.route("POST", "/api/keys", (201, made))
    service.route("GET", "/api/keys", (200, {"keys": [key(), key("ak_ffffffffffffffffffff", "old", revokedAt="x")]}))
    rotated = {**key(rotatedAt="2026-01-03T00:00:00Z", previousValidUntil="2026-01-04T00:00:00Z"), "secret": SECRET}
    service.route("POST", "/api/keys/ak_0123456789abcdef0123/rotate", (200, rotated))

    shown = ok(cli(service, "teams", "keys", "create", "grafana", "--role", "viewer", "--team", "ml"))
    lines = shown.splitlines()
    assert lines[0] == "Created key grafana (ak_0123456789abcdef0123), viewer of team ml. It expires at"
    assert f"    {SECRET}" in lines and shown.count(SECRET) == 1
    assert "shown this once" in shown and "cannot be shown again" in shown
    assert (
        json.loads(ok(cli(service, "teams", "keys", "create", "ci", "--role", "member", "--json")))["secret"] == SECRET
    )
    ok(cli(service, "teams", "keys", "create", "ci", "--role", "member", "--expires-in", "30d"))
    sent = [r.body for r in service.sent("POST", "/api/keys")]
    assert sent[0] == {"name": "grafana", "role": "viewer", "team": "ml"}
    assert sent[1] == {"name": "ci", "role": "member"}
    assert set(sent[2]) == {"name", "role", "expiresAt"}
    in_30_days = datetime.fromisoformat(sent[2]["expiresAt"]) - datetime.now(UTC)
    assert 29.9 < in_30_days.total_seconds() / 86400 <= 30
    both = cli(service, "teams", "keys", "create", "x", "--role", "viewer", "--expires-in", "1d", "--expires-at", "y")
    assert both.exit_code == 2 and len(service.sent("POST", "/api/keys")) == 3

    # By name: the one key not revoked with that name (the list says its id).
    again = ok(cli(service, "teams", "keys", "rotate", "alice"))
    assert again.startswith("Rotated key alice (ak_0123456789abcdef0123), admin of team ml.")
    assert f"    {SECRET}" in again.splitlines()
    assert "The old secret keeps working until 2026-01-04T00:00:00Z." in again
    rotate_json = json.loads(ok(cli(service, "teams", "keys", "rotate", "ak_0123456789abcdef0123", "--json")))
    assert rotate_json["secret"] == SECRET
    assert len(service.sent("GET", "/api/keys")) == 1  # an id is used as it is
    missing = cli(service, "teams", "keys", "rotate", "old")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "error: no key named 'old' (novita-gpu teams keys list shows them)\n",
    )


def test_keys_list_and_revoke(service: FakeService) -> None:
    used = datetime.now(UTC).isoformat()
    keys = [
        key(lastUsedAt=used, previousValidUntil="2999-01-01T00:00:00Z"),
        key("ak_1111111111111111111a", "grafana", role="viewer", expiresAt="2000-01-01T00:00:00Z"),
        key("ak_ffffffffffffffffffff", "old", revokedAt="2026-01-03T00:00:00Z"),
    ]
    service.route("GET", "/api/keys", (200, {"keys": keys}))
    service.route("DELETE", "/api/keys/ak_1111111111111111111a", (200, key(revokedAt="2026-01-05T06:07:08.9Z")))

    rows = ok(cli(service, "teams", "keys", "list")).splitlines()
    assert rows[0].split() == ["ID", "NAME", "TEAM", "ROLE", "PREFIX", "USED", "STATUS"]
    assert rows[1].split() == [
        "ak_0123456789abcdef0123",
        "alice",
        "ml",
        "admin",
        "ngk_abcdefgh",
        "0s",
        "ago",
        "rotating",
    ]
    assert rows[2].split()[-2:] == ["never", "expired"] and len(rows) == 3  # revoked ones only with --all
    assert "revoked" in ok(cli(service, "teams", "keys", "list", "--all", "--team", "ml"))
    assert service.sent("GET", "/api/keys")[-1].param("team") == "ml"
    assert len(json.loads(ok(cli(service, "teams", "keys", "list", "--json")))) == 2

    unasked = cli(service, "teams", "keys", "revoke", "grafana")  # no terminal to ask on
    assert unasked.exit_code == 2 and "pass --yes" in unasked.stderr
    assert ok(cli(service, "teams", "keys", "revoke", "grafana", "--yes")) == (
        "ak_0123456789abcdef0123 (alice): revoked at 2026-01-05T06:07:08Z\n"
    )
    assert len(service.sent("DELETE", "/api/keys/ak_1111111111111111111a")) == 1


def test_errors_are_the_servers_message_on_one_line(service: FakeService) -> None:
    forbidden = {
        "code": "FORBIDDEN",
        "message": "This key's role (viewer) may not see the team's keys; it takes admin.",
        "requestId": "req-403",
    }
    service.route("GET", "/api/keys", (403, {"error": forbidden}))
    refused = cli(service, "teams", "keys", "list")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: FORBIDDEN: This key's role (viewer) may not see the team's keys; it takes admin. (request req-403)\n"
    )
    quota = {
        "code": "QUOTA_EXCEEDED",
        "message": "The team's quota maxGpus is 4: it holds 4 and this asks for 1 more.",
        "requestId": "req-q",
        "details": [{"field": "maxGpus", "message": "limit 4, in use 4, requested 1"}],
    }
    service.route("PATCH", "/api/teams/ml", (403, {"error": quota}))
    over = cli(service, "teams", "update", "ml", "--max-gpus", "2")
    assert over.exit_code == 1 and len(over.stderr.splitlines()) == 1
    assert over.stderr.startswith("error: QUOTA_EXCEEDED: The team's quota maxGpus is 4")
    # A service from before the audit trail has no such route: said in words.
    old = cli(service, "audit")
    assert (old.exit_code, old.stderr) == (
        1,
        "error: this service has no audit trail (GET /api/audit: No such route.); upgrade it\n",
    )


def test_audit_table_filters_and_limit(service: FakeService) -> None:
    service.route("GET", "/api/audit", paged([event(5), event(4)], [event(3, outcome="refused"), event(2)], [event(1)]))

    rows = ok(cli(service, "audit", "--limit", "3", "--action", "instance.stop", "--from", "7d")).splitlines()
    assert rows[0].split()[:5] == ["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME"]
    assert rows[1].split()[:3] == ["2026-01-02T03:04:05Z", "alice", "instance.stop"]
    assert rows[3].split()[4] == "refused" and len(rows) == 6
    assert rows[4] == "(not shown at 80 columns: TEAM, REQUEST: see --json)"
    assert rows[5] == "(the newest 3: --limit N for more, --from/--to for another period)"
    sent = service.sent("GET", "/api/audit")
    assert [r.param("cursor") for r in sent] == [None, "c1"]  # 4 read (one more than shown), then stopped
    assert sent[0].param("limit") == "4" and sent[0].param("action") == "instance.stop"
    week_ago = datetime.now(UTC) - datetime.fromisoformat(str(sent[0].param("from")))
    assert 6.99 < week_ago.total_seconds() / 86400 < 7.01

    every = json.loads(ok(cli(service, "audit", "--json", "--actor", "ak_1", "--to", "2026-02-01T00:00:00Z")))
    assert [e["id"] for e in every] == ["ev_5", "ev_4", "ev_3", "ev_2", "ev_1"]
    assert service.requests[-1].param("to") == "2026-02-01T00:00:00Z"
    assert service.requests[-1].param("actor") == "ak_1"
    wide = ok(cli(service, "audit", columns=160), columns=160).splitlines()
    assert "the newest" not in "".join(wide) and len(wide) == 6  # all 5 and the header, every column
    assert wide[0].split() == ["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "TEAM", "REQUEST"]
    assert wide[1].split()[3:] == ["inst_0123456789abcdef0123", "ok", "team_0123456789abcdef", f"{5:032x}"]
    bad = cli(service, "audit", "--from", "last tuesday")
    assert bad.exit_code == 2 and "neither an ISO 8601 time nor a duration" in bad.stderr
