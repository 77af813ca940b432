"""`novita-gpu volumes ...` and `instances create --volume` against the real service and emulator over
loopback HTTP: a volume is created (the command waits until it is available), listed in a table that fits
80 columns, mounted by name, grown, refused deletion while mounted (naming the instance) and deleted."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from typer.testing import Result

from tests.fixtures.live_service import LiveService
from tests.integration.cli.test_cli import invoke, ok

PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
TX = "US-TX-04"  # supports network storage
CREATE = ("instances", "create", "--product", PRODUCT, "--template", TEMPLATE)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def cli(live: LiveService, *args: str, columns: int = 80, **kw: object) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args, env={"COLUMNS": str(columns)}, **kw)


async def driven(live: LiveService, *args: str) -> Result:
    """A command that waits for the service's workers (a create): the harness drives them meanwhile."""
    return await live.while_driving(lambda: invoke(live.url, *args))


def fits(shown: str, width: int = 80) -> list[str]:
    lines = shown.splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(line for line in lines if len(line) > width)
    return lines


async def test_create_waits_then_get_resize_and_list(live: LiveService) -> None:
    shown = ok(await driven(live, "volumes", "create", "cli-data", "--region", TX, "--size", "20"))
    assert re.search(r"status\s+available$", shown, re.MULTILINE) and re.search(r"size\s+20 GB$", shown, re.MULTILINE)
    assert re.search(rf"region\s+{TX} \(cluster 2\)", shown) and re.search(r"mounted by\s+-$", shown, re.MULTILINE)
    view = json.loads(ok(await cli(live, "volumes", "get", "cli-data", "--json")))
    assert view["status"] == "available" and view["storageId"]
    by_id = ok(await cli(live, "volumes", "get", view["volumeId"]))
    assert f"${view['pricePerGbMonth']:.4f}/GB-month" in by_id and view["storageId"] in by_id

    grown = json.loads(ok(await cli(live, "volumes", "resize", "cli-data", "--size", "30", "--json")))
    assert grown["sizeGb"] == 30
    shrink = await cli(live, "volumes", "resize", "cli-data", "--size", "25")
    assert shrink.exit_code == 1 and shrink.stderr.startswith("error: VOLUME_SHRINK: ")
    assert "cannot shrink" in shrink.stderr

    quick = json.loads(
        ok(
            await cli(
                live, "volumes", "create", "cli-quick", "--region", "EU-01", "--size", "10", "--no-wait", "--json"
            )
        )
    )
    assert quick["status"] == "creating"
    in_eu = json.loads(ok(await cli(live, "volumes", "list", "--region", "eu-01", "--json")))
    assert [v["name"] for v in in_eu] == ["cli-quick"]
    too_small = await cli(live, "volumes", "create", "tiny", "--region", TX, "--size", "5")
    assert too_small.exit_code == 2 and "--size" in too_small.stderr


async def test_mounted_volumes_show_in_the_list_and_block_a_delete_naming_the_instance(live: LiveService) -> None:
    long_name = "a-rather-long-volume-name-for-the-table-" + "x" * 20
    ok(await driven(live, "volumes", "create", long_name, "--region", TX, "--size", "10"))
    ok(await driven(live, "volumes", "create", "cli-scratch", "--region", TX, "--size", "10"))
    args = [*CREATE, "--name", "cli-trainer", "--volume", f"{long_name}:/data", "--volume", "cli-scratch", "--json"]
    created = json.loads(ok(await cli(live, *args)))
    assert [(v["name"], v["mountPoint"]) for v in created["volumes"]] == [
        (long_name, "/data"),
        ("cli-scratch", "/network"),
    ]
    await live.harness.until_status(created["instanceId"], "ready")
    instance = ok(await cli(live, "instances", "get", "cli-trainer"))
    assert f"volumes {long_name} at /data, cli-scratch at /network port" in " ".join(instance.split()), instance

    table = fits(ok(await cli(live, "volumes", "list", "--region", TX)))
    assert table[0].split() == ["NAME", "STATUS", "REGION", "SIZE", "$/GB-MO", "MOUNTED", "BY"]
    row = next(line for line in table if line.startswith("a-rather"))
    assert re.search(rf"…?\s+available\s+{TX}\s+10 GB\s+\$0\.0730\s+cli-trainer$", row), row
    wide = ok(await cli(live, "volumes", "list", "--region", TX, columns=200))
    assert long_name in wide
    get = ok(await cli(live, "volumes", "get", long_name))
    assert re.search(rf"mounted by\s+cli-trainer \({created['instanceId']}\) at /data", get)

    refused = await cli(live, "volumes", "delete", long_name, "--yes")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"error: VOLUME_IN_USE: volume {long_name} is mounted by cli-trainer ({created['instanceId']}) at /data; "
        "delete (terminate) that instance first (novita-gpu instances delete cli-trainer), then the volume\n"
    )
    unasked = await cli(live, "volumes", "delete", "cli-scratch", input="y\n")
    assert unasked.exit_code == 2 and "stdin is not a terminal; pass --yes" in unasked.stderr

    ok(await cli(live, "instances", "delete", "cli-trainer", "--yes"))
    await live.harness.until_status(created["instanceId"], "terminated")
    gone = ok(await driven(live, "volumes", "delete", "cli-scratch", "--yes", "--wait"))
    assert re.fullmatch(r"vol_\w+ \(cli-scratch\): deleted\n", gone), gone
    deleting = ok(await cli(live, "volumes", "delete", long_name, "-y"))
    assert deleting.endswith(": deleting: Waiting for Novita to delete the storage.\n")
    listed = ok(await cli(live, "volumes", "list", "--region", TX))
    assert "cli-scratch" not in listed
    assert re.search(r"cli-scratch\s+deleted", ok(await cli(live, "volumes", "list", "--region", TX, "--all")))


async def test_bad_mounts_and_refused_creates_say_why(live: LiveService) -> None:
    for bad in (":/data", "name:data"):
        result = await cli(live, *CREATE, "--name", "cli-bad-mount", "--volume", bad)
        assert result.exit_code == 2 and "is not NAME or NAME:/path" in result.stderr, result.stderr
    missing = await cli(live, *CREATE, "--name", "cli-no-volume", "--volume", "no-such-volume")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: VOLUME_NOT_FOUND: ")

    # CA-MTL-01 holds 2048 GB of network storage in all: Novita refuses a bigger one.
    too_big = await driven(live, "volumes", "create", "cli-too-big", "--region", "CA-MTL-01", "--size", "3000")
    assert too_big.exit_code == 1 and too_big.stdout == ""
    assert re.match(r"error: volume vol_\w+ \(cli-too-big\) is failed, not available: Novita refused", too_big.stderr)
    nowhere = await cli(live, "volumes", "create", "cli-sgp", "--region", "AS-SGP-02", "--size", "10")
    assert nowhere.exit_code == 1 and "REGION_WITHOUT_NETWORK_STORAGE" in nowhere.stderr and TX in nowhere.stderr
    assert ok(await cli(live, "volumes", "list", "--name", "nothing-here")) == "No volumes.\n"
