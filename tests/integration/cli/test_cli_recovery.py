"""Spot recovery from the command line, against the real service and emulator: `instances create` sends the
recovery policy its flags give (and nothing without them: the server's defaults), and once Novita has
reclaimed the instance and the service has brought it back, `instances get` shows the policy and the
history of the recovery, and `events` names the reclaim notice and the reclaim."""

from __future__ import annotations

import json
import re

import pytest

from tests.fixtures.live_service import LiveService
from tests.integration.cli.test_cli import PRODUCT, TEMPLATE, cli, ok
from tests.integration.instances.test_spot_recovery import recovered

pytestmark = pytest.mark.asyncio(loop_scope="module")

CREATE = ["instances", "create", "--product", PRODUCT, "--template", TEMPLATE, "--spot", "--json", "--name"]
POLICY = ("onReclaim", "maxRecoveries", "fallbackToOnDemand", "keepReclaimed")


async def test_create_sends_the_policy_and_get_and_events_show_the_recovery(live: LiveService) -> None:
    flags = ["--on-reclaim", "recreate", "--max-recoveries", "2", "--keep-reclaimed"]
    created = json.loads(ok(await cli(live, *CREATE, "cli-spot", *flags)))
    assert {key: created["recovery"][key] for key in POLICY} == {
        "onReclaim": "recreate",
        "maxRecoveries": 2,
        "fallbackToOnDemand": False,
        "keepReclaimed": True,
    }
    defaults = json.loads(ok(await cli(live, *CREATE, "cli-spot-defaults")))
    assert {key: defaults["recovery"][key] for key in POLICY} == {
        "onReclaim": "migrate",
        "maxRecoveries": 3,
        "fallbackToOnDemand": False,
        "keepReclaimed": False,
    }

    instance_id = created["instanceId"]
    ready = await live.harness.until_status(instance_id, "ready")
    before = ok(await cli(live, "instances", "get", "cli-spot"))
    assert re.search(r"^recovery\s+recreate, at most 2 per 24 h, reclaimed instances kept$", before, re.M), before
    assert "recovering" not in before and "Spot recoveries" not in before

    back = await recovered(live.harness, instance_id, ready["novitaInstanceId"])
    [step] = back["recovery"]["history"]
    shown = ok(await cli(live, "instances", "get", "cli-spot", env={"COLUMNS": "120"}))
    assert re.search(r"^recovering\s+no \(last: attempt 1, recreate, recovered\)$", shown, re.M), shown
    assert re.search(rf"^kept\s+{ready['novitaInstanceId']}$", shown, re.M), shown
    history = shown.split("\nSpot recoveries\n", 1)[1].splitlines()
    assert re.split(r"\s{2,}", history[0]) == ["ATTEMPT", "AT", "PATH", "UPSTREAM ID", "OUTCOME", "MESSAGE"]
    assert re.split(r"\s{2,}", history[1].strip()) == [
        "1",
        step["at"][:19] + "Z",
        "recreate",
        back["novitaInstanceId"],
        "recovered",
        step["message"],
    ]

    events = ok(await cli(live, "events", "cli-spot")).splitlines()
    notice = [line for line in events if "  reclaim notice  " in line]
    assert len(notice) == 1 and re.search(r"  ready  reclaim notice  Novita will reclaim", notice[0])
    reclaimed = [line for line in events if "  reclaimed  " in line]
    assert len(reclaimed) == 1 and "  ready -> recovering  reclaimed  recovery 1 (recreate)  " in reclaimed[0]
    assert events[-1].endswith(f"health_checking -> ready  recovery 1 (recreate)  {back['statusMessage']}")
