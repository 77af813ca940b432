"""The dashboard's warm pools, in Debian's Chromium against `novita-gpu serve` (the built-in emulator at
EMULATOR_SPEED=20, the keeper looking every 0.2 s): an admin makes a pool from the page and sees it fill
(members by state, idle $/h), a member claims an instance from it (asked for its name), sees the instance
handed out ready with its pool badge and the pool's hit rate, and returns it to the pool; a member sees no
form to make or delete a pool. No key appears in a URL the page requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.test_dashboard import PRODUCT, TIMEOUT_MS, Watched, chromium

pytestmark = pytest.mark.e2e

OWNER_KEY = "dashboard-pools-owner-key-0123456789"


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def signed_in(browser: Any, url: str, key: str, log: list[str]) -> Watched:
    watched = Watched(browser)
    watched.page.on("request", lambda request: log.append(request.url))
    watched.page.goto(f"{url}/ui")
    watched.page.fill("#key-input", key)
    watched.page.click("#key-form button")
    return watched


def test_an_admin_makes_a_pool_that_fills_a_member_claims_from_it_and_returns_the_instance(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    env = {"EMULATOR_SPEED": "20", "ADMIN_API_KEYS": OWNER_KEY, "POOL_CHECK_SECONDS": "0.2"}
    service = processes.service(sqlite_url, env=env)
    api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {OWNER_KEY}"}, timeout=10)
    assert api.post("/api/teams", json={"name": "ml"}).status_code == 201
    secrets = {}
    for name, role in [("alice", "admin"), ("bob", "member")]:
        made = api.post("/api/keys", json={"name": name, "team": "ml", "role": role})
        assert made.status_code == 201, made.text
        secrets[name] = made.json()["secret"]
    log: list[str] = []

    # An admin: the pool form, a pool made from it, filled in the background (no reload).
    admin = signed_in(browser, service.url, secrets["alice"], log)
    page = admin.page
    expect(page.locator("#whoami")).to_have_text("ml · alice · admin", timeout=TIMEOUT_MS)
    expect(page.locator("#pools-empty")).to_have_text("No warm pools yet: make one below.", timeout=TIMEOUT_MS)
    expect(page.locator("#pool-form")).to_be_visible()
    expect(page.locator("#p-product option")).not_to_have_count(0, timeout=TIMEOUT_MS)
    page.evaluate("window.notReloaded = true")
    page.fill("#p-name", "gpus")
    page.select_option("#p-product", PRODUCT)
    page.select_option("#p-template", label=next(t for t in templates(service.url) if t.startswith("ubuntu-ssh")))
    page.fill("#p-ready", "1")
    page.fill("#p-stopped", "1")
    page.fill("#p-max", "3")
    page.click("#p-create")
    pool = page.locator("#pool-rows tr", has_text="gpus")
    expect(pool).to_have_count(1, timeout=TIMEOUT_MS)
    expect(pool).to_contain_text(PRODUCT)
    expect(pool.locator(".member[data-state=ready]")).to_have_text("1 ready", timeout=TIMEOUT_MS)
    expect(pool.locator(".member[data-state=stopped]")).to_have_text("1 stopped", timeout=TIMEOUT_MS)
    expect(pool).to_contain_text("2 of at most 3 · keeps 1 ready, 1 stopped")
    expect(pool.locator(".hits")).to_have_text("— no claim today")
    as_alice = {"Authorization": f"Bearer {secrets['alice']}"}
    idle = api.get("/api/pools/gpus", headers=as_alice).json()["idleCost"]
    assert idle["readyUsdPerHour"] > 0 and idle["stoppedUsdPerHour"] > 0
    expect(pool.locator(".idle-cost div").first).to_have_text(f"${idle['usdPerHour']:.4f}/h")
    assert page.evaluate("window.notReloaded") is True
    # The idle members show in the instance list with their pool badge.
    members = page.locator("#rows tr", has_text="gpus-")
    expect(members).to_have_count(2, timeout=TIMEOUT_MS)
    for state in ("ready", "stopped"):
        badge = members.locator(".pool-badge", has_text=f"gpus · idle · {state}")
        expect(badge).to_have_count(1, timeout=TIMEOUT_MS)
    idle_row = members.filter(has_text="idle · stopped")
    expect(idle_row.get_by_role("button", name="Start", exact=True)).to_have_count(0)  # the pool's to start
    expect(idle_row.get_by_role("button", name="History")).to_be_visible()
    admin.shot("dashboard-pool-filled")

    # A member: a Claim button, no pool form and no Delete; the claim asks for the instance's name.
    member = signed_in(browser, service.url, secrets["bob"], log)
    page = member.page
    expect(page.locator("#whoami")).to_have_text("ml · bob · member", timeout=TIMEOUT_MS)
    pool = page.locator("#pool-rows tr", has_text="gpus")
    expect(pool.get_by_role("button", name="Claim")).to_be_visible(timeout=TIMEOUT_MS)
    expect(pool.get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.locator("#pool-form")).to_be_hidden()
    pool.get_by_role("button", name="Claim").click()
    expect(page.locator("#claim-dialog")).to_be_visible()
    expect(page.locator("#claim-text")).to_have_text(
        "Claim an instance from gpus: a ready member is handed out at once."
    )
    page.fill("#claim-name", "train-1")
    page.click("#claim-ok")
    expect(page.locator("#claim-dialog")).to_be_hidden()
    expect(page.locator("#toast")).to_have_text("train-1 claimed from gpus: ready at once.")
    row = page.locator("#rows tr", has_text="train-1")
    expect(row.locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    expect(row.locator(".pool-badge")).to_have_text("gpus · claimed")
    expect(pool.locator(".member[data-state=claimed]")).to_have_text("1 claimed", timeout=TIMEOUT_MS)
    expect(pool.locator(".hit-ready")).to_have_text("ready 100%", timeout=TIMEOUT_MS)
    expect(pool.locator(".claims")).to_have_text("1 / 1")
    member.shot("dashboard-pool-claimed")

    # Returned to the pool: it has room for one more idle member (it refills behind a claim), else deleted.
    row.get_by_role("button", name="Return to pool").click()
    expect(page.locator("#confirm-text")).to_contain_text("Return train-1 to gpus?")
    page.click("#confirm-ok")
    expect(page.locator("#toast")).to_contain_text("Returned to pool gpus", timeout=TIMEOUT_MS)
    instance = api.get("/api/instances", params={"name": "train-1"}, headers=as_alice).json()["instances"]
    assert all(i["status"] in ("stopping", "stopped", "terminating", "terminated") for i in instance), instance
    expect(pool.locator(".member[data-state=claimed]")).to_have_text("0 claimed", timeout=TIMEOUT_MS)

    # The admin deletes the pool: it drains, then leaves the list.
    page = admin.page
    admin_pool = page.locator("#pool-rows tr", has_text="gpus")
    admin_pool.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm-text")).to_contain_text("Delete pool gpus?")
    page.click("#confirm-ok")
    expect(admin_pool).to_have_count(0, timeout=TIMEOUT_MS)
    expect(page.locator("#pools-empty")).to_be_visible()

    leaked = [url for url in log for secret in secrets.values() if secret in url]
    assert leaked == []
    for watched in (admin, member):
        assert watched.alerts == []
        assert [e for e in watched.errors if "401" not in e] == []  # the page's first call, before the key


def templates(url: str) -> list[str]:
    answer = httpx.get(f"{url}/api/templates", headers={"Authorization": f"Bearer {OWNER_KEY}"}, timeout=10)
    return [f"{t['name']} · {t['image']}" for t in answer.json()["templates"]]
