"""The console in a real browser: Playwright for Python driving Debian's Chromium (``/usr/bin/chromium``).

A rejected sign-in, then sign-in; the queue filtered to a run; claim an item, correct the field that
failed, see the check still failing without a reload, fix it, approve; an item resolved with the
keyboard alone; bulk approve; the dashboard. Screenshots of the queue, an item page and the
dashboard are saved in the test's folder (``tmp_path/screenshots``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bpo import review, users
from bpo.settings import Settings
from tests.test_review import item_id, keep_open, make_item, store

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a long enough password"
FLAGGED = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = "Chromium is not installed (apt-get install chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def _sign_in(page: Page, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')


def test_an_agent_corrects_and_approves_an_item_in_the_browser(browser: Browser, console_server: tuple[str, Settings],
                                                              tmp_path: Path) -> None:
    base, settings = console_server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    name = f"alice-{uuid.uuid4().hex[:6]}"
    users.add_user(settings, name, PASSWORD, "agent")
    run_id = str(uuid.uuid4())
    url = settings.ops_database_url or ""
    store(url, [make_item(run_id, 2, email="two-at-example.com"), make_item(run_id, 3, email="three-at-example.com")])
    keep_open(url, run_id)
    first, second = item_id(settings, run_id, 2), item_id(settings, run_id, 3)
    page = browser.new_page()
    errors: list[str] = []
    # any script error or failed request, but the refused sign-in's own 401 that the test asks for
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "status of 401" not in m.text
            else None)
    page.on("request", lambda r: errors.append(f"request to {r.url}") if not r.url.startswith(base) else None)

    _sign_in(page, base, name, "not the password")
    expect(page.locator(".error")).to_contain_text("wrong name or password")
    _sign_in(page, base, name)
    expect(page.locator("h1")).to_contain_text("Queue")

    page.goto(f"{base}/?run={run_id}")
    expect(page.locator("table.queue tbody tr")).to_have_count(3)
    page.screenshot(path=str(shots / "queue.png"), full_page=True)

    page.click(f'a[href="/items/{first}"]')
    expect(page.locator('input[name="field.email"]')).to_have_attribute("readonly", "")
    page.click("#claim")
    email = page.locator('input[name="field.email"]')
    email.fill("still-not-an-email")
    # checked by the server, no reload (the first check may wait for the server's Great Expectations import)
    expect(page.locator("#live")).to_contain_text("still fail", timeout=30_000)
    expect(page.locator('td[data-checks-for="email"]')).to_contain_text("must have an @-sign")
    email.fill("Two@Example.com")
    email.press("Enter")
    expect(page.locator("#live")).to_contain_text("passes every check")
    page.screenshot(path=str(shots / "item.png"), full_page=True)
    page.uncheck('input[name="then"]')
    page.click("#approve")
    expect(page.locator(".message")).to_contain_text(f"item {first} approved")
    decided = review.get_item(settings, first)
    assert decided.status == "approved" and decided.decision["email"] == "two@example.com"
    assert decided.decided_by == name

    # the keyboard alone: Alt+N claims the next item, the failing field has the focus, Enter, Ctrl+Enter
    page.keyboard.press("Alt+n")
    expect(page.locator("h1")).to_contain_text(f"#{second}")
    expect(page.locator('input[name="field.email"]')).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type("three@example.com")
    page.keyboard.press("Enter")
    expect(page.locator("#live")).to_contain_text("passes every check")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda u: "/items/" not in u or f"/items/{second}" not in u)
    assert review.get_item(settings, second).status == "approved"

    page.goto(f"{base}/dashboard")
    expect(page.locator("svg.chart")).to_have_count(4)
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    assert not errors, errors
    assert all((shots / f).stat().st_size > 1000 for f in ("queue.png", "item.png", "dashboard.png"))


def test_bulk_approve_in_the_browser(browser: Browser, console_server: tuple[str, Settings]) -> None:
    base, settings = console_server
    name = f"bob-{uuid.uuid4().hex[:6]}"
    users.add_user(settings, name, PASSWORD, "agent")
    run_id = str(uuid.uuid4())
    url = settings.ops_database_url or ""
    store(url, [make_item(run_id, 2, failed_checks=FLAGGED), make_item(run_id, 3, email="three-at-example.com")])
    keep_open(url, run_id)
    passing, failing = item_id(settings, run_id, 2), item_id(settings, run_id, 3)
    page = browser.new_page()
    _sign_in(page, base, name)
    page.goto(f"{base}/?run={run_id}")
    page.check(f'input[name="ids"][value="{passing}"]')
    page.check(f'input[name="ids"][value="{failing}"]')
    page.click('button[name="action"][value="approve"]')
    expect(page.locator(".message")).to_contain_text("1 decided, 1 still failing")
    assert review.get_item(settings, passing).status == "approved"
    assert review.get_item(settings, failing).status == "open"
