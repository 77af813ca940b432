"""`novita-gpu me`, `teams ...` and `teams keys ...` against the real service over loopback HTTP, with an owner
key in ADMIN_API_KEYS: a key made by the command works at once (its secret, printed once, answers `me`),
its role decides what it may do, a rotated key's old secret works through its grace, and a revoked key
is refused."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from typer.testing import Result

from tests.fixtures.live_service import LiveService, live_service
from tests.integration.cli.test_cli import invoke, ok

OWNER_KEY = "owner-key-for-the-cli-0123456789"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module", name="served")
async def owned_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveService]:
    tmp: Path = tmp_path_factory.mktemp("cli-teams")
    async with live_service(tmp, admin_api_keys=OWNER_KEY) as service:
        yield service


async def cli(live: LiveService, key: str, *args: str) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args, api_key=key)


def fits(shown: str) -> str:
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    return shown


def printed_secret(shown: str) -> str:
    """The secret of `teams keys create|rotate`'s text: alone on its line, indented."""
    (secret,) = re.findall(r"^    (ngk_\S+)$", shown, re.MULTILINE)
    assert shown.count(secret) == 1
    return secret


async def test_a_key_made_by_the_command_works_for_me_at_once_and_its_role_holds(served: LiveService) -> None:
    made = json.loads(ok(await cli(served, OWNER_KEY, "teams", "create", "ml", "--json")))
    assert made["name"] == "ml" and made["quotas"]["maxGpus"] is None
    admin = json.loads(
        ok(
            await cli(
                served, OWNER_KEY, "teams", "keys", "create", "alice", "--team", "ml", "--role", "admin", "--json"
            )
        )
    )
    assert admin["secret"].startswith("ngk_") and admin["teamName"] == "ml"

    me = fits(ok(await cli(served, admin["secret"], "me")))
    assert re.search(rf"^team\s+ml \({made['id']}\)$", me, re.MULTILINE), me
    assert re.search(rf"^key\s+alice \({admin['id']}\)$", me, re.MULTILINE), me
    assert re.search(r"^role\s+admin: ", me, re.MULTILINE), me

    # The admin sets its own team's quotas (the team named by nothing: the key's own).
    team = fits(ok(await cli(served, admin["secret"], "teams", "update", "--max-gpus", "2", "--monthly-budget", "50")))
    assert re.search(r"^gpus\s+0 of 2 \(2 left\)$", team, re.MULTILINE), team
    assert re.search(r"^this month\s+\$0\.00 of \$50\.00", team, re.MULTILINE), team
    cleared = json.loads(
        ok(await cli(served, admin["secret"], "teams", "update", "ml", "--max-gpus", "none", "--json"))
    )
    assert cleared["quotas"] == {"maxGpus": None, "maxUsdPerHour": None, "monthlyBudgetUsd": 50}

    # The text form: the secret alone on its line, once, and it works at once.
    shown = fits(ok(await cli(served, admin["secret"], "teams", "keys", "create", "grafana", "--role", "viewer")))
    viewer = printed_secret(shown)
    assert json.loads(ok(await cli(served, viewer, "me", "--json")))["role"] == "viewer"
    refused = await cli(served, viewer, "teams", "keys", "list")
    assert refused.exit_code == 1 and len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith("error: FORBIDDEN: This key's role (viewer) may not ")
    too_high = await cli(served, admin["secret"], "teams", "keys", "create", "boss", "--role", "owner")
    assert too_high.exit_code == 1 and too_high.stderr.startswith("error: FORBIDDEN: ")

    listed = fits(ok(await cli(served, admin["secret"], "teams", "keys", "list")))
    assert re.search(r"grafana\s+ml\s+viewer\s+ngk_\S+\s+.+\s+active$", listed, re.MULTILINE), listed
    assert "alice" in listed and viewer not in listed and admin["secret"] not in listed

    # Rotated by name: the old secret keeps working through the grace, the new one at once.
    rotated = fits(ok(await cli(served, admin["secret"], "teams", "keys", "rotate", "grafana")))
    renewed = printed_secret(rotated)
    assert "The old secret keeps working until" in rotated
    for secret in (viewer, renewed):
        assert json.loads(ok(await cli(served, secret, "me", "--json")))["keyName"] == "grafana"

    # Revoked: both secrets refused.
    gone = ok(await cli(served, admin["secret"], "teams", "keys", "revoke", "grafana", "--yes"))
    assert re.fullmatch(r"ak_[0-9a-f]{20} \(grafana\): revoked at \S+Z\n", gone), gone
    for secret in (viewer, renewed):
        out = await cli(served, secret, "me")
        assert out.exit_code == 1 and out.stderr.startswith("error: UNAUTHORIZED: ")
    assert "revoked" in ok(await cli(served, admin["secret"], "teams", "keys", "list", "--all"))

    # The owner sees every team; the admin only its own.
    owner_teams = {t["name"] for t in json.loads(ok(await cli(served, OWNER_KEY, "teams", "list", "--json")))}
    assert "ml" in owner_teams and len(owner_teams) > 1
    assert [t["name"] for t in json.loads(ok(await cli(served, admin["secret"], "teams", "list", "--json")))] == ["ml"]
    hidden = await cli(served, admin["secret"], "teams", "get", owner_teams.difference({"ml"}).pop())
    assert hidden.exit_code == 1 and hidden.stderr.startswith("error: TEAM_NOT_FOUND: ")
