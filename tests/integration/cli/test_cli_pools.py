"""`novita-gpu pools ...`, `instances create --pool` and `instances stop --return-to-pool` against the real
service and emulator over loopback HTTP: a pool is made and filled (the harness ticks its keeper), listed in
a table that fits 80 columns, claimed from (the first line says where the instance came from), shown with
its hit rates and idle cost, given an instance back, refused past max as other API errors are, and drained."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from typer.testing import Result

from tests.fixtures.live_service import LiveService
from tests.integration.cli.test_cli import invoke, ok

PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
CREATE = ("pools", "create", "--product", PRODUCT, "--template", TEMPLATE)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def cli(live: LiveService, *args: str, columns: int = 80, **kw: Any) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args, env={"COLUMNS": str(columns)}, **kw)


async def pool(live: LiveService, name: str) -> dict[str, Any]:
    response = await live.harness.http.get(f"/api/pools/{name}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def until_members(live: LiveService, name: str, **counts: int) -> dict[str, Any]:
    """Tick the keeper, reconciler and prober (and move the clock) until the pool's members are as given."""

    async def there() -> bool:
        members = (await pool(live, name))["members"]
        return all(members[key] == value for key, value in counts.items())

    await live.harness.run_until(there)
    return await pool(live, name)


def fits(shown: str, width: int = 80) -> list[str]:
    lines = shown.splitlines()
    assert all(len(line) <= width for line in lines), "\n".join(line for line in lines if len(line) > width)
    return lines


def first_line(shown: str) -> str:
    """What a claim prints above the instance's fields (wrapped at the terminal's width), as one line."""
    return " ".join(shown.split("\n\n", 1)[0].split())


def field(shown: str, name: str) -> str:
    """The value of one FIELD row of a detail table (its wrapped lines joined)."""
    lines = shown.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{re.escape(name)}\s{{2,}}", line))
    value = [lines[start][len(name) :].strip()]
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        value.append(line.strip())
    return " ".join(value)


async def test_make_fill_list_claim_show_and_return(live: LiveService) -> None:
    made = ok(await cli(live, *CREATE, "cli-gpus", "--min-ready", "1", "--min-stopped", "1", "--max", "3"))
    assert field(made, "keeps") == "1 ready, 1 stopped, at most 3 members"
    assert field(made, "status") == "active" and field(made, "product") == f"{PRODUCT} x1, onDemand"
    assert field(made, "hit rate") == "- (no claim in the last day)"
    assert field(made, "idle") == "ready members are kept ready however long no claim comes"
    assert field(made, "prewarm") == "off"

    warm = await until_members(live, "cli-gpus", ready=1, stopped=1, total=2)
    per_hour = warm["idleCost"]["usdPerHour"]
    assert per_hour > 0

    table = fits(ok(await cli(live, "pools", "list")))
    assert table[0].split() == ["NAME", "PRODUCT", "READY", "STOP", "WARM", "CLAIM", "MAX", "24H", "HIT", "IDLE", "$/H"]
    row = next(line for line in table if line.startswith("cli-gpus"))
    assert re.fullmatch(rf"cli-gpus\s+{PRODUCT}\s+1\s+1\s+0\s+0\s+3\s+0\s+-\s+\${per_hour:.4f}", row), row
    narrow = fits(ok(await cli(live, "pools", "list", columns=60)), 60)
    assert re.match(r"cli-gpus\s+1\s+1\s+0\s+0\s+3", narrow[1]), narrow  # the product goes first, saying so
    assert narrow[-1] == "(not shown at 60 columns: PRODUCT: see --json)"
    listed = json.loads(ok(await cli(live, "pools", "list", "--json")))
    assert [p["name"] for p in listed] == ["cli-gpus"]

    # The idle members are ordinary records: the instance list says which pool holds them, and how.
    instances = fits(ok(await cli(live, "instances", "list")))
    assert instances[0].split()[:3] == ["NAME", "STATUS", "POOL"]
    assert sorted(re.findall(r"(\w+) \(in pool\)\s+cli-gpus\s", "\n".join(instances))) == ["ready", "stopped"]
    wide = ok(await cli(live, "instances", "list", "--wide", columns=200))
    assert sorted(re.findall(r"cli-gpus:(\w+)", wide)) == ["ready", "stopped"]

    claimed = ok(await cli(live, "pools", "claim", "cli-gpus", "cli-job", "--label", "team=ml"))
    assert first_line(claimed) == "Claimed cli-job from pool cli-gpus: a ready member, handed out at once."
    assert field(claimed, "status") == "ready" and field(claimed, "pool") == "cli-gpus (claimed)"
    assert field(claimed, "labels") == "team=ml"
    assert re.search(r"^port 8888\s+\S+", claimed, re.MULTILINE)  # ready at once: its ports answer now

    shown = ok(await cli(live, "pools", "get", "cli-gpus"))
    assert field(shown, "members") == "0 ready, 1 stopped, 0 warming, 1 claimed (2 of at most 3)"
    assert field(shown, "claims").startswith("1 in the last hour, 1 in the last day, last at ")
    assert field(shown, "hit rate") == "ready 100%, stopped 0%, warming 0%, cold 0% (of the last day's 1 claim)"
    assert re.fullmatch(
        r"\$\d\.\d{4}/h now: ready GPUs \$\d\.\d{4}/h \+ stopped disks \$\d\.\d{4}/h; \$\d+\.\d\d this month",
        field(shown, "idle cost"),
    ), field(shown, "idle cost")
    assert "refill blocked" not in shown

    # Given back before the pool refilled: it has room, so the instance becomes a stopped member again.
    back = ok(await cli(live, "instances", "stop", "cli-job", "--return-to-pool"))
    assert re.fullmatch(r"inst_\w+ \(cli-job\): stopping: Returned to pool cli-gpus as a stopped member\.\n", back), (
        back
    )
    refilled = await until_members(live, "cli-gpus", ready=1, stopped=1, claimed=0)
    assert refilled["claims"]["lastDay"] == 1


async def test_create_with_pool_claims_and_errors_print_as_api_errors(live: LiveService) -> None:
    ok(await cli(live, *CREATE, "cli-one", "--max", "1"))
    # No idle member: a cold create from the pool's spec; --pool alone names product and template.
    cold = ok(await cli(live, "instances", "create", "--name", "cli-cold", "--pool", "cli-one"))
    assert (
        first_line(cold) == "Claimed cli-cold from pool cli-one: none was idle, so one is created from the pool's spec."
    )
    assert field(cold, "status") == "creating"
    assert field(cold, "pool") == "cli-one (claimed)"

    exhausted = await cli(live, "pools", "claim", "cli-one", "cli-too-many")
    assert exhausted.exit_code == 1 and exhausted.stdout == ""
    assert re.fullmatch(r"error: POOL_EXHAUSTED: .+ \(request \S+\)\n", exhausted.stderr), exhausted.stderr
    spec_field = await cli(live, "instances", "create", "--name", "cli-x", "--pool", "cli-one", "--region", "EU-01")
    assert spec_field.exit_code == 1 and spec_field.stderr.startswith("error: POOL_SPEC_FIELD: ")
    assert "region is the pool's to set" in spec_field.stderr
    missing = await cli(live, "pools", "get", "no-such-pool")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: POOL_NOT_FOUND: ")
    bad_name = await cli(live, *CREATE, "cli.bad", "--max", "1")
    assert bad_name.exit_code == 1 and bad_name.stderr.startswith("error: VALIDATION_ERROR: ")
    assert "name" in bad_name.stderr
    too_big = await cli(live, *CREATE, "cli-big", "--max", "101")
    assert too_big.exit_code == 2 and "--max" in too_big.stderr  # refused before any request
    taken = await cli(live, *CREATE, "cli-one", "--max", "1")
    assert taken.exit_code == 1 and taken.stderr.startswith("error: NAME_TAKEN: ")
    unasked = await cli(live, "instances", "create", "--name", "cli-nothing")
    assert unasked.exit_code == 2 and "give --product and --template (or --pool" in unasked.stderr


async def test_update_then_delete_drains_idle_members_and_leaves_claimed_ones(live: LiveService) -> None:
    ok(await cli(live, *CREATE, "cli-drain", "--min-stopped", "1", "--max", "2"))
    await until_members(live, "cli-drain", stopped=1, total=1)
    claimed = json.loads(ok(await cli(live, "pools", "claim", "cli-drain", "cli-kept", "--json")))
    assert claimed["claim"] == {"pool": "cli-drain", "source": "stopped"}

    nothing = await cli(live, "pools", "update", "cli-drain")
    assert nothing.exit_code == 2 and "give what to change" in nothing.stderr
    changed = ok(await cli(live, "pools", "update", "cli-drain", "--min-ready", "1", "--idle-minutes", "30"))
    assert field(changed, "keeps") == "1 ready, 1 stopped, at most 2 members"
    assert field(changed, "idle") == "ready members are stopped after 30 min without a claim"
    await until_members(live, "cli-drain", warming=0, claimed=1, total=2)  # room for one idle member

    unasked = await cli(live, "pools", "delete", "cli-drain", input="y\n")
    assert unasked.exit_code == 2 and "stdin is not a terminal; pass --yes" in unasked.stderr
    drained = ok(await cli(live, "pools", "delete", "cli-drain", "--yes"))
    assert drained == (
        f"pool cli-drain ({claimed['pool']['poolId']}): draining: 1 idle member being deleted; "
        "1 claimed instance stays yours\n"
    )

    async def gone() -> bool:
        return (await live.harness.http.get("/api/pools/cli-drain")).status_code == 404

    await live.harness.run_until(gone)
    kept = json.loads(ok(await cli(live, "instances", "get", "cli-kept", "--json")))
    assert kept["status"] not in ("terminating", "terminated")
    assert "cli-drain" not in ok(await cli(live, "pools", "list"))
