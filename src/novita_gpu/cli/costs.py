"""`novita-gpu costs`: what Novita billed over a period, grouped, per instance, and the key's budget."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu.cli.output import Col, Layout, price, show, when
from novita_gpu.cli.session import ApiKey, AsJson, Url, client_for
from novita_gpu.sdk import ApiError, Json


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
    """What Novita billed over a period: the total, by group and by instance (and your budget)."""
    with client_for(url, api_key) as client:
        report = client.costs(start=start, end=end, group_by=group_by)
        try:
            budget: Json | None = client.budget()
        except ApiError:
            budget = None

    def render(report: Json) -> RenderableType:
        summary = (
            f"{_usd(report['totalUsd'])} from {when(report['from'])} to {when(report['to'])}\n"
            f"{_hours(report['billedHours'])} billed hours, {_hours(report['gpuHours'])} GPU-hours, "
            f"{len(report['instances'])} instances"
        )
        parts: list[RenderableType] = [Text(summary)]
        if (line := _budget_line(budget)) is not None:
            parts.append(Text(line))
        if report["groups"]:
            groups = Layout(
                Col(report["groupBy"].upper(), cut=10),
                Col("COST", right=True),
                Col("HOURS", right=True),
                Col("GPU-H", right=True),
                Col("INSTANCES", right=True),
            )
            for g in report["groups"]:
                groups.add_row(
                    g["key"], _usd(g["costUsd"]), _hours(g["billedHours"]), _hours(g["gpuHours"]), g["instances"]
                )
            parts += [Text(""), groups]
        if report["instances"]:
            lines = Layout(
                Col("ID"),
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
                    i["instanceId"], i["name"], i["group"], price(i["pricePerHour"]), _hours(i["billedHours"]), cost
                )
            parts += [Text(""), lines]
            if any(i.get("billingNow") for i in report["instances"]):
                parts.append(Text("* still billing: its cost grows until it stops"))
        return Group(*parts)

    show(report, as_json, render)
