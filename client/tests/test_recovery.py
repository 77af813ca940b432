"""Spot recovery in the client, against a stand-in service: a create carries the recovery policy (SDK and
`instances create`'s flags, each sent only when given), `instances get` shows the policy, whether a
recovery is under way and every step of the history, and `events` names the reclaim events."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from typer.testing import CliRunner, Result

from conftest import FakeService, Scenario, answer
from novita_gpu_client.cli import app
from test_command import NO_CONFIG

INSTANCE = "inst_0123456789abcdef0123"
CREATE = ["instances", "create", "--name", "spotty", "--product", "RTX 4090 24GB", "--template", "pytorch-jupyter"]
POLICY = {"onReclaim": "migrate", "maxRecoveries": 3, "fallbackToOnDemand": False, "keepReclaimed": False}


def view(status: str = "ready", **recovery: Any) -> dict[str, Any]:
    state = {"inProgress": False, "attempt": 0, "path": None, "startedAt": None, "onDemand": False}
    return {
        "instanceId": INSTANCE,
        "name": "spotty",
        "status": status,
        "productName": "RTX 4090 24GB",
        "billingMode": "spot",
        "recovery": {**POLICY, **state, "keptInstanceIds": [], "history": [], **recovery},
    }


def step(attempt: int, path: str, outcome: str, upstream_id: str | None, message: str | None) -> dict[str, Any]:
    at = f"2026-12-07T04:4{attempt}:11.123456Z"
    return {
        "attempt": attempt,
        "at": at,
        "path": path,
        "upstreamId": upstream_id,
        "outcome": outcome,
        "message": message,
    }


def cli(service: FakeService, *args: str, columns: int = 80) -> Result:
    env = {**NO_CONFIG, "NOVITA_GPU_URL": service.url, "NOVITA_GPU_API_KEY": None, "COLUMNS": str(columns)}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def fields(shown: str) -> dict[str, str]:
    """The instance's FIELD/VALUE table as a dict (a value wrapped onto more lines joined again)."""
    found: dict[str, str] = {}
    last = ""
    for line in shown.split("\n\n", 1)[0].splitlines()[1:]:
        if line.startswith(" "):
            found[last] += " " + line.strip()
        else:
            last, _, value = line.partition(" ")
            found[last] = value.strip()
    return found


def test_the_sdk_sends_the_policy_as_given(run: Callable[[Scenario], None], service: FakeService) -> None:
    service.route("POST", "/api/instances", (201, view("creating")))

    async def scenario(client: Any) -> None:
        policy = {"onReclaim": "recreate", "maxRecoveries": 0}
        await answer(client.create("spotty", "RTX 4090 24GB", "pytorch-jupyter", billing_mode="spot", recovery=policy))

    run(scenario)
    [sent] = service.sent("POST", "/api/instances")
    assert sent.body["billingMode"] == "spot"
    assert sent.body["recovery"] == {"onReclaim": "recreate", "maxRecoveries": 0}


def test_create_sends_the_recovery_flags_given_and_nothing_without_them(service: FakeService) -> None:
    service.route("POST", "/api/instances", (201, view("creating")))
    cli(service, *CREATE, "--spot", "--on-reclaim", "recreate", "--max-recoveries", "0", "--json")
    cli(service, *CREATE, "--fallback-to-on-demand", "--keep-reclaimed", "--json")
    cli(service, *CREATE, "--spot", "--json")
    with_flags, switches_only, without = (r.body for r in service.sent("POST", "/api/instances"))
    assert with_flags["recovery"] == {"onReclaim": "recreate", "maxRecoveries": 0}  # 0 is a value: sent
    assert switches_only["recovery"] == {"fallbackToOnDemand": True, "keepReclaimed": True}
    assert "recovery" not in without  # the server's defaults (SPOT_*) apply

    refused = CliRunner().invoke(
        app, [*CREATE, "--on-reclaim", "retry"], env={**NO_CONFIG, "NOVITA_GPU_URL": service.url}
    )
    assert refused.exit_code == 2 and "'retry' is not one of 'migrate', 'recreate', 'stop'" in refused.stderr


HISTORY = [
    step(1, "migrate", "recovered", "0c0fd195c17af08a", "Ready again."),
    step(2, "migrate", "failed", "0c0fd195c17af08a", "Novita refused the migrate: insufficient resource to migrate."),
    step(2, "recreate", "in_progress", None, None),
]


def test_get_shows_the_policy_the_recovery_under_way_and_its_history(service: FakeService) -> None:
    recovering = view(
        "recovering",
        onReclaim="migrate",
        maxRecoveries=5,
        fallbackToOnDemand=True,
        inProgress=True,
        attempt=2,
        path="recreate",
        startedAt="2026-12-07T04:42:11.123456Z",
        onDemand=True,
        history=HISTORY,
    )
    service.route("GET", f"/api/instances/{INSTANCE}", (200, recovering))
    shown = cli(service, "instances", "get", INSTANCE).stdout
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), shown
    detail = fields(shown)
    assert detail["recovery"] == "migrate (else recreate), at most 5 per 24 h, on-demand when spot is sold out"
    assert detail["recovering"] == "yes: attempt 2 (recreate) since 2026-12-07T04:42:11Z, its replacement on-demand"
    history = lines[lines.index("Spot recoveries") + 1 :]
    assert re.split(r"\s{2,}", history[0]) == ["ATTEMPT", "AT", "PATH", "OUTCOME", "MESSAGE"]  # 80 columns
    assert re.split(r"\s{2,}", history[1].strip()) == [
        "1",
        "2026-12-07T04:41:11Z",
        "migrate",
        "recovered",
        "Ready again.",
    ]
    assert re.split(r"\s{2,}", history[2].strip()) == [
        "2",
        "2026-12-07T04:42:11Z",
        "migrate",
        "failed",
        "Novita refused the",
    ]
    assert [line.strip() for line in history[3:5]] == ["migrate: insufficient", "resource to migrate."]  # wrapped
    assert re.split(r"\s{2,}", history[5].strip()) == ["2", "2026-12-07T04:42:11Z", "recreate", "in_progress", "-"]
    assert history[-1] == "(not shown at 80 columns: UPSTREAM ID: see --json)"

    wide = cli(service, "instances", "get", INSTANCE, columns=160).stdout.splitlines()
    rows = wide[wide.index("Spot recoveries") + 1 :]
    assert re.split(r"\s{2,}", rows[0]) == ["ATTEMPT", "AT", "PATH", "UPSTREAM ID", "OUTCOME", "MESSAGE"]
    assert re.split(r"\s{2,}", rows[1].strip())[2:4] == ["migrate", "0c0fd195c17af08a"]
    assert re.split(r"\s{2,}", rows[3].strip())[2:4] == ["recreate", "-"]
    assert json.loads(cli(service, "instances", "get", INSTANCE, "--json").stdout) == recovering


def test_get_says_no_recovery_runs_and_an_on_demand_instance_shows_none(service: FakeService) -> None:
    recovered = view(attempt=1, path="migrate", keepReclaimed=True, keptInstanceIds=["0c0f"], history=HISTORY[:1])
    service.route("GET", f"/api/instances/{INSTANCE}", (200, recovered))
    shown = cli(service, "instances", "get", INSTANCE).stdout
    detail = fields(shown)
    assert detail["recovery"] == "migrate (else recreate), at most 3 per 24 h, reclaimed instances kept"
    assert detail["recovering"] == "no (last: attempt 1, migrate, recovered)"
    assert detail["kept"] == "0c0f" and "Spot recoveries" in shown.splitlines()

    stays_stopped = view(onReclaim="stop")
    service.route("GET", f"/api/instances/{INSTANCE}", (200, stays_stopped))
    shown = cli(service, "instances", "get", INSTANCE).stdout
    assert fields(shown)["recovery"] == "stop: a reclaimed instance stays stopped"
    assert "recovering" not in fields(shown) and "Spot recoveries" not in shown

    on_demand = {**view(), "billingMode": "onDemand"}
    service.route("GET", f"/api/instances/{INSTANCE}", (200, on_demand))
    shown = cli(service, "instances", "get", INSTANCE).stdout
    assert "recover" not in shown.lower()


def sse(event_id: int, name: str, previous: str, status: str, message: str, **more: Any) -> list[str]:
    data = {"statusReason": "SPOT_RECLAIMED", "statusMessage": message}
    body = {
        "event": name,
        "instanceId": INSTANCE,
        "name": "spotty",
        "status": status,
        "previousStatus": previous,
        "timestamp": f"2026-12-07T04:40:{event_id:02d}.5Z",
        "data": data,
        **more,
    }
    return [f"id: {event_id}", f"event: {name}", f"data: {json.dumps(body)}", ""]


def test_events_name_the_reclaim_notice_the_reclaim_and_the_recovery(service: FakeService) -> None:
    during = {"recovered": True, "attempt": 1, "recoveryPath": "migrate"}
    stream = [
        *sse(1, "instance.reclaim_notice", "ready", "ready", "Novita will reclaim this spot instance at 04:41."),
        *sse(2, "instance.reclaimed", "ready", "recovering", "Novita reclaimed this spot instance.", **during),
        *sse(3, "instance.recovering", "recovering", "recovering", "Migrating it.", **during),
    ]
    service.route("GET", "/api/events/stream", (200, stream))
    assert cli(service, "events").stdout.splitlines() == [
        "2026-12-07T04:40:01Z  spotty  ready  reclaim notice  [SPOT_RECLAIMED]  "
        "Novita will reclaim this spot instance at 04:41.",
        "2026-12-07T04:40:02Z  spotty  ready -> recovering  reclaimed  recovery 1 (migrate)  [SPOT_RECLAIMED]  "
        "Novita reclaimed this spot instance.",
        "2026-12-07T04:40:03Z  spotty  recovering  recovery 1 (migrate)  [SPOT_RECLAIMED]  Migrating it.",
    ]
