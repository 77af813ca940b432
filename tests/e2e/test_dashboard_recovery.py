"""A spot instance's recovery on the dashboard, in Debian's Chromium against `novita-gpu serve` (built-in
emulator at EMULATOR_SPEED=20): Novita reclaims it while no spot capacity is left, so its migrate is refused
and the replacement waits for capacity; the row shows `recovering` (coloured like the other statuses on the
way to ready) with the attempt under way, and its history panel the policy and each step. Capacity back,
the row is ready again and the steps say how the recovery ended. An on-demand instance shows none of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.test_dashboard import PRODUCT, TIMEOUT_MS, Watched, chromium

pytestmark = pytest.mark.e2e

# The colours of a status badge: the same for every status on its way to ready.
COLOURS = """(status) => {
  const probe = document.createElement('span');
  probe.className = `badge st-${status}`;
  document.body.append(probe);
  const style = getComputedStyle(probe);
  const colours = [style.color, style.backgroundColor];
  probe.remove();
  return colours;
}"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def cells(row: Any) -> list[str]:
    texts: list[str] = row.locator("td").all_inner_texts()
    return [text.strip() for text in texts]


def test_a_recovering_instance_shows_its_recovery_in_the_row_and_the_history(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    # The reconciler looks at steady instances every second, so it sees the reclaim at once.
    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20", "RECONCILE_SLOW_SECONDS": "1"})
    api = httpx.Client(base_url=service.url, timeout=10)
    emulator = httpx.Client(base_url=api.get("/health").json()["emulator"]["url"], timeout=10)
    body = {"productName": PRODUCT, "templateId": "ubuntu-ssh"}
    policy = {"onReclaim": "migrate", "maxRecoveries": 2}
    spot = api.post("/api/instances", json={**body, "name": "spotty", "billingMode": "spot", "recovery": policy})
    steady = api.post("/api/instances", json={**body, "name": "steady"})
    assert spot.status_code == steady.status_code == 201, (spot.text, steady.text)
    spot_id = spot.json()["instanceId"]
    ready = api.get(f"/api/instances/{spot_id}", params={"waitFor": "ready", "timeout": 30}).json()
    assert ready["status"] == "ready", ready

    watched = Watched(browser)
    page = watched.page
    page.goto(f"{service.url}/ui")
    expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
    row = page.locator("#rows tr", has_text="spotty")
    expect(row.locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    expect(row.locator(".recovery")).to_have_count(0)  # never recovered: nothing to say in the row
    row.get_by_role("button", name="History").click()
    expect(page.locator("#recovery-policy")).to_have_text("On reclaim: migrate (else recreate) · at most 2 per 24 h")
    expect(page.locator("#recovery-steps")).to_be_hidden()

    # No spot capacity anywhere: the migrate is refused, and the recreate waits for capacity.
    clusters = {c["clusterId"] for c in emulator.get("/_emulator/capacity").json()["capacity"]}
    emulator.put(
        "/_emulator/spot", json={"noticeSeconds": 0, "capacity": dict.fromkeys(clusters, 0)}
    ).raise_for_status()
    emulator.post(f"/_emulator/instances/{ready['novitaInstanceId']}/reclaim").raise_for_status()

    expect(row.locator(".badge")).to_have_text("recovering", timeout=TIMEOUT_MS)
    expect(row.locator(".recovery")).to_have_text("recovery 1/2 · recreate · in progress", timeout=TIMEOUT_MS)
    assert page.evaluate(COLOURS, "recovering") == page.evaluate(COLOURS, "creating")
    assert page.evaluate(COLOURS, "recovering") != page.evaluate(COLOURS, "stopped")
    expect(row.get_by_role("button", name="Stop")).to_be_visible()  # a stop ends the recovery
    expect(page.locator("#recovery-policy")).to_contain_text("recovering now: attempt 1 (recreate) since ")
    steps = page.locator("#recovery-rows tr")
    expect(steps).to_have_count(2)  # newest first: the recreate under way, the migrate refused
    assert cells(steps.nth(0))[:5] == ["1", cells(steps.nth(0))[1], "recreate", "—", "in progress"]
    migrate = cells(steps.nth(1))
    assert migrate[0] == "1" and migrate[2:5] == ["migrate", ready["novitaInstanceId"], "failed"]
    assert "Novita refused the migrate" in migrate[5]
    watched.shot("dashboard-recovering")

    emulator.put("/_emulator/spot", json={"capacity": {}}).raise_for_status()
    expect(row.locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    expect(row.locator(".recovery")).to_have_text("recovery 1 · recreate · recovered", timeout=TIMEOUT_MS)
    expect(steps.nth(0).locator(".chip")).to_have_text("recovered", timeout=TIMEOUT_MS)
    back = api.get(f"/api/instances/{spot_id}").json()
    assert cells(steps.nth(0))[3] == back["novitaInstanceId"] != ready["novitaInstanceId"]
    expect(page.locator("#recovery-policy")).to_have_text("On reclaim: migrate (else recreate) · at most 2 per 24 h")
    title = row.locator(".recovery").get_attribute("title") or ""
    assert title.startswith("On reclaim: migrate") and "#1" in title and "recreate: recovered" in title
    watched.shot("dashboard-recovered")

    other = page.locator("#rows tr", has_text="steady")
    expect(other.locator(".recovery")).to_have_count(0)
    other.get_by_role("button", name="History").click()
    expect(page.locator("#history-name")).to_have_text("steady")
    expect(page.locator("#history-recovery")).to_be_hidden()  # on-demand: the policy does not apply
    assert watched.alerts == [] and watched.errors == []
