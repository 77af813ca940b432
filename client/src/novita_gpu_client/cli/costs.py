"""`novita-gpu costs`: what Novita billed over a period, grouped, per instance, and the key's budget;
`novita-gpu budget [set|clear|events]`: the key's monthly budget (docs/costs.md)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Literal

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu_client import ApiError, Client, Json
from novita_gpu_client.cli.output import Col, Layout, deliveries, delivery_details, price, show, text, when
from novita_gpu_client.cli.session import ApiKey, AsJson, Url, client_for


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _hours(value: float) -> str:
    return f"{value:,.2f}"


def _budget_line(budget: Json | None) -> str | None:
    if not budget or budget.get("monthlyLimitUsd") is None:
        return None
    line = (
        f"Budget {budget['month']}: {_usd(budget['spentUsd'])} of {_usd(budget['monthlyLimitUsd'])} "
        f"(projected {_usd(budget['projectedUsd'])} by month end, {budget['onExceeded']})"
    )
    return line + (" - EXCEEDED" if budget.get("exceeded") else "")


def costs(
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    start: Annotated[
        str | None,
        typer.Option("--from", metavar="TIME", help="ISO 8601 start (default: the start of this month, UTC)."),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="TIME", help="ISO 8601 end (default: now).")] = None,
    group_by: Annotated[
        str, typer.Option("--group-by", metavar="product|apiKey|label:KEY", help="How to group the costs.")
    ] = "product",
) -> None:
    """What Novita billed over a period: the total, by group and by instance and volume (and your budget)."""
    with client_for(url, api_key) as client:
        report = client.costs(start=start, end=end, group_by=group_by)
        try:
            budget: Json | None = client.budget()
        except ApiError:
            budget = None

    def render(report: Json) -> RenderableType:
        # Rows are instances and volumes (`kind`; a server from before volumes sends instances only).
        volumes = sum(1 for i in report["instances"] if i.get("kind") == "volume")
        summary = (
            f"{_usd(report['totalUsd'])} from {when(report['from'])} to {when(report['to'])}\n"
            f"{_hours(report['billedHours'])} billed hours, {_hours(report['gpuHours'])} GPU-hours, "
            f"{len(report['instances']) - volumes} instances"
        ) + (f", {volumes} volumes ({_usd(report.get('volumesUsd'))})" if volumes else "")
        parts: list[RenderableType] = [Text(summary)]
        if (line := _budget_line(budget)) is not None:
            parts.append(Text(line))
        # With volumes in the report, their counts and a KIND column; without, the tables are as before them.
        if report["groups"]:
            group_cols = [Col(report["groupBy"].upper(), cut=10), Col("COST", right=True)]
            group_cols += [Col("HOURS", right=True), Col("GPU-H", right=True), Col("INSTANCES", right=True)]
            groups = Layout(*group_cols, *([Col("VOLUMES", right=True)] if volumes else []))
            for g in report["groups"]:
                cells = [g["key"], _usd(g["costUsd"]), _hours(g["billedHours"]), _hours(g["gpuHours"]), g["instances"]]
                groups.add_row(*cells, *([g.get("volumes", 0)] if volumes else []))
            parts += [Text(""), groups]
        if report["instances"]:
            lines = Layout(
                Col("ID"),
                *([Col("KIND")] if volumes else []),
                Col("NAME", cut=8),
                Col("GROUP", cut=6, drop=1),
                Col("$/H", right=True),
                Col("HOURS", right=True),
                Col("COST", right=True),
            )
            for i in report["instances"]:
                # The star has a place of its own, after the cost: a name cut to fit would lose it.
                cost = _usd(i["costUsd"]) + (" *" if i.get("billingNow") else "  ")
                lines.add_row(
                    i.get("volumeId") or i["instanceId"],
                    *([i.get("kind", "instance")] if volumes else []),
                    i["name"],
                    i["group"],
                    price(i["pricePerHour"]),
                    _hours(i["billedHours"]),
                    cost,
                )
            parts += [Text(""), lines]
            if any(i.get("billingNow") for i in report["instances"]):
                until = "it stops" + (" (a volume: until it is deleted)" if volumes else "")
                parts.append(Text(f"* still billing: its cost grows until {until}"))
        return Group(*parts)

    show(report, as_json, render)


budget_app = typer.Typer(
    help="Your monthly budget: show it (no subcommand), set it, clear it, and its events.", no_args_is_help=False
)


class OnExceeded(StrEnum):
    REFUSE_CREATES = "refuseCreates"
    STOP_ALL = "stopAll"


KeyId = Annotated[
    str | None,
    typer.Option(
        "--key-id",
        metavar="key-...",
        help="Admin keys only: another key's budget, by its id (`costs --group-by apiKey` shows them).",
    ),
]
_WHEN_EXCEEDED = {
    "refuseCreates": "creates refused",
    "stopAll": "creates refused and the key's instances stopped",
}


def budget_text(budget: Json) -> str:
    """GET/PUT/DELETE /api/budget's answer in a few lines (docs/costs.md has its fields)."""
    key, month = text(budget.get("apiKey")), text(budget.get("month"))
    spent, projected = _usd(budget.get("spentUsd")), _usd(budget.get("projectedUsd"))
    outlook = f"Projected: {projected} by the month's end, at {price(budget.get('ratePerHourUsd'))}/h now"
    if budget.get("monthlyLimitUsd") is None:
        return (
            f"No budget for key {key}.\n{month}: {spent} spent\n{outlook}\nSet one: novita-gpu budget set --limit USD"
        )
    action = text(budget.get("onExceeded"))
    lines = [
        f"Budget: {_usd(budget['monthlyLimitUsd'])} a month for key {key}",
        f"{month}: {spent} spent, {_usd(budget.get('remainingUsd'))} left",
        outlook,
        f"When exceeded: {action} ({_WHEN_EXCEEDED.get(action, 'see docs/costs.md')})",
    ]
    if budget.get("setBy") == "admin":
        lines.append("Set by an admin key: only an admin key may change it")
    if budget.get("webhookUrl"):
        lines.append(f"Webhook: {budget['webhookUrl']}")
    if budget.get("exceeded"):
        lines.append(f"EXCEEDED at {when(budget['exceededAt'])}" if budget.get("exceededAt") else "EXCEEDED")
    return "\n".join(lines)


def _on_exceeded(value: str | None) -> Literal["refuseCreates", "stopAll"] | None:
    if value == "refuseCreates":
        return "refuseCreates"
    return "stopAll" if value == "stopAll" else None


_GROUP_OPTIONS = "novita_gpu.budget"


def _inherited(ctx: typer.Context, as_json: bool, key_id: str | None) -> tuple[bool, str | None]:
    """--json and --key-id given to `budget` itself count for its subcommand too."""
    group = ctx.meta.get(_GROUP_OPTIONS) or {}
    return as_json or bool(group.get("as_json")), key_id or group.get("key_id")


def _answer_shown(
    ctx: typer.Context,
    key_id: str | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
    call: Callable[[Client, str | None], Json],
    render: Callable[[Json], RenderableType],
) -> None:
    """A budget subcommand that makes one call about the key (`--key-id`, else the caller's) and shows it."""
    as_json, key_id = _inherited(ctx, as_json, key_id)
    with client_for(url, api_key) as client:
        answer = call(client, key_id)
    show(answer, as_json, render)


@budget_app.callback(invoke_without_command=True)
def budget(
    ctx: typer.Context,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    key_id: KeyId = None,
) -> None:
    """Your monthly budget: spend this month against the limit, and the projected month end."""
    if ctx.invoked_subcommand is not None:
        ctx.meta[_GROUP_OPTIONS] = {"as_json": as_json, "key_id": key_id}  # `budget --json set ...`
        return
    with client_for(url, api_key) as client:
        answer = client.budget(api_key=key_id)
    show(answer, as_json, budget_text)


@budget_app.command("set")
def set_budget(
    ctx: typer.Context,
    limit: Annotated[float, typer.Option("--limit", metavar="USD", help="USD per calendar month (UTC).")],
    on_exceeded: Annotated[
        OnExceeded | None,
        typer.Option(
            help="Once spent: refuse creates (the default), or also stop every instance of the key "
            "(stopAll). Left out: as it was."
        ),
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option("--webhook", metavar="URL", help="Where budget.exceeded is POSTed; left out: as it was."),
    ] = None,
    no_webhook: Annotated[bool, typer.Option("--no-webhook", help="Remove the budget's webhook.")] = False,
    key_id: KeyId = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Set the monthly budget; what is not given stays as it was.

    Creates are refused once this month's spend reaches the limit; with stopAll the key's instances are
    stopped too (and starts refused)."""
    as_json, key_id = _inherited(ctx, as_json, key_id)
    if webhook is not None and no_webhook:
        raise typer.BadParameter("give --webhook URL or --no-webhook, not both")
    with client_for(url, api_key) as client:
        action: str | None = on_exceeded.value if on_exceeded is not None else None
        if action is None or (webhook is None and not no_webhook):
            current = client.budget(api_key=key_id)
            if current.get("monthlyLimitUsd") is not None:
                action = action or current.get("onExceeded")
                webhook = webhook if webhook is not None or no_webhook else current.get("webhookUrl")
        answer = client.set_budget(
            limit,
            on_exceeded=_on_exceeded(action),
            webhook_url=webhook,
            api_key=key_id,
        )
    show(answer, as_json, budget_text)


@budget_app.command("clear")
def clear_budget(
    ctx: typer.Context, key_id: KeyId = None, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Remove the budget (spend goes on being counted and shown)."""
    _answer_shown(ctx, key_id, url, api_key, as_json, lambda client, key: client.clear_budget(api_key=key), budget_text)


@budget_app.command("events")
def budget_events(
    ctx: typer.Context, key_id: KeyId = None, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """The budget.exceeded events, newest first, with their webhook deliveries."""
    _answer_shown(ctx, key_id, url, api_key, as_json, lambda client, key: client.budget_events(api_key=key), _events)


def _events(answer: Json) -> Layout | str:
    if not answer["events"]:
        return "No budget events."
    table = Layout(
        Col("AT"),
        Col("MONTH"),
        Col("SPENT", right=True),
        Col("LIMIT", right=True),
        Col("ACTION", drop=2),
        Col("STOPPED", right=True, drop=1),
        Col("WEBHOOKS", cut=9, drop=3),
    )
    for event in answer["events"]:
        data = (event.get("payload") or {}).get("data") or {}
        table.add_row(
            when(event.get("at")),
            data.get("month"),
            _usd(data.get("spentUsd")),
            _usd(data.get("monthlyLimitUsd")),
            data.get("onExceeded"),
            len(data.get("stoppedInstances") or []),
            deliveries(event.get("webhooks") or []),
            details=delivery_details(event.get("webhooks") or []),
        )
    return table
