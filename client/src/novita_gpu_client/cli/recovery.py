"""What an instance's detail (`instances get`, `create`, `wait`) shows of spot recovery (the view's
`recovery`): the policy and whether a recovery is under way among its fields, then every recovery step in a
table of its own. An on-demand instance that never recovered shows none of it (the policy is for spot)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from novita_gpu_client import Json
from novita_gpu_client.cli.output import Col, Layout, instance_table, when


def instance_detail(view: Json) -> RenderableType:
    """The instance's fields, with its recovery policy and state; under them its recovery history, if any."""
    table = instance_table(view, recovery_rows(view))
    history = history_table(view)
    if history is None:
        return table
    return Group(table, Text(""), Text("Spot recoveries", style="bold"), history)


def _shown(view: Json) -> Json | None:
    recovery = view.get("recovery")
    if not recovery:
        return None
    if view.get("billingMode") == "onDemand" and not recovery.get("history") and not recovery.get("inProgress"):
        return None
    return dict(recovery)


def policy(recovery: Json) -> str:
    """`migrate (else recreate), at most 3 per 24 h, on-demand when spot is sold out, reclaimed kept`"""
    on_reclaim = recovery.get("onReclaim")
    if on_reclaim == "stop":
        return "stop: a reclaimed instance stays stopped"
    parts = [
        "migrate (else recreate)" if on_reclaim == "migrate" else str(on_reclaim),
        f"at most {recovery.get('maxRecoveries')} per 24 h",
    ]
    if recovery.get("fallbackToOnDemand"):
        parts.append("on-demand when spot is sold out")
    if recovery.get("keepReclaimed"):
        parts.append("reclaimed instances kept")
    return ", ".join(parts)


def progress(recovery: Json) -> str | None:
    """Whether a recovery is under way: `yes: attempt 2 (recreate) since ...`, or `no (last: ...)`."""
    if recovery.get("inProgress"):
        line = (
            f"yes: attempt {recovery.get('attempt')} ({recovery.get('path')}) since {when(recovery.get('startedAt'))}"
        )
        return line + ", its replacement on-demand" if recovery.get("onDemand") else line
    history = recovery.get("history") or []
    if not history:
        return None
    last = history[-1]
    return f"no (last: attempt {last.get('attempt')}, {last.get('path')}, {last.get('outcome')})"


def recovery_rows(view: Json) -> dict[str, Any]:
    recovery = _shown(view)
    if recovery is None:
        return {}
    rows: dict[str, Any] = {"recovery": policy(recovery)}
    if (state := progress(recovery)) is not None:
        rows["recovering"] = state
    if recovery.get("keptInstanceIds"):
        rows["kept"] = ", ".join(recovery["keptInstanceIds"])
    return rows


def history_table(view: Json) -> Layout | None:
    """Each step of each recovery, oldest first (a migrate that failed and the recreate that followed are
    two steps of one attempt)."""
    recovery = _shown(view)
    steps = (recovery or {}).get("history") or []
    if not steps:
        return None
    table = Layout(
        Col("ATTEMPT", right=True),
        Col("AT"),
        Col("PATH"),
        Col("UPSTREAM ID", drop=1),
        Col("OUTCOME"),
        Col("MESSAGE", wrap=True),
    )
    for step in steps:
        table.add_row(
            step.get("attempt"),
            when(step.get("at")),
            step.get("path"),
            step.get("upstreamId"),
            step.get("outcome"),
            step.get("message"),
        )
    return table
