"""How client commands print: the server's JSON with --json, else a line or a rich table."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from novita_gpu.sdk import Json


def show(data: Any, as_json: bool, render: Callable[[Any], RenderableType], *, wide: bool = False) -> None:
    """The JSON as the server sent it, or `render(data)`: a line as is, anything else through rich (at
    the terminal's width, 80 columns when it is not a terminal; `wide` never cuts a line)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    shown = render(data)
    if isinstance(shown, str):
        typer.echo(shown)
    else:
        Console(markup=False, highlight=False, width=WIDE if wide else None).print(shown)


WIDE = 400  # columns for --wide: every cell whole, whatever the terminal


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


def age(value: str | None, now: datetime | None = None) -> str:
    """How long ago an ISO timestamp was, in its largest unit: 45s, 12m, 3h, 5d."""
    if not value:
        return "-"
    try:
        then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def product_of(view: Json) -> str:
    gpus = view.get("gpuNum") or 1
    name = text(view.get("productName"))
    return f"{gpus}x {name}" if gpus > 1 else name


def labels_of(view: Json) -> str:
    return ",".join(f"{k}={v}" for k, v in (view.get("labels") or {}).items()) or "-"


def instances_table(items: Sequence[Json], wide: bool = False) -> Table | str:
    """Names, not ids, by default: every command takes either, and the table then fits 80 columns.
    Cells that would not fit end with an ellipsis rather than wrap, so each instance stays one line."""
    if not items:
        return "No instances."
    if wide:
        table = grid("ID", "NAME", "STATUS", "REASON", "PRODUCT", "REGION", "$/H", "AGE", "AUTO-STOP", "LABELS")
        for i in items:
            auto_stop = (i.get("autoStop") or {}).get("stopsAt")
            table.add_row(
                i["instanceId"],
                i["name"],
                i["status"],
                text(i.get("statusReason")),
                product_of(i),
                text(i.get("region")),
                price(i.get("pricePerHour")),
                age(i.get("createdAt")),
                when(auto_stop),
                labels_of(i),
            )
        return table
    headers = ("NAME", "STATUS", "PRODUCT", "REGION", "$/H", "AGE")
    rows = [
        (
            i["name"],
            status_of(i),
            product_of(i),
            text(i.get("region")),
            price(i.get("pricePerHour")),
            age(i.get("createdAt")),
        )
        for i in items
    ]
    table = grid(*headers)
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    # The name gives way first (down to 12 characters), then the product: status, price and age stay whole.
    spare = Console().width - sum(widths) - 2 * (len(widths) - 1)
    for index, floor in ((0, 12), (2, 8)):
        if spare < 0:
            cut = min(-spare, widths[index] - floor)
            if cut > 0:
                widths[index] -= cut
                spare += cut
    for column, width in zip(table.columns, widths, strict=True):
        column.no_wrap, column.overflow, column.max_width = True, "ellipsis", width
    for row in rows:
        table.add_row(*row)
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
        "product": f"{text(view.get('productName'))} x{view.get('gpuNum', 1)}, {view.get('billingMode') or '-'}",
        "region": view.get("region"),
        "price": price(view.get("pricePerHour")) + "/h",
        "template": view.get("templateId"),
        "auto-stop": f"after {auto_stop.get('idleMinutes')} idle min, at {when(auto_stop.get('stopsAt'))}",
        "created": when(view.get("createdAt")),
        "ready": when(view.get("readyAt")),
    }
    if view.get("labels"):
        rows["labels"] = labels_of(view)
    details = view.get("connectionDetails") or {}
    for port in details.get("ports") or []:
        rows[f"port {port.get('port')}"] = f"{port.get('endpoint')} ({port.get('type')})"
    if (details.get("ssh") or {}).get("command"):
        rows["ssh"] = details["ssh"]["command"]
    for field, value in rows.items():
        table.add_row(field, text(value))
    return table


def answer_line(answer: Json) -> str:
    line = f"{answer['instanceId']} ({answer.get('name')}): {answer['status']}"
    return f"{line}: {answer['message']}" if answer.get("message") else line


class StatusLine:
    """What a `--wait` shows while it waits: each status the instance goes through, with its message and
    the time since the wait began, on stderr (stdout keeps the final answer). On a terminal the line is
    rewritten in place; elsewhere each change is a line of its own."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.started = datetime.now(UTC)
        self.rewriting = self.console.is_terminal
        self.shown = False

    def __call__(self, view: Json) -> None:
        seconds = (datetime.now(UTC) - self.started).total_seconds()
        message = view.get("statusMessage") or ""
        text = f"{seconds:5.0f} s  {view.get('status')}" + (f": {message}" if message else "")
        if self.rewriting:
            width = max(20, self.console.width - 1)
            self.console.file.write("\r" + text[:width].ljust(width))
            self.console.file.flush()
        else:
            self.console.print(text, markup=False)
        self.shown = True

    def close(self) -> None:
        if self.rewriting and self.shown:
            self.console.file.write("\n")
            self.console.file.flush()
