"""The dashboard with stored keys and roles, in Debian's Chromium against `novita-gpu serve` with an owner key
in ADMIN_API_KEYS: the page asks for a key, says who is calling (team, key, role), shows a viewer no
button that would change anything, and shows an admin the Team panel (quotas and their use, the keys,
a new key's secret once, rotate and revoke) and the audit trail. No key, of any of them, ever appears in a
URL the page requests; the event stream carries it in a header.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.test_dashboard import SMALL, TIMEOUT_MS, Watched, chromium

pytestmark = pytest.mark.e2e

OWNER_KEY = "dashboard-owner-key-0123456789"


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Logged(Watched):
    """A page whose requests are kept: their URLs, and the headers of the event stream's."""

    def __init__(self, browser: Any, log: list[tuple[str, dict[str, str]]]) -> None:
        super().__init__(browser)
        self.page.on("request", lambda request: log.append((request.url, request.headers)))


def test_a_viewer_sees_no_actions_an_admin_sees_the_team_keys_and_audit_and_keys_stay_out_of_urls(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20", "ADMIN_API_KEYS": OWNER_KEY})
    api = httpx.Client(base_url=service.url, timeout=10)

    def call(key: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return api.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)

    assert call(OWNER_KEY, "POST", "/api/teams", json={"name": "ml"}).status_code == 201
    secrets: dict[str, str] = {"owner": OWNER_KEY}
    for name, role in [("wall", "viewer"), ("alice", "admin"), ("bob", "member")]:
        made = call(OWNER_KEY, "POST", "/api/keys", json={"name": name, "team": "ml", "role": role})
        assert made.status_code == 201, made.text
        secrets[name] = made.json()["secret"]
    quotas = {"quotas": {"maxGpus": 4, "monthlyBudgetUsd": 100}}
    assert call(secrets["alice"], "PATCH", "/api/teams/ml", json=quotas).status_code == 200
    created = call(secrets["bob"], "POST", "/api/instances", json={**SMALL, "name": "ml-job"})
    assert created.status_code == 201, created.text

    log: list[tuple[str, dict[str, str]]] = []

    # A viewer: the key is asked for, then the team's instance without a button that would change it.
    viewer = Logged(browser, log)
    page = viewer.page
    page.goto(f"{service.url}/ui")
    expect(page.locator("#key-panel")).to_be_visible()
    page.fill("#key-input", secrets["wall"])
    page.click("#key-form button")
    expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
    expect(page.locator("#whoami")).to_have_text("ml · wall · viewer")
    row = page.locator("#rows tr", has_text="ml-job")
    expect(row.locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    expect(row.get_by_role("button", name="History")).to_be_visible()
    for action in ("Start", "Stop", "Delete"):
        expect(row.get_by_role("button", name=action, exact=True)).to_have_count(0)
    expect(page.locator("#create-card")).to_be_hidden()
    expect(page.locator("#team-card")).to_be_hidden()
    expect(page.locator("#audit-card")).to_be_hidden()
    viewer.shot("dashboard-viewer")

    # "Forget key": asked again; an admin of the team acts, and sees its team, its keys and its audit trail.
    page.click("#sign-out")
    expect(page.locator("#key-panel")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#key-input", secrets["alice"])
    page.click("#key-form button")
    expect(page.locator("#whoami")).to_have_text("ml · alice · admin", timeout=TIMEOUT_MS)
    expect(row.get_by_role("button", name="Stop", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#create-card")).to_be_visible()
    team = page.locator("#team-card")
    expect(team).to_be_visible()
    expect(page.locator("#team-title")).to_have_text("ml")
    expect(page.locator("#quota-gpus .quota-value")).to_have_text("1 of 4", timeout=TIMEOUT_MS)
    expect(page.locator("#quota-gpus .stat-sub")).to_have_text("3 left")
    expect(page.locator("#quota-usd .stat-sub")).to_have_text("no limit")
    expect(page.locator("#quota-month .quota-value")).to_contain_text("of $100.00")
    keys = page.locator("#key-rows tr")
    expect(keys).to_have_count(3)
    for name, role in [("wall", "viewer"), ("alice", "admin"), ("bob", "member")]:
        expect(keys.filter(has_text=name)).to_contain_text(role)
    expect(keys.filter(has_text="alice")).to_contain_text("key of this page")
    assert all(secret not in (page.text_content("#team-card") or "") for secret in secrets.values())

    # A new key: its secret shown once, and it works.
    page.fill("#k-name", "grafana")
    page.select_option("#k-role", "viewer")
    page.click("#k-create")
    expect(page.locator("#secret-box")).to_be_visible()
    grafana = (page.text_content("#secret-value") or "").strip()
    assert re.fullmatch(r"ngk_\S{43}", grafana), grafana
    secrets["grafana"] = grafana
    assert call(grafana, "GET", "/api/me").json()["keyName"] == "grafana"
    expect(keys).to_have_count(4)
    viewer.shot("dashboard-team-new-key")
    page.click("#secret-done")
    expect(page.locator("#secret-box")).to_be_hidden()
    assert grafana not in (page.content())  # gone from the page once read

    # Rotate bob: a new secret shown; both work through the grace.
    keys.filter(has_text="bob").get_by_role("button", name="Rotate").click()
    expect(page.locator("#confirm-text")).to_contain_text("Rotate bob?")
    page.click("#confirm-ok")
    expect(page.locator("#secret-title")).to_contain_text("Key bob rotated")
    renewed = (page.text_content("#secret-value") or "").strip()
    secrets["bob, rotated"] = renewed
    assert call(renewed, "GET", "/api/me").json()["keyName"] == "bob"
    assert call(secrets["bob"], "GET", "/api/me").status_code == 200
    expect(keys.filter(has_text="bob").locator(".badge")).to_have_text("rotating")
    page.click("#secret-done")

    # Revoke the viewer's key: the service refuses it from then on, and the list hides it.
    keys.filter(has_text="wall").get_by_role("button", name="Revoke").click()
    expect(page.locator("#confirm-text")).to_contain_text("Revoke wall?")
    page.click("#confirm-ok")
    expect(keys.filter(has_text="wall")).to_have_count(0, timeout=TIMEOUT_MS)
    assert call(secrets["wall"], "GET", "/api/me").status_code == 401
    page.check("#show-revoked")
    expect(keys.filter(has_text="wall").locator(".badge")).to_have_text("revoked")

    # Quotas changed from the panel: only what changed is sent.
    page.click("#quota-edit")
    expect(page.locator("#q-gpus")).to_have_value("4")
    page.fill("#q-gpus", "2")
    page.click("#quota-save")
    expect(page.locator("#quota-gpus .quota-value")).to_have_text("1 of 2", timeout=TIMEOUT_MS)
    assert call(OWNER_KEY, "GET", "/api/teams/ml").json()["quotas"] == {
        "maxGpus": 2,
        "maxUsdPerHour": None,
        "monthlyBudgetUsd": 100,
    }

    # The audit trail: what the page just did, with its actor; a filter narrows it.
    audit = page.locator("#audit-card")
    expect(audit).to_be_visible()
    page.click("#audit-refresh")
    audit_rows = page.locator("#audit-rows tr")
    expect(audit_rows.filter(has_text="key.revoke")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(audit_rows.filter(has_text="key.revoke")).to_contain_text("alice")
    expect(audit_rows.filter(has_text="key.rotate")).to_have_count(1)
    expect(audit_rows.filter(has_text="team.update").first).to_be_visible()
    page.fill("#a-action", "key.create")
    page.click("#audit-filters button[type=submit]")
    expect(audit_rows).to_have_count(1 + 3, timeout=TIMEOUT_MS)  # grafana by alice, the first three by the owner
    expect(audit_rows.filter(has_text="alice")).to_have_count(1)  # the owner (key-...) made the other three
    viewer.shot("dashboard-team-and-audit")

    # The owner picks any team and sees the audit trail's team column.
    owner = Logged(browser, log)
    owner.page.goto(f"{service.url}/ui")
    owner.page.fill("#key-input", OWNER_KEY)
    owner.page.click("#key-form button")
    expect(owner.page.locator("#whoami")).to_contain_text("· owner", timeout=TIMEOUT_MS)
    expect(owner.page.locator("#team-pick-label")).to_be_visible()
    owner.page.select_option("#team-pick", label="ml")
    expect(owner.page.locator("#team-title")).to_have_text("ml", timeout=TIMEOUT_MS)
    expect(owner.page.locator("#key-rows tr")).to_have_count(3)  # wall is revoked: hidden
    expect(owner.page.locator("#audit-card th.col-team")).to_be_visible()
    owner.shot("dashboard-owner")

    # Never a key in a URL; the stream, like every call, carried it as a header.
    leaked = [url for url, _ in log for secret in secrets.values() if secret in url]
    assert leaked == []
    streams = [headers for url, headers in log if url.endswith("/api/events/stream")]
    assert streams and all(h.get("authorization", "").startswith("Bearer ") for h in streams)
    assert {h["authorization"] for h in streams} >= {f"Bearer {secrets['wall']}", f"Bearer {secrets['alice']}"}
    for watched in (viewer, owner):
        assert watched.alerts == []
        assert [e for e in watched.errors if "401" not in e] == []
