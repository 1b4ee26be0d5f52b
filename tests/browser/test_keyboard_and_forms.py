"""The account menu and refused forms, with the keyboard, in real Chromium: the menu closes on
Escape (wherever the focus is) and when the focus leaves it; a refused form keeps the email,
focuses the field to fix and ties each error to its field."""

from __future__ import annotations

import pytest

from tests.browser.helpers import login, wait_until
from tests.factories import make_user

pytestmark = pytest.mark.browser


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


def menu_open(page) -> bool:
    return page.evaluate("document.getElementById('user-menu').open")


def test_the_account_menu_closes_on_escape_and_when_focus_leaves(live_server, page, owner):
    login(page, live_server, owner)
    summary = page.locator("#user-menu summary")
    # Opened with the mouse, then Escape with the focus on an item inside.
    summary.click()
    assert menu_open(page)
    page.focus("#user-menu .menu-item >> nth=0")
    page.keyboard.press("Escape")
    assert not menu_open(page)
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    # Opened, focus moved to the page (a click on nothing focusable), then Escape.
    summary.click()
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Escape")
    assert not menu_open(page)
    # Opened with the keyboard, then Tab past its last item: it closes as the focus leaves.
    summary.focus()
    page.keyboard.press("Enter")
    assert menu_open(page)
    items = page.locator("#user-menu .menu-item").count()
    for _ in range(items + 1):
        page.keyboard.press("Tab")
    wait_until(page, "!document.getElementById('user-menu').contains(document.activeElement)")
    assert not menu_open(page)


def test_a_refused_sign_up_focuses_the_first_field_to_fix(live_server, page):
    page.goto(live_server + "/register")
    page.fill("#email", "grace@example.com")
    page.fill("#name", "Grace")
    page.fill("#password", "short")
    page.fill("#confirm", "short")
    page.click("main button[type=submit]")
    page.wait_for_selector(".has-error")
    assert page.input_value("#email") == "grace@example.com"  # kept
    assert page.input_value("#name") == "Grace"
    # The first invalid field, not the email (once the page's script has run).
    wait_until(page, "document.activeElement.id === 'password'", timeout_ms=3000)
    assert page.get_attribute("#password", "aria-invalid") == "true"
    described = page.get_attribute("#password", "aria-describedby")
    assert "8 characters" in page.inner_text(f"#{described}")


def test_a_refused_login_keeps_the_email_and_focuses_the_password(live_server, page, owner):
    page.goto(live_server + "/login")
    page.fill("#email", owner.email)
    page.fill("#password", "not the password")
    page.click("main button[type=submit]")
    alert = page.locator("main .alert-error[role=alert]")
    alert.wait_for()
    assert page.input_value("#email") == owner.email
    assert page.input_value("#password") == ""  # never sent back to the browser
    wait_until(page, "document.activeElement.id === 'password'", timeout_ms=3000)
