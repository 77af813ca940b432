"""The service's other client commands: products, templates, health and `autostop ...`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu.cli.output import Col, Layout, price, show, text, when
from novita_gpu.cli.session import ApiKey, AsJson, Url, client_for
from novita_gpu.sdk import DEFAULT_URL, Json

autostop = typer.Typer(help="Auto-stop figures and on-demand sweeps.", no_args_is_help=True)


def products(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    name: Annotated[str | None, typer.Option(metavar="TEXT", help="Only products whose name contains this.")] = None,
) -> None:
    """GPU products with their cheapest price and regions."""
    with client_for(url, api_key) as client:
        answer = client.products(name)

    def render(answer: Json) -> Layout:
        table = Layout(Col("PRODUCT", cut=12), Col("FROM $/H"), Col("AVAILABLE"), Col("REGIONS", cut=10))
        for p in answer["products"]:
            regions = ", ".join(o["region"] for o in p["offers"] if o["available"])
            table.add_row(
                p["productName"], price(p["cheapestPricePerHour"]), "yes" if p["available"] else "no", regions
            )
        return table

    show(answer, as_json, render)


def templates(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    name: Annotated[str | None, typer.Option(metavar="TEXT", help="Only templates whose name contains this.")] = None,
) -> None:
    """Templates usable as --template (by id or name)."""
    with client_for(url, api_key) as client:
        answer = client.templates(name)

    def render(answer: Json) -> Layout:
        table = Layout(Col("ID"), Col("NAME", cut=12), Col("IMAGE", cut=12, drop=1), Col("PORTS", cut=10))
        for t in answer["templates"]:
            ports = ", ".join(f"{p}/{group['type']}" for group in t["ports"] for p in group["ports"])
            table.add_row(t["id"], t["name"], t["image"], ports)
        return table

    show(answer, as_json, render)


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
        for key, value in stats.items():
            if isinstance(value, dict):  # nextDeadline: the instance that stops first
                value = f"{value.get('name')} ({value.get('instanceId')}) at {when(value.get('stopsAt'))}"
            table.add_row(key, when(value) if key.endswith("At") else text(value))
        return table

    show(stats, as_json, render)


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
