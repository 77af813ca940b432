"""Every table the CLI prints, at 80 columns (what a pipe gets) with long, realistic values: no line is
wider, and no id, number, price or timestamp is broken across lines or cut; only free text (names,
messages, labels) ends in an ellipsis, and a column left out says so."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import Result

from novita_gpu_client.cli.output import when
from tests.fixtures.live_service import LiveService
from tests.integration.cli.test_cli import invoke, ok

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG_NAME = "a-very-long-instance-name-for-a-narrow-terminal-" + "x" * 14
LABELS = {"team": "machine-learning-research", "project": "a-long-project-label-value"}


async def run(live: LiveService, *args: str, columns: int = 80) -> str:
    result: Result = await asyncio.to_thread(invoke, live.url, *args, env={"COLUMNS": str(columns)})
    return ok(result)


def fits(shown: str, width: int = 80) -> list[str]:
    lines = shown.splitlines()
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, "\n".join(too_wide)
    return lines


def row_of(lines: list[str], value: str) -> str:
    """The one line that holds `value` whole."""
    found = [line for line in lines if value in line]
    assert len(found) == 1, (value, lines)
    return found[0]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fleet(live: LiveService) -> dict[str, Any]:
    """A ready 2-GPU instance with a long name, labels and a short auto-stop; a stopped one; a terminated one."""
    h = live.harness
    big = (await h.create(name=LONG_NAME, gpuNum=2, labels=LABELS, autoStopMinutes=1))["instanceId"]
    stopped = (await h.create(name="tables-stopped", labels=LABELS))["instanceId"]
    gone = (await h.create(name="tables-gone", labels=LABELS))["instanceId"]
    await h.until_status(big, "ready")
    await h.until_status(stopped, "ready")
    await h.http.post(f"/api/instances/{stopped}/stop")
    await h.until_status(stopped, "stopped")
    await h.http.delete(f"/api/instances/{gone}")
    await h.until_status(gone, "terminated")
    h.clock.advance(120)  # two idle minutes: the big one is due for auto-stop
    return {"big": big, "stopped": stopped, "gone": gone}


async def test_instances_list_and_wide_fit_and_keep_ids_and_prices_whole(live: LiveService, fleet: Any) -> None:
    views = json.loads(
        await run(live, "instances", "list", "--all", "--label", "team=machine-learning-research", "--json")
    )
    assert {v["instanceId"] for v in views} == set(fleet.values())

    lines = fits(await run(live, "instances", "list", "--all", "--label", "team=machine-learning-research"))
    assert len(lines) == 1 + len(views)  # a header and one line per instance
    for view in views:
        row = row_of(lines, f"${view['pricePerHour']:.4f}" if view["name"] == LONG_NAME else view["name"])
        assert f"${view['pricePerHour']:.4f}" in row

    wide = fits(await run(live, "instances", "list", "--all", "--wide", "--label", "team=machine-learning-research"))
    assert wide[0].split()[:3] == ["ID", "NAME", "STATUS"]
    for view in views:
        row = row_of(wide, view["instanceId"])
        assert f"${view['pricePerHour']:.4f}" in row and view["status"] in row
    assert re.search(r"a-very-long\S*…", row_of(wide, fleet["big"]))  # free text: cut, marked
    note = wide[-1]
    assert note.startswith("(not shown at 80 columns: ") and "LABELS" in note and "--json" in note, note

    roomy = fits(
        await run(
            live, "instances", "list", "--all", "--wide", "--label", "team=machine-learning-research", columns=250
        ),
        250,
    )
    assert roomy[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "REASON",
        "PRODUCT",
        "REGION",
        "$/H",
        "AGE",
        "AUTO-STOP",
        "LABELS",
    ]
    big = row_of(roomy, fleet["big"])
    assert LONG_NAME in big and "team=machine-learning-research" in big and "not shown" not in "".join(roomy)


async def test_events_get_costs_and_autostop_tables_fit(live: LiveService, fleet: Any) -> None:
    history = json.loads(await run(live, "instances", "events", fleet["stopped"], "--json"))["events"]
    lines = fits(await run(live, "instances", "events", fleet["stopped"]))
    assert len(lines) == 1 + len(history)  # one line per event: nothing wrapped
    for event in history:
        assert any(re.match(rf"{re.escape(when(event['at']))}\s+{event['to']}\b", line) for line in lines), event

    for ref in (fleet["big"], fleet["stopped"], fleet["gone"]):
        view = json.loads(await run(live, "instances", "get", ref, "--json"))
        shown = fits(await run(live, "instances", "get", ref))
        assert re.search(rf"id\s+{view['instanceId']}$", "\n".join(shown), re.MULTILINE)
        assert f"${view['pricePerHour']:.4f}" in "\n".join(shown)

    report = json.loads(await run(live, "costs", "--group-by", "label:team", "--json"))
    costs = fits(await run(live, "costs", "--group-by", "label:team"))
    for line in report["instances"]:
        row = row_of(costs, line["instanceId"])
        assert f"${line['costUsd']:,.2f}" in row and f"${line['pricePerHour']:.4f}" in row

    stats = fits(await run(live, "autostop", "stats"))
    assert re.search(r"watched\s+\d+", "\n".join(stats))
    dry = json.loads(await run(live, "autostop", "trigger", "--json"))
    assert fleet["big"] in [c["instanceId"] for c in dry["wouldStop"]]
    trigger = fits(await run(live, "autostop", "trigger"))
    for candidate in dry["wouldStop"]:
        assert when(candidate["stopsAt"]) in row_of(trigger, candidate["instanceId"])

    products = json.loads(await run(live, "products", "--json"))["products"]
    shown = fits(await run(live, "products"))
    for product in products:
        price = f"${product['cheapestPricePerHour']:.4f}"
        assert any(price in line and line.startswith(product["productName"][:8]) for line in shown), product
    fits(await run(live, "templates"))
    fits(await run(live, "health"))
