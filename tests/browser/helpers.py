"""Small actions shared by the browser tests."""

from __future__ import annotations


def login(page, live_server, user):
    page.goto(live_server + "/login")
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.click("main button[type=submit]")
    page.wait_for_url(live_server + "/")


def chat_ready(page):
    """The chat module has bound its handlers (the composer is in the page before that)."""
    page.wait_for_selector("#chat[data-ready]", state="attached")


def watch_stream(page, bubble, *, polls: int = 200, every_ms: int = 25) -> list[int]:
    """Sample the length of a reply while it streams; returns the lengths seen."""
    lengths = []
    for _ in range(polls):
        lengths.append(len(bubble.locator(".msg-body").inner_text()))
        if "streaming" not in (bubble.get_attribute("class") or ""):
            break
        page.wait_for_timeout(every_ms)
    return lengths


def wait_until(page, expression: str, timeout_ms: int = 10_000):
    """Poll a JavaScript expression until it is truthy; returns its value.

    ``page.wait_for_function`` cannot be used: it evaluates its predicate with ``eval`` inside
    the page, which our Content-Security-Policy (no 'unsafe-eval') refuses. ``page.evaluate``
    goes through the DevTools protocol, which the policy does not govern."""
    waited = 0
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if waited >= timeout_ms:
            raise AssertionError(f"timed out after {timeout_ms} ms waiting for: {expression}")
        page.wait_for_timeout(25)
        waited += 25


def reply_done(page):
    """Wait until no reply is streaming and the page has ended its turn (Stop is hidden again;
    the message box itself stays editable while a reply streams)."""
    wait_until(
        page,
        "!document.querySelector('.msg.streaming') && document.getElementById('stop').hidden",
    )


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 = no horizontal scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


UNLABELLED = """[...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
  .filter(el => !el.labels?.length && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML)"""


def unlabelled_inputs(page) -> list[str]:
    return page.evaluate(UNLABELLED)
