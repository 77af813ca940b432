"""The dashboard's usability fixes, in Debian's Chromium against `novita-gpu serve`:

- until the first list answer arrives the page says it is loading, never "No instances yet";
- the GPU picker starts on the cheapest product that can be had now, or on the user's last choice;
- ids, names, prices and labels stay on one line (truncated with an ellipsis, the whole value in the
  tooltip, the id copied on click), at 1280 and 800 px, and nothing overflows the page;
- Escape closes the confirmation dialog, then the history panel; focus that was in them goes back to
  the row's button that opened them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import ServiceProcess, wait_for
from tests.e2e.test_dashboard import PRODUCT, TIMEOUT_MS, Watched, chromium

pytestmark = pytest.mark.e2e

EMPTY_TEXT = "No instances yet"
LONG_NAME = "a-rather-long-instance-name-that-has-no-spaces-in-it-0123456789"
LONG_LABEL = ("owner", "someone.with.a.rather.long.address@research.example.com")

# For each visible element matching a selector: its text, how many lines it is laid out on, whether it is cut
# (scrollWidth over clientWidth) and its tooltip. Lines are counted from the text's boxes.
LAYOUT = """(selector) => [...document.querySelectorAll(selector)].filter((n) => n.checkVisibility()).map((node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  const tops = [...range.getClientRects()].filter((r) => r.width > 0).map((r) => r.top).sort((a, b) => a - b);
  let lines = tops.length ? 1 : 0;
  for (let i = 1; i < tops.length; i++) if (tops[i] - tops[i - 1] > 6) lines++;
  return { text: node.textContent, lines, cut: node.scrollWidth > node.clientWidth, title: node.title };
})"""

# Records whether the empty-state text was ever visible, from before the page's own script runs.
SPY_ON_EMPTY = """
window.sawEmpty = false;
const look = () => {
  const node = document.getElementById('empty');
  if (node && node.checkVisibility() && node.textContent.includes('No instances yet')) window.sawEmpty = true;
};
new MutationObserver(look).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def create(service: ServiceProcess, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "productName": PRODUCT, "templateId": "ubuntu-ssh", **fields}
    answer = httpx.post(f"{service.url}/api/instances", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    view: dict[str, Any] = answer.json()
    return view


def is_list_page(url: str) -> bool:
    return "/api/instances?" in url and "limit=100" in url


def test_the_page_says_loading_until_the_list_arrives_and_empty_only_when_it_is(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})

    # Truly empty: the empty state shows once the (empty) list has arrived.
    empty = Watched(browser).page
    empty.goto(f"{service.url}/ui")
    expect(empty.locator("#empty")).to_contain_text(EMPTY_TEXT, timeout=TIMEOUT_MS)
    empty.close()

    created = [create(service, name)["instanceId"] for name in ("first", "second")]

    def all_ready() -> bool | None:
        views = [httpx.get(f"{service.url}/api/instances/{i}", timeout=10).json() for i in created]
        return True if all(v["status"] == "ready" for v in views) else None

    wait_for(all_ready, timeout=60, what="both ready")  # no more events: only the list can show them
    watched = Watched(browser)
    page = watched.page
    page.add_init_script(SPY_ON_EMPTY)
    held: list[Any] = []  # list answers wait here while `holding`, until the test lets them through
    holding = True

    def hold(route: Any) -> None:
        if holding:
            held.append(route)
        else:
            route.continue_()

    page.route(is_list_page, hold)
    with page.expect_request(lambda request: is_list_page(request.url), timeout=TIMEOUT_MS):
        page.goto(f"{service.url}/ui")
    expect(page.locator("#empty")).to_have_text("Loading instances…")
    expect(page.locator("#rows tr")).to_have_count(0)
    watched.shot("dashboard-loading")

    holding = False
    for route in held:
        route.continue_()
    expect(page.locator("#rows tr")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(page.locator("#empty")).to_be_hidden()
    assert page.evaluate("window.sawEmpty") is False
    assert watched.errors == [] and watched.alerts == []


def cheapest_available(products: list[dict[str, Any]]) -> str:
    prices = {
        p["productName"]: min(o["pricePerHour"] for o in p["offers"] if o["available"])
        for p in products
        if any(o["available"] for o in p["offers"])
    }
    return min(prices, key=lambda name: prices[name])


def test_the_gpu_picker_starts_on_the_cheapest_available_product_then_on_the_last_choice(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})
    products = httpx.get(f"{service.url}/api/products", timeout=10).json()["products"]
    assert products[0]["productName"] != cheapest_available(products)  # not simply the first one

    page = Watched(browser).page
    page.goto(f"{service.url}/ui")
    expect(page.locator("#f-product")).to_have_value(cheapest_available(products), timeout=TIMEOUT_MS)
    page.close()

    # A catalog where the cheapest product is sold out and another one's lowest price is of an offer
    # that is sold out: neither is the default.
    by_name = {p["productName"]: p for p in products}
    for offer in by_name["L4 24GB"]["offers"]:
        offer["available"] = False
    by_name["L4 24GB"]["available"] = False
    a6000 = by_name["RTX A6000 48GB"]
    a6000["offers"].insert(0, {**a6000["offers"][0], "pricePerHour": 0.05, "available": False})
    a6000["cheapestPricePerHour"] = 0.05
    assert cheapest_available(products) == "RTX 3090 24GB"

    def changed_catalog(route: Any) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, body=json.dumps({**answer.json(), "products": products}))

    watched = Watched(browser)
    page = watched.page
    page.route("**/api/products", changed_catalog)
    page.goto(f"{service.url}/ui")
    expect(page.locator("#f-product")).to_have_value("RTX 3090 24GB", timeout=TIMEOUT_MS)
    expect(page.locator("#f-product option[value='L4 24GB']")).to_be_disabled()
    expect(page.locator("#f-product option[value='RTX A6000 48GB']")).to_have_text("RTX A6000 48GB · from $0.49/h")

    # The user's choice is remembered over a reload.
    page.select_option("#f-product", PRODUCT)
    page.reload()
    expect(page.locator("#f-product option")).not_to_have_count(0, timeout=TIMEOUT_MS)
    expect(page.locator("#f-product")).to_have_value(PRODUCT)
    assert watched.errors == [] and watched.alerts == []


@pytest.mark.parametrize("width", [1280, 1024, 800])
def test_ids_names_and_prices_stay_on_one_line(processes: Processes, sqlite_url: str, browser: Any, width: int) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})
    long_one = create(service, LONG_NAME, labels=dict([LONG_LABEL]), gpuNum=2)
    create(service, "short")
    watched = Watched(browser, width=width, permissions=["clipboard-read", "clipboard-write"])
    page = watched.page
    page.goto(f"{service.url}/ui")
    for name in (LONG_NAME, "short"):
        expect(page.locator("#rows tr", has_text=name).locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    watched.shot(f"dashboard-table-{width}")

    for selector in ("#rows .id", "#rows .iname", "#rows td.num", "#rows .badge", "#rows .chip", ".stat-value"):
        laid_out = page.evaluate(LAYOUT, selector)
        assert laid_out, selector
        for item in laid_out:
            assert item["lines"] == 1, (selector, item)
            if item["cut"]:  # what the ellipsis hides is in the tooltip
                assert item["title"] == item["text"], (selector, item)
    ids = page.evaluate(LAYOUT, "#rows .id")
    assert {item["title"] for item in ids} == {item["text"] for item in ids}  # every id has its tooltip

    # Nothing sticks out of the page or out of the instance card.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    card = page.locator("section.card", has=page.locator("#rows")).bounding_box()
    for cell in page.locator("#rows td, thead th").all():
        box = cell.bounding_box()
        if box is not None and box["width"] > 0:
            assert box["x"] + box["width"] <= card["x"] + card["width"], cell.inner_text()

    # A click on an id copies it.
    page.locator("#rows tr", has_text=LONG_NAME).locator(".id").click()
    expect(page.locator("#toast")).to_have_text(f"Copied {long_one['instanceId']}")
    assert page.evaluate("navigator.clipboard.readText()") == long_one["instanceId"]
    assert watched.errors == [] and watched.alerts == []


def test_escape_closes_the_dialog_then_the_history_and_focus_goes_back(
    processes: Processes, sqlite_url: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    service = processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})
    create(service, "kept")
    watched = Watched(browser, width=800)
    page = watched.page
    page.goto(f"{service.url}/ui")
    row = page.locator("#rows tr", has_text="kept")
    expect(row.locator(".badge")).to_have_text("ready", timeout=TIMEOUT_MS)
    history_button = row.get_by_role("button", name="History")
    delete_button = row.get_by_role("button", name="Delete")

    history_button.click()
    expect(page.locator("#history")).to_be_visible()
    expect(page.locator("#history-rows tr").first).to_contain_text("ready")
    watched.shot("dashboard-history-800")
    assert {item["lines"] for item in page.evaluate(LAYOUT, "#history-rows .at")} == {1}
    page.keyboard.press("Escape")
    expect(page.locator("#history")).to_be_hidden()
    expect(history_button).to_be_focused()

    # With both open, Escape closes the dialog first (deleting nothing), then the history.
    history_button.click()
    expect(page.locator("#history")).to_be_visible()
    delete_button.click()
    expect(page.locator("#confirm")).to_be_visible()
    watched.shot("dashboard-confirm-800")
    page.keyboard.press("Escape")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#history")).to_be_visible()
    expect(delete_button).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#history")).to_be_hidden()
    expect(delete_button).to_be_focused()  # focus outside the panel stays where it is
    expect(row.locator(".badge")).to_have_text("ready")

    # The Close button gives focus back the same way.
    history_button.click()
    page.click("#history-close")
    expect(page.locator("#history")).to_be_hidden()
    expect(history_button).to_be_focused()
    assert watched.errors == [] and watched.alerts == []
