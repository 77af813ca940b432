"""`novita-gpu budget`: show, set, clear and the budget's events, against the real service over loopback
HTTP (one service of its own: a budget covers every instance of the key)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from typer.testing import Result

from novita_gpu.kit.serving import free_port
from tests.fixtures.live_service import LiveService
from tests.integration.cli.test_cli import invoke, ok

pytestmark = pytest.mark.asyncio(loop_scope="module")
HOUR = 3600.0


async def cli(live: LiveService, *args: str) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args)


async def shown(live: LiveService, *args: str) -> str:
    output = ok(await cli(live, *args))
    assert not re.search(r"\bNone\b", output) and all(len(line) <= 80 for line in output.splitlines()), output
    return output


async def test_show_set_keep_clear_and_the_events_of_a_budget(live: LiveService) -> None:
    h = live.harness
    none = await shown(live, "budget")
    assert none.startswith("No budget for key default.\n") and "Set one: novita-gpu budget set --limit USD" in none
    assert json.loads(await shown(live, "budget", "--json"))["monthlyLimitUsd"] is None

    hook = f"http://127.0.0.1:{free_port()}/budget"  # nobody listens: its deliveries fail, saying why
    set_ = await shown(live, "budget", "set", "--limit", "1", "--on-exceeded", "stopAll", "--webhook", hook)
    assert set_.startswith("Budget: $1.00 a month for key default\n")
    assert re.search(
        r"^\d{4}-\d\d: \$0\.00 spent, \$1\.00 left\nProjected: \$0\.00 by the month's end, at ", set_, re.M
    )
    assert "When exceeded: stopAll (creates refused and the key's instances stopped)" in set_
    assert f"Webhook: {hook}" in set_
    raised = json.loads(await shown(live, "budget", "set", "--limit", "2.5", "--json"))
    # Only what is given changes: the action and the webhook stay as they were.
    assert (raised["monthlyLimitUsd"], raised["onExceeded"], raised["webhookUrl"]) == (2.5, "stopAll", hook)
    await shown(live, "budget", "set", "--limit", "1")
    # The group's own options count for its subcommands (the environment names a dead service here).
    dead = f"http://127.0.0.1:{free_port()}"
    via_group = await asyncio.to_thread(invoke, dead, "budget", "--url", live.url, "--json", "set", "--limit", "1")
    assert json.loads(ok(via_group))["monthlyLimitUsd"] == 1.0

    bad = await cli(live, "budget", "set", "--limit", "1", "--on-exceeded", "panic")
    assert bad.exit_code == 2 and "refuseCreates" in bad.stderr and "stopAll" in bad.stderr
    negative = await cli(live, "budget", "set", "--limit", "-1")
    assert negative.exit_code == 1 and negative.stderr.startswith("error: VALIDATION_ERROR: monthlyLimitUsd")

    instance_id = (await h.create(name="budget-spender"))["instanceId"]
    view = await h.until_status(instance_id, "ready")
    h.clock.advance(HOUR / view["pricePerHour"] + 60)  # a little over $1 spent
    await h.services.budgets.step()  # the crossing: an event and its delivery, written together
    await h.services.dispatcher.tick()  # one delivery attempt (refused: nobody there)
    over = await shown(live, "budget")
    assert re.search(r"EXCEEDED at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", over), over

    events = json.loads(await shown(live, "budget", "events", "--json"))["events"]
    assert [e["event"] for e in events] == ["budget.exceeded"]
    table = (await shown(live, "budget", "events")).splitlines()
    assert table[0].split()[:4] == ["AT", "MONTH", "SPENT", "LIMIT"]
    data = events[0]["payload"]["data"]
    assert re.search(rf"\d\dZ\s+{data['month']}\s+\${data['spentUsd']:,.2f}\s+\$1\.00\s+stopAll\s+1\b", table[1])
    delivery = events[0]["webhooks"][0]
    assert delivery["lastError"], delivery
    detail = f"webhook {delivery['status']} x{delivery['attempts']}: {delivery['lastError']} ({hook})"
    assert table[2].startswith(" " * 22) and detail.startswith(table[2].strip().rstrip("…")), table

    cleared = await shown(live, "budget", "clear")
    assert cleared.startswith("No budget for key default.\n")
    assert json.loads(await shown(live, "budget", "--json"))["monthlyLimitUsd"] is None


async def test_the_sdk_clears_a_budget_and_lists_its_events(live: LiveService) -> None:
    with live.client() as client:
        await asyncio.to_thread(client.set_budget, 50.0, on_exceeded="refuseCreates")
        assert (await asyncio.to_thread(client.budget))["monthlyLimitUsd"] == 50.0
        assert (await asyncio.to_thread(client.clear_budget))["monthlyLimitUsd"] is None
        assert isinstance((await asyncio.to_thread(client.budget_events))["events"], list)
    async with live.async_client() as async_client:
        await async_client.set_budget(20.0)
        assert (await async_client.clear_budget())["monthlyLimitUsd"] is None
        assert (await async_client.budget_events())["apiKey"] == "default"
