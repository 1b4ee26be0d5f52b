"""The Compare tab in real Chromium against the fake provider: two versions (one under another
model) answer one message, both columns stream at the same time, "Left is better" (and a 👍 on
one answer) is stored and shown again after a reload, each column opens its pinned
conversation; a refused comparison says why beside its side; the page fits a 375 px screen
with the columns stacked."""

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import horizontal_overflow, login, wait_until
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

# The two answers (which side gets which depends on which request reaches the fake first).
ANSWERS = {
    "Refunds are issued within **14 days** of purchase. Open Orders, choose the order and "
    "press Request refund; the money is back on your card in 3 to 5 working days.",
    "You can get a refund within 14 days. Go to **Orders → Request refund**. Questions? Write "
    "to support and we answer within a day.",
}


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def project_id(app, client, owner):
    """v1 on gpt-4o-mini, then v2 (production) on gpt-4.1-mini."""
    pid = make_project(app, owner, name="Support bot", system_prompt="You are terse.")
    v2 = {"content": "You are terse and kind.", "model": "gpt-4.1-mini", "note": "Kinder"}
    resp = client.post(f"/api/projects/{pid}/prompts", json=v2, headers=owner.headers)
    assert resp.status_code == 201
    return pid


def ready(page):
    page.wait_for_selector("#compare-result[data-ready]", state="attached")


def test_compare_two_versions_stream_together_and_keep_the_preference(
    app, fake, live_server, page, owner, project_id, shot
):
    fake.script("responses", *(Scenario(text=text, token_delay_ms=50) for text in ANSWERS))
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}")
    page.click("nav.tabs >> text=Compare")
    page.wait_for_url(f"{live_server}/projects/{project_id}/compare")
    ready(page)
    assert page.locator("nav.tabs a[aria-current=page]").inner_text() == "Compare"
    assert page.locator("#compare-result").is_hidden()
    assert page.is_visible("text=No comparisons yet.")
    # Production on the left by default; the model picker names the version's own model.
    assert page.input_value("#left-version") == "2"
    assert page.locator("#left-version option:checked").inner_text() == "v2 · production — Kinder"
    assert page.locator("#left-model option").first.inner_text() == "Version's: gpt-4.1-mini"
    page.select_option("#left-version", "1")
    assert page.locator("#left-model option").first.inner_text() == "Version's: gpt-4o-mini"
    page.select_option("#left-version", "2")
    page.select_option("#right-version", "1")
    page.select_option("#right-model", "gpt-4o")

    page.fill("#compare-message", "How do refunds work?")
    page.click("#compare-send")
    page.wait_for_selector("#cmp-left .msg-assistant")
    assert page.is_visible("#compare-stop")
    # Both columns are written at the same time: each has text while both still stream.
    wait_until(
        page,
        """['left', 'right'].every((side) => {
             const b = document.querySelector(`#cmp-${side} .msg-assistant`);
             return b && b.classList.contains('streaming')
               && b.querySelector('.msg-body').textContent.length > 0;
           })""",
    )
    assert page.locator("#compare-judge").is_hidden()  # judged once both are in
    shown = set()
    for side in ("left", "right"):
        expect(page.locator(f"#cmp-{side} .msg-assistant")).to_have_attribute(
            "data-status", "complete"
        )
        shown.add(page.locator(f"#cmp-{side} .msg-body").inner_text().strip())
    assert shown == {text.replace("**", "") for text in ANSWERS}  # Markdown rendered
    expect(page.locator("#compare-judge")).to_be_visible()
    assert page.is_hidden("#compare-stop")
    assert page.inner_text("#compare-asked") == "How do refunds work?"
    assert page.inner_text("#cmp-left-config") == "v2 · gpt-4.1-mini"
    assert page.inner_text("#cmp-right-config") == "v1 · gpt-4o"
    assert "prompt v2" in page.inner_text("#cmp-left .msg-info")
    assert "prompt v1" in page.inner_text("#cmp-right .msg-info")
    assert sorted(c.json["model"] for c in fake.calls("responses")) == ["gpt-4.1-mini", "gpt-4o"]
    assert "c=" in page.url

    item = page.locator("#compare-recent .cmp-item").first
    assert item.locator(".cmp-item-message").inner_text() == "How do refunds work?"
    assert " ".join(item.locator(".cmp-item-sides").inner_text().split()) == (
        "v2 · gpt-4.1-mini vs v1 · gpt-4o"
    )
    assert item.locator(".cmp-choice").inner_text() == "Not judged"

    left_better = page.get_by_role("button", name="Left is better")
    left_better.click()
    expect(left_better).to_have_attribute("aria-pressed", "true")
    expect(item.locator(".cmp-choice")).to_have_text("Left better")
    assert page.get_by_role("button", name="Tie").get_attribute("aria-pressed") == "false"
    # Each answer is a reply like any other: it takes 👍/👎 here too.
    thumbs_up = page.locator("#cmp-left .feedback-vote[data-vote=up]")
    thumbs_up.click()
    expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the image
    shot(page, "compare", full_page=True)

    page.reload()
    ready(page)
    expect(page.get_by_role("button", name="Left is better")).to_have_attribute(
        "aria-pressed", "true"
    )
    item = page.locator("#compare-recent .cmp-item").first
    assert item.locator(".cmp-choice").inner_text() == "Left better"
    assert item.locator("a").get_attribute("aria-current") == "page"
    assert page.locator(".cmp-column .msg-assistant[data-status=complete]").count() == 2
    expect(page.locator("#cmp-left .feedback-vote[data-vote=up]")).to_have_attribute(
        "aria-pressed", "true"
    )
    # The pickers start on what was compared.
    assert page.input_value("#right-version") == "1"
    assert page.input_value("#right-model") == "gpt-4o"

    # Changeable: a tie now.
    page.get_by_role("button", name="Tie").click()
    expect(item.locator(".cmp-choice")).to_have_text("Tie")
    expect(page.get_by_role("button", name="Left is better")).to_have_attribute(
        "aria-pressed", "false"
    )

    # Each answer is a normal conversation of the chat, pinned to its side.
    page.click("#cmp-right-open")
    page.wait_for_url(f"{live_server}/projects/{project_id}?c=*")
    assert page.inner_text("#chat-title") == "How do refunds work? (compare: v1 · gpt-4o)"
    assert page.locator(".msg").count() == 2
    assert page.problems == []


def test_the_same_side_twice_is_refused_beside_it(app, fake, live_server, page, owner, project_id):
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/compare?left=1&right=1")
    ready(page)
    page.fill("#compare-message", "Hello?")
    page.keyboard.press("Enter")
    expect(page.locator("#right-error")).to_have_text(
        "Choose another version or another model than the left side."
    )
    assert page.input_value("#compare-message") == "Hello?"  # kept, to send again
    assert page.locator("#compare-result").is_hidden()
    assert fake.requests == []
    page.select_option("#right-model", "gpt-4o")
    page.click("#compare-send")
    expect(page.locator("#cmp-right .msg-assistant")).to_have_attribute("data-status", "complete")
    assert page.is_hidden("#right-error")
    # Chromium logs the refused request itself (the 422 above); nothing else may appear.
    page.problems.remove(
        "console: Failed to load resource: the server responded with a status of 422 "
        "(UNPROCESSABLE ENTITY)"
    )
    assert page.problems == []


def test_the_compare_tab_fits_a_375px_screen(
    app, fake, live_server, new_page, owner, project_id, shot
):
    page = new_page(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/compare")
    ready(page)
    page.fill("#compare-message", "A question with a rather long text " * 4)
    page.click("#compare-send")
    expect(page.locator("#compare-judge")).to_be_visible()
    left = page.locator("#cmp-left").bounding_box()
    right = page.locator("#cmp-right").bounding_box()
    assert right["y"] >= left["y"] + left["height"]  # stacked, not side by side
    assert horizontal_overflow(page) == 0
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "compare-mobile", full_page=True)
    assert page.problems == []
