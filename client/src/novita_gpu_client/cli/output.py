"""How client commands print: the server's JSON with --json, else a line or a table that fits the terminal."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.text import Text

from novita_gpu_client import Json


def show(data: Any, as_json: bool, render: Callable[[Any], RenderableType]) -> None:
    """The JSON as the server sent it, or `render(data)`: a line as is, anything else through rich at the
    terminal's width (80 columns when it is not a terminal, or `COLUMNS`)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    shown = render(data)
    if isinstance(shown, str):
        typer.echo(shown)
    else:
        console().print(shown)


def console() -> Console:
    return Console(markup=False, highlight=False)


def width() -> int:
    """The columns a table may take: the terminal's, else `COLUMNS`, else 80 (rich's rules)."""
    return max(40, console().width)


@dataclass(frozen=True, slots=True)
class Col:
    """A column of a `Layout`. By default its values are shown whole, whatever the width: ids, numbers,
    prices, timestamps, statuses. `cut`: free text that may end in an ellipsis, down to this many
    characters. `wrap`: free text that continues on the next lines (at spaces), the last column only.
    `drop`: when the table cannot fit otherwise, columns are left out, the highest `drop` first (0: never)."""

    header: str
    cut: int = 0
    wrap: bool = False
    drop: int = 0
    right: bool = False


GAP = 2  # spaces between columns


class Layout:
    """A borderless table that fits `width` columns without breaking a value across lines: free text is
    cut (with `…`) or wrapped, then low-priority columns are left out, with a line saying which. A row
    may carry detail lines (free text under it, from the second column on)."""

    def __init__(self, *columns: Col, width: int | None = None) -> None:
        self.columns = columns
        self.width = width
        self.rows: list[tuple[list[str], list[str]]] = []

    def add_row(self, *cells: Any, details: Sequence[str] = ()) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(([text(cell) for cell in cells], list(details)))

    def __rich__(self) -> Text:
        return self.render()

    def render(self) -> Text:
        room = self.width or width()
        shown, widths = self._fit(room)
        out = Text(no_wrap=True, overflow="ignore")
        header = self._line([self.columns[i].header for i in shown], shown, widths)
        out.append(header, style="bold")
        indent = widths[0] + GAP if len(shown) > 1 else 2
        for cells, details in self.rows:
            for line in self._lines(cells, shown, widths):
                out.append("\n" + line)
            for detail in details:
                out.append("\n" + " " * indent + cut(detail, room - indent))
        dropped = [self.columns[i].header for i in range(len(self.columns)) if i not in shown]
        if dropped:
            note = f"(not shown at {room} columns: {', '.join(dropped)}: see --json)"
            for line in textwrap.wrap(note, room):
                out.append("\n" + line)
        return out

    def _natural(self, index: int) -> int:
        values = [self.columns[index].header, *(cells[index] for cells, _ in self.rows)]
        return max(len(value) for value in values)

    def _floor(self, index: int) -> int:
        column, natural = self.columns[index], self._natural(index)
        if column.wrap:
            return min(natural, max(len(column.header), 20))
        return min(natural, max(column.cut, len(column.header))) if column.cut else natural

    def _fit(self, room: int) -> tuple[list[int], dict[int, int]]:
        """The columns shown and their widths: whole if they fit, else free text narrowed (the widest
        first), else the highest `drop` left out and again."""
        shown = list(range(len(self.columns)))
        while True:
            widths = {i: self._natural(i) for i in shown}
            excess = sum(widths.values()) + GAP * (len(shown) - 1) - room
            slack = {i: widths[i] - self._floor(i) for i in shown}
            droppable = [i for i in shown if self.columns[i].drop]
            if excess > sum(slack.values()) and droppable:
                shown.remove(max(droppable, key=lambda i: self.columns[i].drop))
                continue
            while excess > 0 and any(slack.values()):
                widest = max(shown, key=lambda i: (slack[i] > 0, widths[i]))
                widths[widest] -= 1
                slack[widest] -= 1
                excess -= 1
            return shown, widths

    def _line(self, cells: Sequence[str], shown: Sequence[int], widths: dict[int, int]) -> str:
        parts = []
        for cell, index in zip(cells, shown, strict=True):
            value = cut(cell, widths[index])
            parts.append(value.rjust(widths[index]) if self.columns[index].right else value.ljust(widths[index]))
        return (" " * GAP).join(parts).rstrip()

    def _lines(self, cells: list[str], shown: Sequence[int], widths: dict[int, int]) -> list[str]:
        """One line, or more when a wrapped column's text needs them (the other cells on the first)."""
        first = [cells[i] for i in shown]
        wrapped = [i for i in shown if self.columns[i].wrap and len(cells[i]) > widths[i]]
        if not wrapped:
            return [self._line(first, shown, widths)]
        index = wrapped[0]
        pieces = textwrap.wrap(cells[index], widths[index], break_long_words=False, break_on_hyphens=False)
        pieces = pieces or [""]
        first[shown.index(index)] = pieces[0]
        lines = [self._line(first, shown, widths)]
        for piece in pieces[1:]:
            blank = ["" if i != index else piece for i in shown]
            lines.append(self._line(blank, shown, widths))
        return lines


def cut(value: str, room: int) -> str:
    """`value`, or as much of it as fits in `room` followed by `…`."""
    if len(value) <= room:
        return value
    return value[: max(0, room - 1)] + "…" if room > 0 else ""


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


def _seconds_until(value: str | None, now: datetime | None) -> int | None:
    """Whole seconds from `now` to an ISO timestamp (negative when it has passed); None without one."""
    if not value:
        return None
    try:
        then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((then - (now or datetime.now(UTC))).total_seconds())


def _largest_unit(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age(value: str | None, now: datetime | None = None) -> str:
    """How long ago an ISO timestamp was, in its largest unit: 45s, 12m, 3h, 5d."""
    seconds = _seconds_until(value, now)
    return "-" if seconds is None else _largest_unit(max(0, -seconds))


def product_of(view: Json) -> str:
    gpus = view.get("gpuNum") or 1
    name = text(view.get("productName"))
    return f"{gpus}x {name}" if gpus > 1 else name


def labels_of(view: Json) -> str:
    return ",".join(f"{k}={v}" for k, v in (view.get("labels") or {}).items()) or "-"


def until(value: str | None, now: datetime | None = None) -> str:
    """How long until an ISO timestamp, in its largest unit: in 12m (now, when it has passed)."""
    seconds = _seconds_until(value, now)
    if seconds is None:
        return "-"
    return "now" if seconds <= 0 else f"in {_largest_unit(seconds)}"


# What an instance's place in its warm pool means (the view's `pool.state`).
POOL_STATES = {"ready": "idle, ready", "stopped": "idle, stopped", "claimed": "claimed"}


def pool_of(view: Json) -> str | None:
    """`gpus (idle, ready)`, `gpus (claimed)`; None for an instance of no pool."""
    pool = view.get("pool")
    if not pool:
        return None
    state = str(pool.get("state"))
    return f"{pool.get('name') or pool.get('poolId')} ({POOL_STATES.get(state, state)})"


def instances_table(items: Sequence[Json], wide: bool = False) -> Layout | str:
    """Names, not ids, by default: every command takes either. Each instance is one line: a name too long
    for the terminal is cut with `…`, and with --wide the columns that do not fit are left out, saying so.
    When any of them belongs to a warm pool, a POOL column says which and whether it is idle or claimed."""
    if not items:
        return "No instances."
    if any(i.get("pool") for i in items):
        return _with_pools(items, wide)
    if wide:
        table = Layout(
            Col("ID"),
            Col("NAME", cut=10),
            Col("STATUS"),
            Col("REASON", drop=2),
            Col("PRODUCT", cut=8, drop=1),
            Col("REGION", drop=3),
            Col("$/H"),
            Col("AGE"),
            Col("AUTO-STOP", drop=4),
            Col("LABELS", cut=10, drop=5),
        )
        for i in items:
            table.add_row(
                i["instanceId"],
                i["name"],
                i["status"],
                i.get("statusReason"),
                product_of(i),
                i.get("region"),
                price(i.get("pricePerHour")),
                age(i.get("createdAt")),
                until((i.get("autoStop") or {}).get("stopsAt")),
                labels_of(i),
            )
        return table
    table = Layout(Col("NAME", cut=12), Col("STATUS"), Col("PRODUCT", cut=8), Col("REGION"), Col("$/H"), Col("AGE"))
    for i in items:
        table.add_row(
            i["name"],
            status_of(i),
            product_of(i),
            i.get("region"),
            price(i.get("pricePerHour")),
            age(i.get("createdAt")),
        )
    return table


def _pool_cell(view: Json) -> str | None:
    pool = view.get("pool")
    return f"{pool.get('name')}:{pool.get('state')}" if pool else None


def _listed_status(view: Json) -> str:
    """An idle member's status says it sits in its pool (the POOL reason would say less); others' as ever."""
    if (view.get("pool") or {}).get("state") in ("ready", "stopped"):
        return f"{view['status']} (in pool)"
    return status_of(view)


def _with_pools(items: Sequence[Json], wide: bool) -> Layout:
    """The table with its POOL column: the pool's name (an idle member's status says `in pool`; --wide:
    `gpus:ready`, `gpus:stopped`, `gpus:claimed`), left out before any other when the terminal is too narrow."""
    if wide:
        table = Layout(
            Col("ID"),
            Col("NAME", cut=10),
            Col("STATUS"),
            Col("REASON", drop=2),
            Col("POOL", cut=8, drop=6),
            Col("PRODUCT", cut=8, drop=1),
            Col("REGION", drop=3),
            Col("$/H"),
            Col("AGE"),
            Col("AUTO-STOP", drop=4),
            Col("LABELS", cut=10, drop=5),
        )
        for i in items:
            table.add_row(
                i["instanceId"],
                i["name"],
                i["status"],
                i.get("statusReason"),
                _pool_cell(i),
                product_of(i),
                i.get("region"),
                price(i.get("pricePerHour")),
                age(i.get("createdAt")),
                until((i.get("autoStop") or {}).get("stopsAt")),
                labels_of(i),
            )
        return table
    table = Layout(
        Col("NAME", cut=12),
        Col("STATUS"),
        Col("POOL", cut=8, drop=2),
        Col("PRODUCT", cut=8),
        Col("REGION", drop=1),
        Col("$/H"),
        Col("AGE"),
    )
    for i in items:
        table.add_row(
            i["name"],
            _listed_status(i),
            (i.get("pool") or {}).get("name"),
            product_of(i),
            i.get("region"),
            price(i.get("pricePerHour")),
            age(i.get("createdAt")),
        )
    return table


def instance_table(view: Json, more: Mapping[str, Any] | None = None) -> Layout:
    """An instance's fields, one a line; `more` after its auto-stop (cli/recovery.py: its spot recovery)."""
    table = Layout(Col("FIELD"), Col("VALUE", wrap=True))
    auto_stop = view.get("autoStop") or {}
    idle = auto_stop.get("idleMinutes")
    rows: dict[str, Any] = {
        "id": view["instanceId"],
        "name": view["name"],
        "status": status_of(view),
        "message": view.get("statusMessage"),
        "upstream": view.get("upstreamStatus"),
        "product": f"{text(view.get('productName'))} x{view.get('gpuNum') or 1}, {text(view.get('billingMode'))}",
        "region": view.get("region"),
        "price": price(view.get("pricePerHour")) + "/h",
        "template": view.get("templateId"),
        **({"pool": pool} if (pool := pool_of(view)) else {}),
        "auto-stop": "never" if not idle else f"after {idle} idle min, at {when(auto_stop.get('stopsAt'))}",
        **(more or {}),
        "created": when(view.get("createdAt")),
        "ready": when(view.get("readyAt")),
    }
    if view.get("labels"):
        rows["labels"] = labels_of(view)
    if view.get("volumes"):
        rows["volumes"] = ", ".join(f"{v.get('name')} at {v.get('mountPoint')}" for v in view["volumes"])
    rows.update(connection_rows(view))
    for field, value in rows.items():
        table.add_row(field, value)
    return table


# Statuses in which Novita has the instance up, so its ports, ssh and URLs answer.
UP = frozenset({"running", "health_checking", "ready"})


def connection_rows(view: Json) -> dict[str, str]:
    """Ports, ssh and Jupyter of an instance that is up; of any other, a line saying there are none (the
    API keeps the last ones it saw of a stopped instance, which no longer answer)."""
    status = str(view.get("status"))
    details = view.get("connectionDetails") or {}
    if status not in UP:
        return {"ports": "(none: terminated)" if status == "terminated" else f"(none while {status})"}
    rows: dict[str, str] = {}
    for port in details.get("ports") or []:
        rows[f"port {port.get('port')}"] = f"{text(port.get('endpoint'))} ({text(port.get('type'))})"
    if (details.get("ssh") or {}).get("command"):
        rows["ssh"] = details["ssh"]["command"]
    jupyter = details.get("jupyter") or {}
    if isinstance(jupyter, dict) and jupyter.get("url"):
        rows["jupyter"] = jupyter["url"]
    return rows


def deliveries(webhooks: Sequence[Json]) -> str:
    """Webhook deliveries in short: `delivered`, `pending x12`."""
    return ", ".join(
        f"{w.get('status')} x{w['attempts']}" if w.get("attempts") else str(w.get("status")) for w in webhooks
    )


def delivery_details(webhooks: Sequence[Json]) -> list[str]:
    """A line for each delivery not (yet) done that says why: `webhook pending x12: name does not resolve`."""
    lines = []
    for w in webhooks:
        if w.get("status") == "delivered":
            continue
        reason = w.get("lastError") or (f"HTTP {w['lastStatusCode']}" if w.get("lastStatusCode") else None)
        if reason:
            lines.append(f"webhook {w.get('status')} x{w.get('attempts') or 0}: {reason} ({text(w.get('url'))})")
    return lines


def answer_line(answer: Json) -> str:
    line = f"{answer['instanceId']} ({text(answer.get('name'))}): {answer['status']}"
    return f"{line}: {answer['message']}" if answer.get("message") else line


class StatusLine:
    """What a `--wait` shows while it waits: each status the instance goes through, with its message and
    the time since the wait began, on stderr (stdout keeps the final answer). On a terminal the line is
    rewritten in place, and redrawn every second so the time keeps moving while the status stays the
    same; elsewhere each change is a line of its own (a log should not fill up with clock ticks)."""

    def __init__(
        self, console: Console | None = None, *, clock: Callable[[], float] = time.monotonic, every: float = 1.0
    ) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.clock = clock
        self.every = every
        self.started = clock()
        self.rewriting = self.console.is_terminal
        self.view: Json | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ticker: threading.Thread | None = None

    def __call__(self, view: Json) -> None:
        with self.lock:
            self.view = view
            self._draw()
        if self.rewriting and self.ticker is None:
            self.ticker = threading.Thread(target=self._tick, name="novita-gpu-wait-clock", daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        while not self.done.wait(self.every):
            with self.lock:
                if not self.done.is_set():
                    self._draw()

    def _draw(self) -> None:
        view = self.view or {}
        seconds = max(0, int(self.clock() - self.started))
        message = view.get("statusMessage") or ""
        line = f"{seconds:5d} s  {text(view.get('status'))}" + (f": {message}" if message else "")
        if self.rewriting:
            width = max(20, self.console.width - 1)
            self.console.file.write("\r" + line[:width].ljust(width))
            self.console.file.flush()
        else:
            self.console.print(line, markup=False)

    def close(self) -> None:
        self.done.set()
        if self.ticker is not None:
            self.ticker.join()
        if self.rewriting and self.view is not None:
            self.console.file.write("\n")
            self.console.file.flush()
