"""`novita-gpu volumes ...`: create, list, inspect, grow and delete volumes (Novita network storages), and
adopt one made in Novita's console (admin keys). Every command that acts on one volume takes its id
(vol_...) or its name (the live volume of that name). `instances create --volume NAME[:/path]` mounts one
(`volume_mount` reads that flag).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from novita_gpu_client import DEFAULT_URL, ApiError, Client, Json
from novita_gpu_client.cli.output import Col, Layout, price, show, text, when
from novita_gpu_client.cli.session import ApiKey, AsJson, Url, client_for, fail

app = typer.Typer(help="Create, list, grow and delete volumes (Novita network storages).", no_args_is_help=True)

WAIT_TIMEOUT = 300.0

VolumeRef = Annotated[
    str, typer.Argument(metavar="ID|NAME", help="A volume id (vol_...) or name (the live volume of that name).")
]
Timeout = Annotated[float, typer.Option(metavar="SECONDS", help="How long to wait at most.")]


def volume_mount(item: str) -> dict[str, str]:
    """`--volume NAME[:/path]` as the API's mount (NAME alone: Novita's default, /network). Names hold no
    `:`, so the first one ends the name."""
    name, sep, mount_point = item.partition(":")
    if not name or (sep and not mount_point.startswith("/")):
        raise typer.BadParameter(f"{item!r} is not NAME or NAME:/path", param_hint="--volume")
    return {"volume": name, "mountPoint": mount_point} if sep else {"volume": name}


def _size(view: Json) -> str:
    return f"{view['sizeGb']} GB" if view.get("sizeGb") is not None else "-"


def _mounted_by(view: Json) -> str:
    return ", ".join(m.get("name") or m.get("instanceId") or "?" for m in view.get("mountedBy") or []) or "-"


def volumes_table(items: Sequence[Json]) -> Layout | str:
    """One line per volume; a long name or list of instances is cut with `…` (`--json` has them whole)."""
    if not items:
        return "No volumes."
    table = Layout(
        Col("NAME", cut=12),
        Col("STATUS"),
        Col("REGION"),
        Col("SIZE", right=True),
        Col("$/GB-MO", right=True),
        Col("MOUNTED BY", cut=10),
    )
    for v in items:
        table.add_row(
            v["name"], v["status"], v.get("region"), _size(v), price(v.get("pricePerGbMonth")), _mounted_by(v)
        )
    return table


def volume_table(view: Json) -> Layout:
    table = Layout(Col("FIELD"), Col("VALUE", wrap=True))
    per_hour, per_gb = view.get("pricePerHour"), view.get("pricePerGbMonth")
    rows: dict[str, Any] = {
        "id": view["volumeId"],
        "name": view["name"],
        "status": view["status"],
        "message": view.get("statusMessage"),
        "region": f"{text(view.get('region'))} (cluster {text(view.get('clusterId'))})",
        "size": _size(view),
        "price": "-" if per_hour is None else f"{price(per_hour)}/h, {price(per_gb)}/GB-month",
        "storage": view.get("storageId"),
        "created": when(view.get("createdAt")),
        "available": when(view.get("availableAt")),
    }
    if view.get("deletedAt"):
        rows["deleted"] = when(view["deletedAt"])
    if view.get("adopted"):
        rows["adopted"] = "yes: made outside the service (Novita's console)"
    for field, value in rows.items():
        table.add_row(field, value)
    mounts = view.get("mountedBy") or []
    for mount in mounts:
        table.add_row(
            "mounted by", f"{text(mount.get('name'))} ({text(mount.get('instanceId'))}) at {mount['mountPoint']}"
        )
    if not mounts:
        table.add_row("mounted by", "-")
    return table


def _answer_line(view: Json) -> str:
    line = f"{view['volumeId']} ({view['name']}): {view['status']}"
    return f"{line}: {view['statusMessage']}" if view.get("statusMessage") else line


@app.command("create")
def create_volume(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique among your live volumes: letters, digits, - _.")],
    region: Annotated[
        str, typer.Option(metavar="REGION", help="A region that supports network storage (name or cluster id).")
    ],
    size: Annotated[int, typer.Option(metavar="GB", min=10, help="Size in GB, at least 10 (it can grow later).")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the volume is available.")] = True,
    timeout: Timeout = WAIT_TIMEOUT,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Create a volume and wait until it is available.

    Exits 1 with Novita's reason if Novita refuses the storage (status failed), or if it is not available
    within --timeout."""
    with client_for(url, api_key) as client:
        view = client.create_volume(name, region, size, wait=wait, timeout=timeout)
    show(view, as_json, volume_table)


@app.command("list")
def list_volumes(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    region: Annotated[str | None, typer.Option(metavar="REGION", help="Only volumes in this region.")] = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Only volumes with this name.")] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Deleted volumes too.")] = False,
) -> None:
    """List volumes, newest first; deleted ones only with --all.

    Every page is read (--json prints one JSON array). The table fits the terminal (80 columns when piped):
    NAME, STATUS, REGION, SIZE, $/GB-MO (USD per GB and 730-hour month) and MOUNTED BY (instances that are
    not terminated)."""
    with client_for(url, api_key) as client:
        items = client.list_volumes(name=name, region=region)["volumes"]
    if not show_all:
        items = [v for v in items if v["status"] != "deleted"]
    show(items, as_json, volumes_table)


@app.command("get")
def get_volume(ref: VolumeRef, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show one volume, by id or name: its price, storage and the instances that mount it."""
    with client_for(url, api_key) as client:
        view = client.get_volume(ref)
    show(view, as_json, volume_table)


@app.command("resize")
def resize_volume(
    ref: VolumeRef,
    size: Annotated[int, typer.Option(metavar="GB", help="The new size in GB: larger (Novita cannot shrink one).")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Grow an available volume (by id or name) to --size GB."""
    with client_for(url, api_key) as client:
        view = client.resize_volume(ref, size)
    show(view, as_json, volume_table)


def _in_use(client: Client, ref: str, refused: ApiError) -> typer.Exit:
    """VOLUME_IN_USE as a line naming each instance, where it mounts the volume, and what to do."""
    try:
        view = client.get_volume(ref)
    except ApiError:
        return fail(f"{refused.code}: {refused.message} (request {refused.request_id or 'unknown'})", 1)
    users = view.get("mountedBy") or []
    if not users:  # unmounted meanwhile: the delete may be tried again
        return fail(f"{refused.code}: {refused.message} (request {refused.request_id or 'unknown'})", 1)
    named = ", ".join(f"{m.get('name')} ({m.get('instanceId')}) at {m.get('mountPoint')}" for m in users)
    first = users[0].get("name") or users[0].get("instanceId")
    return fail(
        f"{refused.code}: volume {view['name']} is mounted by {named}; delete (terminate) "
        f"{'that instance' if len(users) == 1 else 'those instances'} first "
        f"(novita-gpu instances delete {first}), then the volume",
        1,
    )


@app.command("delete")
def delete_volume(
    ref: VolumeRef,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until Novita has deleted the storage.")] = False,
    timeout: Timeout = WAIT_TIMEOUT,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Delete a volume and its data, by id or name; asks first unless --yes.

    Refused (exit 1, naming them) while instances that are not terminated mount it. Without a terminal to
    ask on, it refuses unless --yes."""
    if not yes and not sys.stdin.isatty():
        raise fail("refusing to delete without confirmation: stdin is not a terminal; pass --yes", 2)
    with client_for(url, api_key) as client:
        if not yes:
            view = client.get_volume(ref)
            if view["status"] not in ("deleting", "deleted", "failed"):  # otherwise nothing to ask
                question = (
                    f"Delete {view['name']} ({view['volumeId']}, {_size(view)}, {view['region']})? Its data is lost"
                )
                if not typer.confirm(question, default=False, err=True):
                    raise fail("not deleted", 1)
            ref = view["volumeId"]
        try:
            answer = client.delete_volume(ref, wait=wait, timeout=timeout)
        except ApiError as exc:
            if exc.code != "VOLUME_IN_USE":
                raise
            raise _in_use(client, ref, exc) from exc
    show(answer, as_json, _answer_line)


@app.command("unmanaged")
def unmanaged_storages(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Admin keys: network storages at Novita that no volume stands for (made in Novita's console)."""
    with client_for(url, api_key) as client:
        answer = client.unmanaged_storages()

    def render(answer: Json) -> Layout | str:
        if not answer["storages"]:
            return "No unmanaged storages."
        table = Layout(Col("STORAGE ID"), Col("NAME", cut=10), Col("REGION"), Col("SIZE", right=True), Col("$/H"))
        for s in answer["storages"]:
            table.add_row(s["storageId"], s["name"], s["region"], _size(s), price(s.get("pricePerHour")))
        return table

    show(answer, as_json, render)


@app.command("adopt")
def adopt_volume(
    storage_id: Annotated[str, typer.Argument(metavar="STORAGE_ID", help="From `novita-gpu volumes unmanaged`.")],
    name: Annotated[str, typer.Option(metavar="NAME", help="The volume's name here.")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Admin keys: make a storage made in Novita's console a volume of this key."""
    with client_for(url, api_key) as client:
        view = client.adopt_volume(storage_id, name)
    show(view, as_json, volume_table)
