"""What the dashboard says things cost, in Debian's Chromium against `novita-gpu serve`: each
instance's accrued cost (its view's `cost.accruedUsd`), this month's spend (`GET /api/costs`) and the
budget with its limit and projected month end (`GET /api/budget`), the same figures as the API's answers
and kept up to date by the event stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import wait_for
from tests.e2e.test_dashboard import TIMEOUT_MS, Watched, chromium

pytestmark = pytest.mark.e2e

WAIT_S = 60.0


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def usd(value: float) -> str:
    return f"${value:.2f}"


def test_accrued_cost_month_spend_and_budget_match_the_api(processes: Processes, sqlite_url: str, browser: Any) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})
    api = httpx.Client(base_url=service.url, timeout=10)

    def view(instance_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = api.get(f"/api/instances/{instance_id}").raise_for_status().json()
        return answer

    def create(name: str, product: str, gpus: int = 1) -> str:
        body = {"name": name, "productName": product, "templateId": "ubuntu-ssh", "gpuNum": gpus}
        answer = api.post("/api/instances", json=body)
        assert answer.status_code == 201, answer.text
        instance_id: str = answer.json()["instanceId"]
        return instance_id

    watched = Watched(browser)
    page = watched.page
    page.goto(f"{service.url}/ui")
    expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
    expect(page.locator("#stat-month")).to_have_text("$0.00")
    expect(page.locator("#budget-card")).to_be_hidden()  # no budget: nothing to show
    assert api.get("/api/budget").json()["monthlyLimitUsd"] is None

    # 8 H100s bill $21.52/h: a few cents within seconds. Stopped, they cost nothing more.
    big = create("big", "H100 SXM 80GB", gpus=8)
    wait_for(lambda: True if view(big)["status"] == "ready" else None, timeout=WAIT_S, what="big ready")
    wait_for(lambda: True if api.get("/api/costs").json()["totalUsd"] >= 0.05 else None, timeout=WAIT_S, what="5 cents")
    api.post(f"/api/instances/{big}/stop").raise_for_status()
    wait_for(
        lambda: True if view(big)["status"] == "stopped" and view(big)["cost"]["billingSince"] is None else None,
        timeout=WAIT_S,
        what="big stopped and billed no more",
    )
    # The open page follows: its figures are the API's, without a reload.
    month = api.get("/api/costs").json()["totalUsd"]
    big_row = page.locator("#rows tr", has_text="big")
    expect(big_row.locator(".badge")).to_have_text("stopped", timeout=TIMEOUT_MS)
    expect(big_row.locator("td.cost")).to_have_text(usd(view(big)["cost"]["accruedUsd"]), timeout=TIMEOUT_MS)
    expect(page.locator("#stat-month")).to_have_text(usd(month), timeout=TIMEOUT_MS)

    # One cheap instance goes on billing; a budget between what is spent and what is projected.
    small = create("small", "L4 24GB")
    wait_for(lambda: True if view(small)["cost"]["billingSince"] else None, timeout=WAIT_S, what="small billing")
    budget = api.get("/api/budget").json()
    limit = round((budget["spentUsd"] + budget["projectedUsd"]) / 2, 2)
    api.put("/api/budget", json={"monthlyLimitUsd": limit}).raise_for_status()

    # A fresh page shows the answers it was given; they are the API's.
    answers: list[Any] = []
    page.on("response", lambda r: answers.append(r) if "/api/costs" in r.url or "/api/budget" in r.url else None)
    page.reload()
    expect(page.locator("#budget-card")).to_be_visible(timeout=TIMEOUT_MS)
    costs = next(r.json() for r in reversed(answers) if "/api/costs" in r.url)
    budget = next(r.json() for r in reversed(answers) if "/api/budget" in r.url)
    assert budget["monthlyLimitUsd"] == limit and budget["ratePerHourUsd"] > 0
    expect(page.locator("#stat-month")).to_have_text(usd(costs["totalUsd"]))
    expect(page.locator("#stat-budget")).to_have_text(usd(limit))
    expect(page.locator("#stat-budget-sub")).to_have_text(f"projected {usd(budget['projectedUsd'])} by month end")
    expect(page.locator("#budget-card")).to_have_class(re.compile(r"\bover\b"))  # the projection is over the limit
    # ...and a fresh answer agrees to the cent (the small instance adds a cent every 200 s).
    assert (
        abs(float(page.locator("#stat-month").inner_text().lstrip("$")) - api.get("/api/costs").json()["totalUsd"])
        <= 0.01
    )

    for instance in api.get("/api/instances").json()["instances"]:
        row = page.locator(f"#rows tr[data-id='{instance['instanceId']}']")
        expect(row.locator("td.cost")).to_have_text(usd(instance["cost"]["accruedUsd"]), timeout=TIMEOUT_MS)
    assert float(page.locator("#rows tr", has_text="big").locator("td.cost").inner_text().lstrip("$")) >= 0.05

    watched.shot("dashboard-costs-1280")
    page.set_viewport_size({"width": 800, "height": 860})
    watched.shot("dashboard-costs-800")
    assert watched.errors == [] and watched.alerts == []
