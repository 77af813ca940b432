"""The audit trail's route table is whole: every route that changes anything has its action, every action
names a route that exists, and docs/audit.md lists the same actions and workers."""

from __future__ import annotations

import re
from pathlib import Path

from novita_gpu.app import create_app
from novita_gpu.audit.actions import ROUTE_ACTIONS, SYSTEM_ACTIONS, route_action
from novita_gpu.kit.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
MUTATING = ("post", "put", "patch", "delete")


def mutating_routes() -> set[tuple[str, str]]:
    document = create_app(Settings(_env_file=None)).openapi()
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in MUTATING}


def test_every_mutating_route_has_an_action_and_every_action_a_route() -> None:
    assert set(ROUTE_ACTIONS) == mutating_routes()


def test_action_names_are_resource_dot_verb() -> None:
    names = [spec.name for spec in ROUTE_ACTIONS.values()] + [action for _, action in SYSTEM_ACTIONS]
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", name) for name in names), names


def test_a_route_missing_from_the_table_still_has_a_name() -> None:
    assert route_action("POST", "/api/widgets/{widget_id}/polish").name == "widgets.polish.post"
    assert route_action("DELETE", "/api/instances/{instance_id}").name == "instance.delete"


def test_docs_list_every_action_and_every_worker() -> None:
    page = (ROOT / "docs" / "audit.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for (method, path), spec in ROUTE_ACTIONS.items():
        shown = path.replace("{instance_id}", "{id}").replace("{key_id}", "{id}")
        shown = shown.replace("{volume}", "{id or name}").replace("{ref}", "{id or name}")
        assert any(f"`{method} {shown}`" in row and f"`{spec.name}`" in row for row in rows), (method, path)
    for actor, action in SYSTEM_ACTIONS:
        assert any(row.startswith(f"| `{actor}` |") and f"`{action}`" in row for row in rows), (actor, action)
