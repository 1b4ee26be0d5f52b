"""Real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against the app
served by a real threaded Werkzeug server on a free loopback port.

One browser for the whole session; each test gets a fresh app and database (the ``app``
fixture), its own server thread and a fresh browser context (cookies, localStorage). Every page
records what must never happen: a dialog (an ``alert`` from injected markup), an uncaught
exception, a console error. Tests end with ``assert page.problems == []``.

Screenshots: ``shot(page, "name")`` always takes one (so the code path is exercised); it is
written to ``docs/screenshots/<name>.png`` only when ``SCREENSHOTS=1`` (``make screenshots``), so
an ordinary test run leaves the tracked images alone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1200, "height": 850}


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def watch(page):
    """Record dialogs, page errors and console errors on ``page.problems``."""
    problems: list[str] = []

    def on_dialog(dialog):
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def on_console(msg):
        if msg.type == "error":
            problems.append(f"console: {msg.text}")

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", on_console)
    page.problems = problems
    return page


@pytest.fixture
def new_page(browser):
    """Open a page in a fresh context: ``new_page(viewport=..., color_scheme="dark")``."""
    contexts = []

    def open_(**options):
        options.setdefault("viewport", DESKTOP)
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return watch(page)

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page(permissions=["clipboard-read", "clipboard-write"])


@pytest.fixture
def shot(tmp_path):
    save = os.environ.get("SCREENSHOTS") == "1"

    def take(page, name: str, **options):
        target = DOCS_SHOTS if save else tmp_path
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), animations="disabled", **options)

    return take
