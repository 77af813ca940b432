"""The dashboard at /ui in a real browser: Debian's Chromium driven by Playwright against `novita-gpu serve`
(built-in emulator at EMULATOR_SPEED=20, instances ready in about a second).

Creates an instance through the page and sees it reach `ready` without a reload (the event stream), sees a
volume made meanwhile in the volumes panel and an instance's mount of it, stops and deletes the instance
(with the confirmation), checks that HTML in user data renders as text and never runs, and that with API
keys the page asks for one and shows only that key's instances. Screenshots go to test-artifacts/screenshots/
(SCREENSHOT_DIR overrides), for people to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).parents[2] / "test-artifacts" / "screenshots"))
HOSTILE = "<img src=x onerror=alert(1)>"
PRODUCT = "RTX 4090 24GB"
TIMEOUT_MS = 30_000
KEY_ONE = "dashboard-key-one-0123456789"
KEY_TWO = "dashboard-key-two-0123456789"
SMALL = {"productName": PRODUCT, "templateId": "ubuntu-ssh"}


def _require_browser() -> Any:
    """Playwright's sync API, or a skip (a failure in CI, REQUIRE_SERVICES=1) saying what is missing."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    return sync_api


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, launched by Playwright (or a skip saying what is missing)."""
    sync_api = _require_browser()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Watched:
    """A page whose dialogs (an injected alert would open one), script errors and console errors (CSP
    violations among them) are collected."""

    def __init__(self, browser: Any, width: int = 1280, **context: Any) -> None:
        # Each page is its own browser context: its own sessionStorage, localStorage and permissions.
        self.page = browser.new_page(viewport={"width": width, "height": 860}, **context)
        self.alerts: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda dialog: (self.alerts.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_create_watch_ready_stop_and_delete_from_the_page(processes: Processes, sqlite_url: str, browser: Any) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})
    page_headers = httpx.get(f"{service.url}/ui", timeout=5).headers
    csp = page_headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    # Names cannot hold HTML (the API refuses them); labels can, and the table shows them.
    labelled = httpx.post(
        f"{service.url}/api/instances",
        json={"name": "labelled", "productName": PRODUCT, "templateId": "ubuntu-ssh", "labels": {"note": HOSTILE}},
        timeout=10,
    )
    assert labelled.status_code == 201, labelled.text

    watched = Watched(browser)
    page = watched.page
    page.goto(f"{service.url}/ui")
    expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#f-product option")).not_to_have_count(0)
    page.select_option("#f-product", PRODUCT)
    page.select_option("#f-template", label=next(t for t in templates(service.url) if t.startswith("pytorch-jupyter")))
    page.fill("#f-name", "from-the-page")
    page.click("#create-button")
    row = page.locator("#rows tr", has_text="from-the-page")
    expect(row.locator(".badge")).to_have_text("creating", timeout=TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    assert page.evaluate("window.notReloaded") is True  # the stream updated it, not a reload
    expect(row).to_contain_text(PRODUCT)
    expect(row.locator(".autostop")).to_contain_text("in ")
    watched.shot("dashboard-ready")

    # A volume made while the page is open shows up and becomes available; an instance that mounts it shows
    # the mount, and the volume who mounts it.
    made = httpx.post(
        f"{service.url}/api/volumes", json={"name": "datasets", "region": "US-TX-04", "sizeGb": 50}, timeout=10
    )
    assert made.status_code == 201, made.text
    volume = page.locator("#volume-rows tr", has_text="datasets")
    expect(volume.locator(".badge")).to_have_text("available", timeout=TIMEOUT_MS)
    expect(volume).to_contain_text("US-TX-04")
    expect(volume.locator(".size")).to_have_text("50 GB")
    expect(volume).to_contain_text("$0.0730")  # USD per GB-month: the emulator's 10 units a GB an hour
    mounting = httpx.post(
        f"{service.url}/api/instances",
        json={**SMALL, "name": "mounting", "volumes": [{"volume": "datasets", "mountPoint": "/data"}]},
        timeout=10,
    )
    assert mounting.status_code == 201, mounting.text
    expect(page.locator("#rows tr", has_text="mounting").locator(".mount")).to_have_text(
        "datasets → /data", timeout=TIMEOUT_MS
    )
    expect(volume.locator(".mounted-by")).to_have_text("mounting → /data", timeout=TIMEOUT_MS)
    watched.shot("dashboard-volumes")

    row.get_by_role("button", name="History").click()
    expect(page.locator("#history-rows tr").first).to_contain_text("health_checking → ready")
    watched.shot("dashboard-history")

    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".badge")).to_have_text("stopped", timeout=TIMEOUT_MS)
    watched.shot("dashboard-stopped")

    # HTML typed into the form and HTML in a label both show as text; nothing runs.
    page.fill("#f-name", HOSTILE)
    page.click("#create-button")
    expect(page.locator("#create-error")).to_contain_text(f'"{HOSTILE}" was refused')
    expect(page.locator("#rows tr", has_text="labelled").locator(".chip")).to_have_text(f"note={HOSTILE}")
    assert page.locator("main img").count() == 0
    watched.shot("dashboard-hostile-text")

    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("Delete from-the-page?")
    watched.shot("dashboard-confirm-delete")
    page.click("#confirm-cancel")
    expect(row.locator(".badge")).to_have_text("stopped")
    row.get_by_role("button", name="Delete").click()
    page.click("#confirm-ok")
    # Terminated instances are hidden until asked for.
    expect(page.locator("#rows tr", has_text="from-the-page")).to_have_count(0, timeout=TIMEOUT_MS)
    page.check("#show-terminated")
    expect(row.locator(".badge")).to_have_text("terminated")

    assert watched.alerts == []
    assert [e for e in watched.errors if "status of 400" not in e] == []  # the refused name's 400 is expected


def templates(url: str) -> list[str]:
    body = httpx.get(f"{url}/api/templates", timeout=10).json()
    return [f"{t['name']} · {t['image']}" for t in body["templates"]]


def test_with_api_keys_the_page_asks_for_one_and_shows_only_its_instances(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20", "API_KEYS": f"{KEY_ONE},{KEY_TWO}"})
    for key, name in [(KEY_ONE, "ones"), (KEY_TWO, "twos")]:
        created = httpx.post(
            f"{service.url}/api/instances",
            json={"name": name, "productName": PRODUCT, "templateId": "ubuntu-ssh"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
    watched = Watched(browser)
    page = watched.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{service.url}/ui")
    expect(page.locator("#key-panel")).to_be_visible()
    page.fill("#key-input", "not-a-key")
    page.click("#key-form button")
    expect(page.locator("#key-error")).to_contain_text("refused")
    watched.shot("dashboard-api-key")
    page.fill("#key-input", KEY_ONE)
    page.click("#key-form button")
    expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)
    expect(page.locator("#rows tr", has_text="ones")).to_have_count(1)
    expect(page.locator("#rows tr", has_text="twos")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('novita-gpu.api-key')") == KEY_ONE
    assert page.evaluate("localStorage.length") == 0
    assert not [url for url in requests if KEY_ONE in url]  # the key never goes into a URL
    assert watched.alerts == []
    assert [e for e in watched.errors if "401" not in e] == []  # the refused key's 401 is expected
