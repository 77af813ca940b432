"""The service's other client commands: products, templates, health and `autostop ...`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu_client import DEFAULT_URL, Client, Json
from novita_gpu_client.cli.output import Col, Layout, price, show, text, when
from novita_gpu_client.cli.session import ApiKey, AsJson, Url, client_for

autostop = typer.Typer(help="Auto-stop figures and on-demand sweeps.", no_args_is_help=True)


NameContains = Annotated[
    str | None, typer.Option("--name", metavar="TEXT", help="Only the ones whose name contains this.")
]


def _catalog_command(
    call: Callable[[Client, str | None], Json], render: Callable[[Json], Layout], summary: str
) -> Callable[..., None]:
    """The command that lists one of the catalog's kinds (products, templates), filtered by name."""

    def command(
        url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False, name: NameContains = None
    ) -> None:
        with client_for(url, api_key) as client:
            answer = call(client, name)
        show(answer, as_json, render)

    command.__doc__ = summary
    return command


def _products_table(answer: Json) -> Layout:
    table = Layout(Col("PRODUCT", cut=12), Col("FROM $/H"), Col("AVAILABLE"), Col("REGIONS", cut=10))
    for p in answer["products"]:
        regions = ", ".join(o["region"] for o in p["offers"] if o["available"])
        table.add_row(p["productName"], price(p["cheapestPricePerHour"]), "yes" if p["available"] else "no", regions)
    return table


def _templates_table(answer: Json) -> Layout:
    table = Layout(Col("ID"), Col("NAME", cut=12), Col("IMAGE", cut=12, drop=1), Col("PORTS", cut=10))
    for t in answer["templates"]:
        ports = ", ".join(f"{p}/{group['type']}" for group in t["ports"] for p in group["ports"])
        table.add_row(t["id"], t["name"], t["image"], ports)
    return table


products = _catalog_command(Client.products, _products_table, "GPU products with their cheapest price and regions.")
templates = _catalog_command(Client.templates, _templates_table, "Templates usable as --template (by id or name).")


def health(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """The service's health; exits 1 when it is unhealthy."""
    with client_for(url, api_key) as client:
        report = client.health()

    def render(report: Json) -> Group:
        table = Layout(Col("SERVICE"), Col("STATUS", wrap=True))
        for service, check in report["services"].items():
            # `workers` holds one check per worker (or a status of its own when they are disabled).
            status = check.get("status") or ", ".join(f"{name} {sub['status']}" for name, sub in check.items())
            table.add_row(service, status)
        summary = f"{report['status']} (mode {report['mode']}, version {report['version']}, up {report['uptime']} s)"
        return Group(Text(summary), table)

    show(report, as_json, render)
    if report["status"] == "unhealthy":
        raise typer.Exit(code=1)


@autostop.command("stats")
def autostop_stats(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Auto-stop figures: watched, eligible, next deadline, stopped and saved."""
    with client_for(url, api_key) as client:
        stats = client.autostop_stats()

    def render(stats: Json) -> Layout:
        table = Layout(Col("FIGURE"), Col("VALUE", wrap=True))
        for figure, value in stats_rows(stats).items():
            table.add_row(figure, value)
        return table

    show(stats, as_json, render)


def stats_rows(stats: Json) -> dict[str, str]:
    """GET /api/instances/auto-stop/stats as lines a person reads; fields this version does not know are
    shown as they come, a missing value as `-`."""
    stats = dict(stats)
    rows: dict[str, str] = {}
    if "enabled" in stats:
        every = stats.pop("checkIntervalSeconds", None)
        enabled = stats.pop("enabled")
        rows["enabled"] = f"yes, a sweep every {every:g} s" if enabled and every else plain(enabled)
    if "defaultIdleMinutes" in stats:
        rows["default idle"] = f"{plain(stats.pop('defaultIdleMinutes'))} min"
    for key, label in (("lastRunAt", "last sweep"), ("nextRunAt", "next sweep")):
        if key in stats:
            rows[label] = when(stats.pop(key))
    for key, label in (("watched", "watched"), ("gpuWatched", "GPU polled"), ("eligibleNow", "due now")):
        if key in stats:
            rows[label] = plain(stats.pop(key))
    if "nextDeadline" in stats:
        nxt = stats.pop("nextDeadline")
        rows["next stop"] = (
            f"{text(nxt.get('name'))} ({text(nxt.get('instanceId'))}) at {when(nxt.get('stopsAt'))}"
            if isinstance(nxt, dict)
            else "-"
        )
    if "stoppedSoFar" in stats:
        rows["stopped so far"] = plain(stats.pop("stoppedSoFar"))
    if "gpuHoursSaved" in stats or "dollarsSaved" in stats:
        rows["saved"] = _saved(stats.pop("gpuHoursSaved", None), stats.pop("dollarsSaved", None))
    for signal, figures in (stats.pop("bySignal", None) or {}).items():
        figures = figures if isinstance(figures, dict) else {}
        rows[f"by {signal}"] = (
            f"{plain(figures.get('stopped'))} stopped, "
            f"{_saved(figures.get('gpuHoursSaved'), figures.get('dollarsSaved'))} saved"
        )
    rows.update({key: plain(value) for key, value in stats.items()})
    return rows


def _saved(gpu_hours: Any, dollars: Any) -> str:
    hours = "-" if gpu_hours is None else f"{gpu_hours:.2f}"
    return f"{hours} GPU-h, {'-' if dollars is None else f'${dollars:,.2f}'}"


def plain(value: Any) -> str:
    """Any JSON value in words: yes/no, `-` for null, `k v, ...` for an object."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{key} {plain(item)}" for key, item in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(plain(item) for item in value) or "-"
    return text(value)


@autostop.command("trigger")
def autostop_trigger(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    dry_run: Annotated[bool, typer.Option("--dry-run/--no-dry-run", help="Only report what would stop.")] = True,
) -> None:
    """Run an auto-stop sweep now (a dry run unless --no-dry-run)."""
    with client_for(url, api_key) as client:
        answer = client.autostop_trigger(dry_run=dry_run)

    def render(answer: Json) -> RenderableType:
        items = answer["wouldStop"] if answer["dryRun"] else answer["stopped"]
        summary = f"{'would stop (dry run)' if answer['dryRun'] else 'stopped'}: {len(items)}"
        if not items:
            return summary
        table = Layout(
            Col("ID"),
            Col("NAME", cut=8),
            Col("STATUS", drop=1),
            Col("ACTION"),
            Col("IDLE MIN", drop=2),
            Col("STOPS AT"),
        )
        for c in items:
            table.add_row(c["instanceId"], c["name"], c["status"], c["action"], c["idleMinutes"], when(c["stopsAt"]))
        return Group(Text(summary), table)

    show(answer, as_json, render)
