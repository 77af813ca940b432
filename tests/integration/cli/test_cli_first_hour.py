"""Issue 22, "the first hour, without a stumble": what a new user of `novita-gpu` reads, command by
command, against the real service and emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from novita_gpu.kit.serving import free_port
from novita_gpu_client import InstanceFailed, InstanceStopped
from tests.fixtures.live_service import LiveService, live_service
from tests.integration.cli.test_cli import invoke, ok

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def cli(live: LiveService, *args: str, **env: str) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args, env=env or None)


async def shown(live: LiveService, *args: str) -> str:
    return ok(await cli(live, *args))


async def ready(live: LiveService, name: str, **body: Any) -> str:
    instance_id = str((await live.harness.create(name=name, **body))["instanceId"])
    await live.harness.until_status(instance_id, "ready")
    return instance_id


def no_none(output: str) -> str:
    assert not re.search(r"\bNone\b", output), output
    return output


async def test_get_shows_connection_details_only_while_the_instance_is_up(live: LiveService) -> None:
    h = live.harness
    instance_id = await ready(live, "hour-ports")
    up = await shown(live, "instances", "get", "hour-ports")
    assert re.search(r"^port 22\s+127\.0\.0\.1:\d+ \(tcp\)$", up, re.MULTILINE) and re.search(r"^ssh\s+ssh ", up, re.M)

    await h.http.post(f"/api/instances/{instance_id}/stop")
    await h.until_status(instance_id, "stopped")
    assert (await h.instance(instance_id))["connectionDetails"]  # the API keeps the last ones it saw...
    stopped = no_none(await shown(live, "instances", "get", "hour-ports"))
    assert re.search(r"^ports\s+\(none while stopped\)$", stopped, re.MULTILINE), stopped  # ...the CLI does not
    assert not re.search(r"^(port \d+|ssh|jupyter)\s", stopped, re.MULTILINE), stopped

    await h.http.delete(f"/api/instances/{instance_id}")
    await h.until_status(instance_id, "terminated")
    gone = await shown(live, "instances", "get", instance_id)
    assert re.search(r"^ports\s+\(none: terminated\)$", gone, re.MULTILINE) and "ssh root@" not in gone


async def test_autostop_stats_prints_the_figures_of_each_signal(live: LiveService) -> None:
    h = live.harness
    instance_id = await ready(live, "hour-idle", autoStopMinutes=1)
    h.clock.advance(120)
    assert instance_id in await shown(live, "autostop", "trigger", "--no-dry-run")
    await h.until_status(instance_id, "stopped")
    h.clock.advance(3600)  # an hour not billed: what the stop saved

    stats = json.loads(await shown(live, "autostop", "stats", "--json"))
    figures = stats["bySignal"]["lastUsed"]
    assert figures["stopped"] >= 1 and figures["dollarsSaved"] > 0
    table = no_none(await shown(live, "autostop", "stats"))
    row = re.search(r"^by lastUsed\s+(.*)$", table, re.MULTILINE)
    assert row is not None, table
    assert row[1] == (
        f"{figures['stopped']} stopped, {figures['gpuHoursSaved']:.2f} GPU-h, ${figures['dollarsSaved']:,.2f} saved"
    )
    for signal in ("gpu", "both", "maxRuntime"):
        assert re.search(rf"^by {signal}\s+\d+ stopped, ", table, re.MULTILINE), table
    assert re.search(r"^watched\s+\d+", table, re.MULTILINE)


async def test_nothing_prints_none_for_a_missing_value(live: LiveService) -> None:
    h = live.harness
    created = await h.create(name="hour-fresh", labels={"team": "ml"})  # creating: most fields still null
    for args in (
        ["instances", "get", "hour-fresh"],
        ["instances", "list", "--wide", "--all"],
        ["instances", "events", "hour-fresh"],
        ["instances", "stop", "hour-fresh"],
        ["autostop", "stats"],
        ["autostop", "trigger"],
        ["costs"],
        ["costs", "--group-by", "label:team"],
        ["products"],
        ["templates"],
        ["health"],
    ):
        no_none(await shown(live, *args))
    assert created["instanceId"]


async def test_costs_stars_the_rows_still_billing_and_only_then_explains_the_star(tmp_path: Path) -> None:
    async with live_service(tmp_path) as own:
        h = own.harness
        billing, stopped = await ready(own, "cost-billing"), await ready(own, "cost-stopped")
        await h.http.post(f"/api/instances/{stopped}/stop")
        await h.until_status(stopped, "stopped")
        h.clock.advance(1800)

        report = json.loads(await shown(own, "costs", "--json"))
        assert {i["instanceId"]: i["billingNow"] for i in report["instances"]} == {billing: True, stopped: False}
        table = no_none(await shown(own, "costs")).splitlines()
        assert re.search(r"\$\d+\.\d\d \*$", next(line for line in table if billing in line))
        assert re.search(r"\$\d+\.\d\d$", next(line for line in table if stopped in line))
        assert table[-1] == "* still billing: its cost grows until it stops"

        await h.http.post(f"/api/instances/{billing}/stop")
        await h.until_status(billing, "stopped")
        settled = await shown(own, "costs")
        assert "*" not in settled and "still billing" not in settled, settled


async def test_instance_events_say_why_a_webhook_is_still_pending(live: LiveService) -> None:
    h = live.harness
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: every attempt fails, and says why
    instance_id = await ready(live, "hour-hooks", webhookUrl=hook)
    for _ in range(4):
        await h.services.dispatcher.tick()
        h.clock.advance(120)  # past each retry's backoff
    history = json.loads(await shown(live, "instances", "events", "hour-hooks", "--json"))["events"]
    failing = history[0]["webhooks"][0]
    assert failing["status"] == "pending" and failing["attempts"] >= 2 and failing["lastError"], failing

    lines = (await shown(live, "instances", "events", "hour-hooks")).splitlines()
    assert all(len(line) <= 80 for line in lines)
    first = next(i for i, line in enumerate(lines) if re.match(r"\S+Z\s+creating\s", line))
    assert f"pending x{failing['attempts']}" in lines[first]
    detail = f"webhook pending x{failing['attempts']}: {failing['lastError']} ({hook})"
    assert lines[first + 1].startswith(" " * 22), lines
    assert detail.startswith(lines[first + 1].strip().rstrip("…")) and failing["lastError"][:20] in lines[first + 1]
    assert instance_id


async def test_a_wait_that_cannot_end_well_ends_at_once(live: LiveService) -> None:
    """A stopped instance never becomes ready by itself, and a terminated one never changes: `wait` says so
    and exits 1 at once instead of sitting out its timeout (while_clock_moves fails after 10 s)."""
    h = live.harness
    instance_id = await ready(live, "hour-stopped")
    await h.http.post(f"/api/instances/{instance_id}/stop")
    await h.until_status(instance_id, "stopped")

    for extra in ([], ["--json"]):
        waited = await live.while_clock_moves(
            lambda extra=extra: invoke(live.url, "instances", "wait", "hour-stopped", "--timeout", "600", *extra)
        )
        assert waited.exit_code == 1 and waited.stdout == ""
        assert waited.stderr.splitlines()[-1] == (
            f"error: instance {instance_id} (hour-stopped) is stopped (USER), not ready, and will not be until it "
            "is started (novita-gpu instances start hour-stopped)"
        )
    assert ok(await cli(live, "instances", "wait", "hour-stopped", "--for", "stopped,ready", "--json"))

    with live.client() as client:
        with pytest.raises(InstanceFailed) as stuck:
            await live.while_clock_moves(lambda: client.wait_for(instance_id, "running", timeout=600))
        assert isinstance(stuck.value, InstanceStopped) and stuck.value.instance["status"] == "stopped"
    async with live.async_client() as async_client:
        with pytest.raises(InstanceStopped):
            await async_client.wait_for(instance_id, timeout=600)

    await h.http.delete(f"/api/instances/{instance_id}")
    await h.until_status(instance_id, "terminated")
    gone = await live.while_clock_moves(
        lambda: invoke(live.url, "instances", "wait", instance_id, "--for", "stopped", "--timeout", "600")
    )
    assert gone.exit_code == 1
    assert gone.stderr.splitlines()[-1] == (
        f"error: instance {instance_id} (hour-stopped) is terminated (USER), not stopped, and never will be: "
        "a terminated instance does not change again"
    )


async def test_a_name_means_the_live_instance_else_the_last_terminated_one_everywhere(live: LiveService) -> None:
    h = live.harness
    old = await ready(live, "hour-reuse")
    assert ok(await cli(live, "instances", "delete", "hour-reuse", "--yes")).startswith(f"{old} (hour-reuse): ")
    await h.until_status(old, "terminated")

    # Reading commands show the terminated one: its history is what there is under that name.
    assert re.search(rf"^id\s+{old}$", await shown(live, "instances", "get", "hour-reuse"), re.MULTILINE)
    assert re.search(r"\sterminated\s+USER", await shown(live, "instances", "events", "hour-reuse"))
    # A delete finds it too, and answers as it does for its id: done already.
    again = await shown(live, "instances", "delete", "hour-reuse", "--yes")
    assert again == f"{old} (hour-reuse): terminated: Instance is already terminated.\n"
    assert again == await shown(live, "instances", "delete", old, "--yes")
    # Other actions say what the name refers to, not "not found".
    for action in ("start", "stop", "touch"):
        refused = await cli(live, "instances", action, "hour-reuse")
        assert refused.exit_code == 1 and refused.stdout == ""
        assert refused.stderr == (
            f"error: hour-reuse is terminated ({old}): no live instance has this name, "
            f"so there is nothing to {action}\n"
        ), refused.stderr
    by_option = await cli(live, "instances", "stop", "--name", "hour-reuse")
    assert by_option.exit_code == 1 and "hour-reuse is terminated" in by_option.stderr
    ssh = await cli(live, "instances", "ssh", "hour-reuse", "--print")
    assert ssh.exit_code == 1
    assert ssh.stderr == f"error: hour-reuse ({old}) is terminated: it has no ssh port, and will not run again\n"
    nobody = await cli(live, "instances", "stop", "hour-nobody")
    assert nobody.exit_code == 1 and nobody.stderr.startswith("error: INSTANCE_NOT_FOUND: No instance 'hour-nobody'")

    # Once the name is taken again, every command means the new, live instance.
    new = await ready(live, "hour-reuse")
    assert re.search(rf"^id\s+{new}$", await shown(live, "instances", "get", "hour-reuse"), re.MULTILINE)
    assert (await shown(live, "instances", "stop", "hour-reuse")).startswith(f"{new} (hour-reuse): stopping")


async def test_a_wait_on_a_terminal_shows_the_time_waited_every_second(live: LiveService) -> None:
    """On a terminal the status line is rewritten in place (`\\r`) at least once a second while the status
    stays the same; elsewhere each change is a line of its own (test_cli.py checks that)."""
    h = live.harness
    for offer in (await h.http.get("/api/products", params={"productName": "L40S 48GB"})).json()["products"][0][
        "offers"
    ]:
        h.capacity(offer["clusterId"], offer["productId"], 0)  # it stays `creating`: no capacity anywhere
    instance_id = (await h.create(name="hour-ticking", productName="L40S 48GB"))["instanceId"]

    waited = await live.while_clock_moves(
        lambda: invoke(live.url, "instances", "wait", instance_id, "--timeout", "2.5", env={"TTY_COMPATIBLE": "1"})
    )
    assert waited.exit_code == 1
    drawn = [part for part in waited.stderr.split("\r") if part.strip()]
    seconds = [int(m[1]) for part in drawn if (m := re.match(r"\s*(\d+) s  creating", part))]
    assert {0, 1, 2} <= set(seconds), drawn  # the same status, redrawn as the seconds pass
    assert seconds == sorted(seconds)
    assert waited.stderr.splitlines()[-1].startswith(f"error: instance {instance_id} (hour-ticking) is still creating")
