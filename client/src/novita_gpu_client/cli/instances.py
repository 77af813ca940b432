"""`novita-gpu instances ...`: create, list, inspect, start, stop, delete, wait for, touch, ssh into and
open instances. Every command that acts on one instance takes its id or its name (refs.py)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import webbrowser
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from novita_gpu_client import DEFAULT_URL, Client, Json
from novita_gpu_client.calls import Action
from novita_gpu_client.cli import refs
from novita_gpu_client.cli.output import (
    Col,
    Layout,
    StatusLine,
    answer_line,
    deliveries,
    delivery_details,
    instances_table,
    show,
    text,
    when,
)
from novita_gpu_client.cli.pools import claim_detail
from novita_gpu_client.cli.recovery import instance_detail
from novita_gpu_client.cli.session import (
    ApiKey,
    AsJson,
    ByName,
    InstanceRef,
    OptionalRef,
    Url,
    client_for,
    fail,
)
from novita_gpu_client.cli.volumes import volume_mount
from novita_gpu_client.vocabulary import Status

app = typer.Typer(help="Create, inspect, start, stop and delete instances.", no_args_is_help=True)


class AutoStopSignal(StrEnum):
    LAST_USED = "lastUsed"
    GPU = "gpu"
    BOTH = "both"


class IdleAction(StrEnum):
    STOP = "stop"
    DELETE = "delete"


class OnReclaim(StrEnum):
    MIGRATE = "migrate"
    RECREATE = "recreate"
    STOP = "stop"


# What `list` shows without --all or --status: terminated instances are history (`--all` shows them).
LIVE_STATUSES = [s.value for s in Status if s is not Status.TERMINATED]


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """KEY=VALUE items of a repeatable option, in order (a later KEY wins)."""
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = value
    return pairs


@app.command("list")
def list_instances(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS[,...]", help="Only these statuses; terminated ones too if named."),
    ] = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Only instances with this name.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="Only instances with this label (repeatable: all of them)."),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Terminated instances too.")] = False,
    wide: Annotated[bool, typer.Option("--wide", "-w", help="Every column: id, reason, auto-stop, labels...")] = False,
) -> None:
    """List instances, newest first; terminated ones only with --all.

    Every page is read (--json prints one JSON array). Terminated instances are left out unless --all or
    --status names them; the table fits the terminal (80 columns when piped), --wide shows every column."""
    labels = _pairs(label, "--label")
    statuses: str | list[str] | None = status
    if status is None and not show_all:
        statuses = LIVE_STATUSES
    with client_for(url, api_key) as client:
        items = list(client.iter_instances(status=statuses, name=name, labels=labels or None))
    show(items, as_json, lambda i: instances_table(i, wide))


@app.command("get")
def get_instance(ref: InstanceRef, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show one instance, by id or name."""
    with client_for(url, api_key) as client:
        view = refs.view(client, ref)
    show(view, as_json, instance_detail)


@app.command("create")
def create_instance(
    name: Annotated[str, typer.Option(metavar="NAME", help="A unique name: letters, digits, - and _ (at most 63).")],
    product: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="GPU product: `novita-gpu products` lists them (required, but --pool's)."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(metavar="ID|NAME", help="Template id or name: `novita-gpu templates` (required, but --pool's)."),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            metavar="POOL", help="Claim from this warm pool (its product, template and spec): `novita-gpu pools list`."
        ),
    ] = None,
    gpus: Annotated[int | None, typer.Option(metavar="N", help="GPUs, 1-8 (default 1).")] = None,
    disk: Annotated[
        int | None, typer.Option(metavar="GB", help="Root disk, 10-6144 GB (default: the template's).")
    ] = None,
    region: Annotated[
        str | None, typer.Option(metavar="REGION", help="Preferred region (cluster id or name); others follow.")
    ] = None,
    strict_region: Annotated[
        bool, typer.Option("--strict-region", help="Only --region: never fall back to another.")
    ] = False,
    spot: Annotated[
        bool | None, typer.Option("--spot/--on-demand", help="Billing mode (default: the server's).")
    ] = None,
    max_price: Annotated[
        float | None, typer.Option(metavar="USD", help="Most USD per hour, for the whole instance.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", help="Environment variable (repeatable); KEY alone takes this shell's value."
        ),
    ] = None,
    label: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="A label (repeatable).")] = None,
    health_check_path: Annotated[
        str | None, typer.Option(metavar="PATH", help="Probed on each http port before ready (default /).")
    ] = None,
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
    auto_stop_signal: Annotated[
        AutoStopSignal | None,
        typer.Option(help="What counts as idle: no PUT /last-used, GPUs below --gpu-idle-below, or both."),
    ] = None,
    gpu_idle_below: Annotated[
        float | None,
        typer.Option(metavar="PERCENT", help="GPU use below which the GPUs count as idle (signals gpu, both)."),
    ] = None,
    idle_action: Annotated[
        IdleAction | None, typer.Option(help="What ends an idle instance (and one past --max-runtime).")
    ] = None,
    max_runtime: Annotated[
        int | None,
        typer.Option(metavar="MINUTES", help="Ended this long after ready, busy or not (0: no limit)."),
    ] = None,
    image_auth_id: Annotated[
        str | None, typer.Option(metavar="ID", help="Novita registry auth for a private image.")
    ] = None,
    network_storage: Annotated[
        list[str] | None,
        typer.Option(metavar="ID[:MOUNT]", help="Network storage to mount (at /network by default; repeatable)."),
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME[:/PATH]", help="A volume to mount (at /network by default; repeatable)."),
    ] = None,
    on_reclaim: Annotated[
        OnReclaim | None,
        typer.Option(help="What a spot reclaim leads to (default: the server's)."),
    ] = None,
    max_recoveries: Annotated[
        int | None, typer.Option(metavar="N", help="Spot recoveries allowed in a rolling 24 h.")
    ] = None,
    fallback_to_on_demand: Annotated[
        bool, typer.Option("--fallback-to-on-demand", help="Recreate on-demand when spot is sold out.")
    ] = False,
    keep_reclaimed: Annotated[
        bool, typer.Option("--keep-reclaimed", help="Keep a reclaimed instance (its disk) once recovered.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the instance is ready.")] = False,
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="With --wait: how long at most.")] = 900,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Create an instance; with --wait, return once it is ready.

    With --wait it exits 1, with the instance's status message, if it fails or is not ready in time. With
    --pool it is a claim from that warm pool (as `pools claim`): ready at once from a ready member; the
    pool sets the product, template and spec, so --product and --template may be left out."""
    if pool is None and (product is None or template is None):
        raise typer.BadParameter("give --product and --template (or --pool, to claim from a warm pool).")
    options: dict[str, Any] = {
        "gpu_num": gpus,
        "rootfs_size": disk,
        "region": region,
        "strict_region": strict_region or None,
        "billing_mode": None if spot is None else ("spot" if spot else "onDemand"),
        "max_price_per_hour": max_price,
        "webhook_url": webhook,
        "auto_stop_minutes": auto_stop,
        "auto_stop": _auto_stop_policy(auto_stop, auto_stop_signal, gpu_idle_below, idle_action),
        "max_runtime_minutes": max_runtime,
        "envs": _envs(env) or None,
        "labels": _pairs(label, "--label") or None,
        "health_check_path": health_check_path,
        "image_auth_id": image_auth_id,
        "network_storages": [_storage(item) for item in network_storage or []] or None,
        "volumes": [volume_mount(item) for item in volume or []] or None,
        "recovery": _recovery_policy(on_reclaim, max_recoveries, fallback_to_on_demand, keep_reclaimed),
        "pool": pool,
    }
    with client_for(url, api_key) as client:
        if pool is not None and (product is None or template is None or gpus is None):
            spec = client.get_pool(pool)  # what the claim must name: the pool's own
            product = product or spec["productName"]
            template = template or str(spec["templateId"])
            options["gpu_num"] = gpus or spec["gpuNum"]
        assert product is not None and template is not None
        view = client.create(name, product, template, **options)
        if wait and view.get("status") != "ready":
            waited = _wait_showing(client, view["instanceId"], ["ready"], timeout, quiet=as_json)
            view = {**waited, "claim": view["claim"]} if view.get("claim") else waited
    show(view, as_json, claim_detail if view.get("claim") else instance_detail)


def _wait_showing(client: Client, instance_id: str, wanted: list[str], timeout: float, *, quiet: bool) -> Json:
    """Wait for `wanted`, showing each status on the way on stderr (not with --json: output for programs)."""
    line = None if quiet else StatusLine()
    try:
        return client.wait_for(instance_id, wanted, timeout=timeout, on_change=line)
    finally:
        if line is not None:
            line.close()


def _auto_stop_policy(
    idle_minutes: int | None, signal: AutoStopSignal | None, below: float | None, action: IdleAction | None
) -> dict[str, Any] | None:
    """The API's `autoStop` object when a policy flag is given (--auto-stop alone stays `autoStopMinutes`)."""
    if signal is None and below is None and action is None:
        return None
    given = {
        "idleMinutes": idle_minutes,
        "signal": signal.value if signal else None,
        "gpuIdleBelowPercent": below,
        "action": action.value if action else None,
    }
    return {key: value for key, value in given.items() if value is not None}


def _recovery_policy(
    on_reclaim: OnReclaim | None, max_recoveries: int | None, fallback: bool, keep: bool
) -> dict[str, Any] | None:
    """The API's `recovery` object with the flags given (a switch left off is the server's default)."""
    given = {
        "onReclaim": on_reclaim.value if on_reclaim else None,
        "maxRecoveries": max_recoveries,
        "fallbackToOnDemand": fallback or None,
        "keepReclaimed": keep or None,
    }
    return {key: value for key, value in given.items() if value is not None} or None


def _envs(values: list[str] | None) -> dict[str, str]:
    """--env KEY=VALUE, or KEY alone for this shell's value (a secret then stays out of shell history)."""
    envs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--env")
        if not sep:
            if key not in os.environ:
                raise typer.BadParameter(f"{key} is not set in this shell; give KEY=VALUE", param_hint="--env")
            value = os.environ[key]
        envs[key] = value
    return envs


def _storage(item: str) -> dict[str, str]:
    storage_id, sep, mount = item.partition(":")
    if not storage_id or (sep and not mount):
        raise typer.BadParameter(f"{item!r} is not ID or ID:MOUNT", param_hint="--network-storage")
    return {"id": storage_id, "mountPoint": mount} if mount else {"id": storage_id}


def _act(client: Client, action: Action, ref: str | None, name: str | None) -> Json:
    if (ref is None) == (name is None):
        raise typer.BadParameter("give an instance id or name (or --name; one of them).")
    return refs.act(client, action, ref if ref is not None else str(name), by_name=name is not None)


def _action_command(action: Action, summary: str) -> Callable[..., None]:
    """The command for one action, by ID|NAME (or --name, as before names were accepted as the argument)."""

    def command(
        ref: OptionalRef = None,
        name: ByName = None,
        url: Url = DEFAULT_URL,
        api_key: ApiKey = None,
        as_json: AsJson = False,
    ) -> None:
        with client_for(url, api_key) as client:
            answer = _act(client, action, ref, name)
        show(answer, as_json, answer_line)

    command.__doc__ = summary
    return command


app.command("start")(_action_command("start", "Start a stopped instance, by id or name."))


@app.command("stop")
def stop_instance(
    ref: OptionalRef = None,
    name: ByName = None,
    return_to_pool: Annotated[
        bool,
        typer.Option(
            "--return-to-pool",
            help="A claimed pool instance goes back to its pool as a stopped member (deleted if the pool is full).",
        ),
    ] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Stop an instance, by id or name (its record and disk are kept).

    With --return-to-pool, an instance claimed from a warm pool goes back to the pool as a stopped member
    if the pool wants more idle members, else it is deleted; the line printed says which. Other instances
    just stop."""
    if (ref is None) == (name is None):
        raise typer.BadParameter("give an instance id or name (or --name; one of them).")
    with client_for(url, api_key) as client:
        answer = refs.act(
            client,
            "stop",
            ref if ref is not None else str(name),
            by_name=name is not None,
            return_to_pool=return_to_pool,
        )
    show(answer, as_json, answer_line)


@app.command("delete")
def delete_instance(
    ref: OptionalRef = None,
    name: ByName = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Delete an instance at Novita, by id or name; asks first unless --yes.

    Its disk is lost; the record is kept as terminated. Without a terminal to ask on, it refuses unless
    --yes."""
    if (ref is None) == (name is None):
        raise typer.BadParameter("give an instance id or name (or --name; one of them).")
    if not yes and not sys.stdin.isatty():
        raise fail("refusing to delete without confirmation: stdin is not a terminal; pass --yes", 2)
    with client_for(url, api_key) as client:
        if yes:
            answer = _act(client, "delete", ref, name)
        else:
            view = refs.view(client, ref if ref is not None else str(name), by_name=name is not None)
            if view["status"] != "terminated":  # a terminated one: nothing to ask, the answer says it is done
                question = (
                    f"Delete {view['name']} ({view['instanceId']}, {text(view.get('productName'))}, "
                    f"{view['status']})? Its disk is lost"
                )
                if not typer.confirm(question, default=False, err=True):
                    raise fail("not deleted", 1)
            answer = refs.act(client, "delete", view["instanceId"], by_name=False)
    show(answer, as_json, answer_line)


@app.command("wait")
def wait_instance(
    ref: InstanceRef,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    status: Annotated[str, typer.Option("--for", metavar="STATUS[,...]", help="The status(es) to wait for.")] = "ready",
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="How long to wait at most.")] = 900,
) -> None:
    """Wait until an instance has a status (by id or name).

    Exits 1, with the instance's status message, if it fails or is terminated instead, or on timeout."""
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    with client_for(url, api_key) as client:
        view = _wait_showing(client, refs.instance_id(client, ref), wanted, timeout, quiet=as_json)
    show(view, as_json, instance_detail)


@app.command("touch")
def touch_instance(ref: InstanceRef, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Mark an instance used now, deferring its auto-stop."""
    with client_for(url, api_key) as client:
        answer = client.touch(refs.live_id(client, ref, "touch"))
    show(
        answer,
        as_json,
        lambda a: f"{a['instanceId']}: used at {when(a['lastUsedAt'])}; auto-stop at {when(a['autoStop']['stopsAt'])}",
    )


@app.command("events")
def instance_events(ref: InstanceRef, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """An instance's status history and its webhook deliveries.

    A delivery that has not gone through gets a line of its own under its event, with the last error."""
    with client_for(url, api_key) as client:
        answer = client.events(refs.instance_id(client, ref))

    def render(answer: Json) -> Layout:
        table = Layout(Col("AT"), Col("STATUS"), Col("REASON", drop=1), Col("MESSAGE", cut=12), Col("WEBHOOKS", cut=9))
        for e in answer["events"]:
            webhooks = e.get("webhooks") or []
            table.add_row(
                when(e["at"]),
                e["to"],
                e.get("reason"),
                e.get("message"),
                deliveries(webhooks),
                details=delivery_details(webhooks),
            )
        return table

    show(answer, as_json, render)


@app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh_instance(
    ctx: typer.Context,
    ref: InstanceRef,
    print_only: Annotated[bool, typer.Option("--print", help="Print the ssh command instead of running it.")] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Run ssh to the instance's ssh port (or print the command with --print).

    The port is Novita's mapping of the instance's port 22. Other arguments go to ssh, after `--` all of
    them: `instances ssh box -- -L 8888:localhost:8888`, `instances ssh box -- nvidia-smi`."""
    with client_for(url, api_key) as client:
        view = refs.view(client, ref)
    command = [*refs.ssh_command(view), *ctx.args]
    if print_only:
        typer.echo(shlex.join(command))
        return
    program = shutil.which(command[0])
    if program is None:
        raise fail(f"{command[0]} is not installed here; the command is: {shlex.join(command)}", 1)
    sys.stdout.flush()
    os.execv(program, command)  # noqa: S606 (the user asked for ssh; the terminal is its from here on)


@app.command("open")
def open_instance(
    ref: InstanceRef,
    port: Annotated[int | None, typer.Argument(help="The instance's port (default: its first http port).")] = None,
    browser: Annotated[bool, typer.Option("--browser", "-b", help="Open it in a web browser.")] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Print the public endpoint of one of the instance's ports (or open it with --browser)."""
    with client_for(url, api_key) as client:
        view = refs.view(client, ref)
    endpoint = refs.endpoint(view, port)
    if view["status"] != Status.READY:
        typer.echo(f"note: {view['name']} is {view['status']}; the endpoint may not answer yet", err=True)
    typer.echo(endpoint)
    if browser and not webbrowser.open(endpoint):
        raise fail("no web browser could be started here; open the address above yourself", 1)


@app.command("sync")
def sync_instances(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Reconcile with Novita now."""
    with client_for(url, api_key) as client:
        answer = client.sync()
    show(answer, as_json, lambda a: ", ".join(f"{k}: {v}" for k, v in a.items()))
