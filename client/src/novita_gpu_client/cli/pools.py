"""`novita-gpu pools ...`: warm pools. Make one (admin keys), list them, see one (members by state, claims,
hit rates, what its idle members cost), change its targets, drain and delete it, and claim an instance from
it. `instances create --pool NAME` claims too, and `instances stop --return-to-pool` gives a claimed
instance back.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu_client import DEFAULT_URL, Client, Json
from novita_gpu_client.cli.output import Col, Layout, StatusLine, price, show, text, when
from novita_gpu_client.cli.recovery import instance_detail
from novita_gpu_client.cli.session import ApiKey, AsJson, Url, client_for, fail
from novita_gpu_client.cli.volumes import volume_mount
from novita_gpu_client.pools import CLAIM_SOURCES

app = typer.Typer(
    help="Warm pools: idle instances kept ready or stopped, so a claim gets a GPU in seconds.", no_args_is_help=True
)

PoolName = Annotated[str, typer.Argument(metavar="POOL", help="The pool's name.")]
Members = Annotated[int | None, typer.Option(metavar="N", min=0, max=100, show_default=False)]

# What each claim source means, for a person.
SOURCE_WORDS = {
    "ready": "a ready member, handed out at once",
    "stopped": "a stopped member, starting",
    "warming": "a member still warming up",
    "cold": "none was idle, so one is created from the pool's spec",
}

# -- what the commands print ----------------------------------------------------------------------------


def percent(fraction: Any) -> str:
    return "-" if fraction is None else f"{round(fraction * 100)}%"


def usd(value: Any) -> str:
    return "-" if value is None else f"${value:,.2f}"


def members_line(view: Json) -> str:
    m = view.get("members") or {}
    return (
        f"{m.get('ready', 0)} ready, {m.get('stopped', 0)} stopped, {m.get('warming', 0)} warming, "
        f"{m.get('claimed', 0)} claimed ({m.get('total', 0)} of at most {view.get('max')})"
    )


def targets_line(view: Json) -> str:
    return f"{view.get('minReady')} ready, {view.get('minStopped')} stopped, at most {view.get('max')} members"


def idle_line(view: Json) -> str:
    minutes = view.get("idleMinutes") or 0
    if not minutes:
        return "ready members are kept ready however long no claim comes"
    line = f"ready members are stopped after {minutes} min without a claim"
    return line + " (dormant now: they stay stopped until the next claim)" if view.get("dormant") else line


def hit_line(view: Json) -> str:
    claims = view.get("claims") or {}
    day = claims.get("lastDay") or 0
    if not day:
        return "- (no claim in the last day)"
    rates = claims.get("hitRate") or {}
    shares = ", ".join(f"{source} {percent(rates.get(source, 0))}" for source in CLAIM_SOURCES)
    return f"{shares} (of the last day's {day} claim{'s' if day != 1 else ''})"


def idle_cost_line(view: Json) -> str:
    cost = view.get("idleCost") or {}
    return (
        f"{price(cost.get('usdPerHour'))}/h now: ready GPUs {price(cost.get('readyUsdPerHour'))}/h + stopped disks "
        f"{price(cost.get('stoppedUsdPerHour'))}/h; {usd(cost.get('monthUsd'))} this month"
    )


def blocked_line(blocked: Json) -> str:
    line = f"{text(blocked.get('code'))}: {text(blocked.get('message'))} (since {when(blocked.get('at'))}"
    return line + (f", until {when(blocked['until'])})" if blocked.get("until") else ")")


def spec_line(view: Json) -> str:
    gpus = view.get("gpuNum") or 1
    return f"{text(view.get('productName'))} x{gpus}, {text(view.get('billingMode'))}"


def pool_table(view: Json) -> Layout:
    table = Layout(Col("FIELD"), Col("VALUE", wrap=True))
    claims = view.get("claims") or {}
    rows: dict[str, Any] = {
        "id": view["poolId"],
        "name": view["name"],
        "status": "draining: its idle members are being deleted" if view.get("status") == "draining" else "active",
        "product": spec_line(view),
        "template": view.get("templateId"),
        "region": view.get("region") or "any",
    }
    if view.get("rootfsSize"):
        rows["disk"] = f"{view['rootfsSize']} GB"
    if view.get("volumes"):
        rows["volumes"] = ", ".join(
            f"{v.get('volume')} at {v.get('mountPoint') or '/network'}" for v in view["volumes"]
        )
    if view.get("healthCheck"):
        rows["health check"] = (view["healthCheck"] or {}).get("path")
    rows.update(
        {
            "keeps": targets_line(view),
            "members": members_line(view),
            "idle": idle_line(view),
            "auto-stop": "returns a claimed instance to the pool"
            if view.get("returnOnAutoStop")
            else "stops a claimed instance (it stays yours)",
            "claims": f"{claims.get('lastHour', 0)} in the last hour, {claims.get('lastDay', 0)} in the last day"
            + (f", last at {when(view['lastClaimAt'])}" if view.get("lastClaimAt") else ""),
            "hit rate": hit_line(view),
            "idle cost": idle_cost_line(view),
        }
    )
    if view.get("refillBlocked"):
        rows["refill blocked"] = blocked_line(view["refillBlocked"])
    prewarm = view.get("prewarm") or {}
    rows["prewarm"] = "on" if prewarm.get("enabled") else "off"
    for field, value in rows.items():
        table.add_row(field, value)
    for task in prewarm.get("tasks") or []:
        table.add_row(
            "prewarm task", f"cluster {text(task.get('clusterId'))}: {text(task.get('state'))} ({task.get('taskId')})"
        )
    table.add_row("created", when(view.get("createdAt")))
    table.add_row("updated", when(view.get("updatedAt")))
    return table


def pools_table(items: Sequence[Json]) -> Layout | str:
    """One line per pool, a line under it when it is draining, dormant or cannot refill."""
    if not items:
        return "No pools."
    table = Layout(
        Col("NAME", cut=10),
        Col("PRODUCT", cut=8, drop=1),
        Col("READY", right=True),
        Col("STOP", right=True),
        Col("WARM", right=True),
        Col("CLAIM", right=True),
        Col("MAX", right=True),
        Col("24H", right=True),
        Col("HIT", right=True),
        Col("IDLE $/H", right=True),
    )
    for p in items:
        m, claims = p.get("members") or {}, p.get("claims") or {}
        details = []
        if p.get("status") == "draining":
            details.append("draining: idle members are being deleted")
        elif p.get("dormant"):
            details.append(f"dormant: no claim for {p.get('idleMinutes')} min, ready members kept stopped")
        if p.get("refillBlocked"):
            details.append("refill blocked: " + blocked_line(p["refillBlocked"]))
        table.add_row(
            p["name"],
            spec_line(p).split(",")[0].removesuffix(" x1"),
            m.get("ready", 0),
            m.get("stopped", 0),
            m.get("warming", 0),
            m.get("claimed", 0),
            p.get("max"),
            claims.get("lastDay", 0),
            percent((claims.get("hitRate") or {}).get("ready")) if claims.get("lastDay") else "-",
            price((p.get("idleCost") or {}).get("usdPerHour")),
            details=details,
        )
    return table


def claim_detail(view: Json) -> RenderableType:
    """The claimed instance's fields, under a line saying where it came from."""
    claim = view.get("claim") or {}
    source = str(claim.get("source"))
    line = f"Claimed {view.get('name')} from pool {claim.get('pool')}: {SOURCE_WORDS.get(source, source)}."
    return Group(Text(line), Text(""), instance_detail(view))


def _drained(view: Json) -> str:
    m = view.get("members") or {}
    idle = (m.get("ready") or 0) + (m.get("stopped") or 0) + (m.get("warming") or 0)
    claimed = m.get("claimed") or 0
    line = f"pool {view['name']} ({view['poolId']}): {view['status']}: {idle} idle member{'s' if idle != 1 else ''}"
    line += " being deleted"
    if claimed:
        line += f"; {claimed} claimed instance{'s stay' if claimed != 1 else ' stays'} yours"
    return line


# -- the commands ---------------------------------------------------------------------------------------


@app.command("create")
def create_pool(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique among your pools: letters, digits, - _ (40).")],
    product: Annotated[str, typer.Option(metavar="NAME", help="GPU product: `novita-gpu products` lists them.")],
    template: Annotated[str, typer.Option(metavar="ID|NAME", help="Template id or name: `novita-gpu templates`.")],
    max_members: Annotated[
        int, typer.Option("--max", metavar="N", min=1, max=100, help="Members at most, claimed ones included.")
    ],
    min_ready: Annotated[
        int, typer.Option(metavar="N", min=0, max=100, help="Idle members kept running and ready (billed as GPUs).")
    ] = 0,
    min_stopped: Annotated[
        int, typer.Option(metavar="N", min=0, max=100, help="Idle members kept stopped (billed for their disk).")
    ] = 0,
    gpus: Annotated[int | None, typer.Option(metavar="N", help="GPUs per member, 1-8 (default 1).")] = None,
    region: Annotated[str | None, typer.Option(metavar="REGION", help="Members' region (default: any).")] = None,
    spot: Annotated[
        bool | None, typer.Option("--spot/--on-demand", help="Billing mode (default: the server's).")
    ] = None,
    disk: Annotated[int | None, typer.Option(metavar="GB", help="Root disk (default: the template's).")] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME[:/PATH]", help="A volume every member mounts (repeatable)."),
    ] = None,
    health_check_path: Annotated[
        str | None, typer.Option(metavar="PATH", help="Probed on each http port before a member is ready.")
    ] = None,
    idle_minutes: Annotated[
        int | None,
        typer.Option(metavar="MINUTES", help="Stop ready members after this long without a claim (0: never)."),
    ] = None,
    return_on_auto_stop: Annotated[
        bool, typer.Option("--return-on-auto-stop", help="A claimed instance's auto-stop returns it to the pool.")
    ] = False,
    prewarm: Annotated[
        bool, typer.Option("--prewarm", help="Ask Novita to prewarm the image in the pool's clusters.")
    ] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: make a warm pool; the service fills it in the background.

    Idle ready members cost their GPUs' price per hour; stopped ones their disk. `pools get` shows what
    the pool's idle members cost now and this month."""
    with client_for(url, api_key) as client:
        view = client.create_pool(
            name,
            product,
            template,
            max=max_members,
            gpu_num=gpus,
            region=region,
            billing_mode=None if spot is None else ("spot" if spot else "onDemand"),
            rootfs_size=disk,
            volumes=[volume_mount(item) for item in volume or []] or None,
            health_check_path=health_check_path,
            min_ready=min_ready,
            min_stopped=min_stopped,
            idle_minutes=idle_minutes,
            return_on_auto_stop=return_on_auto_stop or None,
            prewarm=prewarm or None,
        )
    show(view, as_json, pool_table)


@app.command("list")
def list_pools(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """List the team's pools: members by state, claims and what the idle ones cost.

    READY, STOP, WARM: idle members ready, stopped and on their way; CLAIM: handed out; 24H: claims in the
    last day; HIT: the share of them handed out ready; IDLE $/H: what the idle members cost per hour now
    (ready GPUs and stopped disks). --json prints one JSON array."""
    with client_for(url, api_key) as client:
        items = client.list_pools()["pools"]
    show(items, as_json, pools_table)


@app.command("get")
def get_pool(name: PoolName, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show one pool: its spec, members by state, claims, hit rates, idle cost and prewarm tasks."""
    with client_for(url, api_key) as client:
        view = client.get_pool(name)
    show(view, as_json, pool_table)


@app.command("update")
def update_pool(
    name: PoolName,
    min_ready: Members = None,
    min_stopped: Members = None,
    max_members: Annotated[
        int | None, typer.Option("--max", metavar="N", min=1, max=100, help="Members at most.", show_default=False)
    ] = None,
    idle_minutes: Annotated[
        int | None, typer.Option(metavar="MINUTES", help="Stop ready members after this long without a claim.")
    ] = None,
    return_on_auto_stop: Annotated[
        bool | None,
        typer.Option("--return-on-auto-stop/--no-return-on-auto-stop", help="Whether auto-stop returns it."),
    ] = None,
    prewarm: Annotated[bool | None, typer.Option("--prewarm/--no-prewarm", help="Prewarm the image.")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: change a pool's targets and policies (what is not given is kept; the spec is fixed)."""
    given = (min_ready, min_stopped, max_members, idle_minutes, return_on_auto_stop, prewarm)
    if all(value is None for value in given):
        raise typer.BadParameter(
            "give what to change: --min-ready, --min-stopped, --max, --idle-minutes, --[no-]return-on-auto-stop "
            "or --[no-]prewarm"
        )
    with client_for(url, api_key) as client:
        view = client.update_pool(
            name,
            min_ready=min_ready,
            min_stopped=min_stopped,
            max=max_members,
            idle_minutes=idle_minutes,
            return_on_auto_stop=return_on_auto_stop,
            prewarm=prewarm,
        )
    show(view, as_json, pool_table)


@app.command("delete")
def delete_pool(
    name: PoolName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: drain and delete a pool; asks first unless --yes.

    Its idle members are deleted (their disks are lost); claimed instances stay yours. Without a terminal
    to ask on, it refuses unless --yes."""
    if not yes and not sys.stdin.isatty():
        raise fail("refusing to delete without confirmation: stdin is not a terminal; pass --yes", 2)
    with client_for(url, api_key) as client:
        if not yes:
            view = client.get_pool(name)
            question = f"Delete pool {view['name']} and its idle members ({members_line(view)})?"
            if not typer.confirm(question, default=False, err=True):
                raise fail("not deleted", 1)
        answer = client.delete_pool(name)
    show(answer, as_json, _drained)


def claim_options(labels: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in labels or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        pairs[key] = value
    return pairs


def wait_ready(client: Client, claimed: Json, timeout: float, *, quiet: bool) -> Json:
    """The claimed instance once ready (at once when it was handed out ready), with its `claim` kept."""
    if claimed.get("status") == "ready":
        return claimed
    line = None if quiet else StatusLine()
    try:
        view = client.wait_for(claimed["instanceId"], "ready", timeout=timeout, on_change=line)
    finally:
        if line is not None:
            line.close()
    return {**view, "claim": claimed.get("claim")}


@app.command("claim")
def claim(
    pool: PoolName,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The instance's name: letters, digits, - and _.")],
    label: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="A label (repeatable).")] = None,
    webhook: Annotated[
        str | None,
        typer.Option("--webhook", "--webhook-url", metavar="URL", help="POSTed to on every status change."),
    ] = None,
    auto_stop: Annotated[
        int | None,
        typer.Option(
            "--auto-stop", "--auto-stop-minutes", metavar="MINUTES", help="Idle time before auto-stop; 0 = never."
        ),
    ] = None,
    max_runtime: Annotated[
        int | None,
        typer.Option(metavar="MINUTES", help="Ended this long after ready, busy or not (0: no limit)."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="Sent again, the same key answers the same claim.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the instance is ready.")] = False,
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="With --wait: how long at most.")] = 900,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Claim an instance from a pool: a ready member at once, else a stopped one started, else a cold create.

    The first line says which. From then on it is an ordinary instance of yours; `instances stop NAME
    --return-to-pool` gives it back. Exits 1 with POOL_EXHAUSTED when all the pool's members are claimed.
    With --wait (exit 1 if it fails or is not ready in time), --json prints the ready instance with the
    claim's `claim` field."""
    with client_for(url, api_key) as client:
        view = client.claim(
            pool,
            name,
            labels=claim_options(label) or None,
            webhook_url=webhook,
            auto_stop_minutes=auto_stop,
            max_runtime_minutes=max_runtime,
            idempotency_key=idempotency_key,
        )
        if wait:
            view = wait_ready(client, view, timeout, quiet=as_json)
    show(view, as_json, claim_detail)
