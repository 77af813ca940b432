"""How client commands print: the server's JSON with --json, else a line or a rich table."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from novita_gpu.sdk import Json


def show(data: Any, as_json: bool, render: Callable[[Any], RenderableType]) -> None:
    """The JSON as the server sent it, or `render(data)`: a line as is, anything else through rich."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    shown = render(data)
    if isinstance(shown, str):
        typer.echo(shown)
    else:
        Console(markup=False, highlight=False).print(shown)


def grid(*columns: str, keep: int = 1) -> Table:
    """A borderless table whose first `keep` columns are never wrapped (ids stay copyable)."""
    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for column in table.columns[:keep]:
        column.no_wrap = True
    return table


def text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def when(value: str | None) -> str:
    """An ISO timestamp to the second (the API's timestamps carry microseconds)."""
    return "-" if value is None else value.split(".")[0].removesuffix("Z") + "Z"


def price(value: Any) -> str:
    return "-" if value is None else f"${value:.4f}"


def status_of(view: Json) -> str:
    reason = view.get("statusReason")
    return f"{view['status']} ({reason})" if reason else str(view["status"])


def instances_table(items: Sequence[Json]) -> Table | str:
    if not items:
        return "No instances."
    table = grid("ID", "NAME", "STATUS", "PRODUCT", "REGION", "$/H", keep=3)
    for i in items:
        table.add_row(
            i["instanceId"],
            i["name"],
            status_of(i),
            text(i.get("productName")),
            text(i.get("region")),
            price(i.get("pricePerHour")),
        )
    return table


def instance_table(view: Json) -> Table:
    table = grid("FIELD", "VALUE")
    auto_stop = view.get("autoStop") or {}
    rows = {
        "id": view["instanceId"],
        "name": view["name"],
        "status": status_of(view),
        "message": view.get("statusMessage"),
        "upstream": view.get("upstreamStatus"),
        "product": f"{text(view.get('productName'))} x{view.get('gpuNum', 1)}",
        "region": view.get("region"),
        "price": price(view.get("pricePerHour")) + "/h",
        "template": view.get("templateId"),
        "auto-stop": f"after {auto_stop.get('idleMinutes')} idle min, at {when(auto_stop.get('stopsAt'))}",
        "created": when(view.get("createdAt")),
        "ready": when(view.get("readyAt")),
    }
    for port in (view.get("connectionDetails") or {}).get("ports") or []:
        rows[f"port {port.get('port')}"] = f"{port.get('endpoint')} ({port.get('type')})"
    for field, value in rows.items():
        table.add_row(field, text(value))
    return table


def answer_line(answer: Json) -> str:
    line = f"{answer['instanceId']} ({answer.get('name')}): {answer['status']}"
    return f"{line}: {answer['message']}" if answer.get("message") else line
