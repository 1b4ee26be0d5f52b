"""The Prompt tab's metrics in real Chromium: production and candidate rows with their SVG
charts, switching the time window, and the table scrolling inside its card on a phone."""

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import User
from app.prompts import services as prompt_services
from tests.browser.helpers import horizontal_overflow, login
from tests.factories import make_project, make_user
from tests.traffic import add_conversation, add_rows, reply, version_id

pytestmark = pytest.mark.browser


def seed(app):
    """v1 production, v2 candidate (both with replies in the last hours, v2 one by a fallback
    provider; v1 one more 30 hours ago), v3 only two days ago."""
    owner = make_user(app, email="ada@example.com", name="Ada")
    project_id = make_project(app, owner, name="Support bot", system_prompt="Be terse.")
    with app.app_context():
        user = db.session.get(User, owner.id)
        prompt_services.create_version(
            user=user, project_id=project_id, content="Be kind.", candidate=True, activate=False
        )
        prompt_services.create_version(
            user=user, project_id=project_id, content="Be brief.", activate=False
        )
        v1, v2, v3 = (version_id(project_id, n) for n in (1, 2, 3))
        chat = add_conversation(project_id)
        now = datetime.now(UTC)
        rows = []
        for hours in range(1, 20):
            at = now - timedelta(hours=hours, minutes=5)
            timing = {"ttft_ms": 200 + hours * 10, "total_ms": 1500 + hours}
            usage = {"tokens_in": 300, "tokens_out": 120}
            rows.append(reply(chat, v1, at, **timing, **usage, rating=1 if hours % 3 else -1))
            if hours % 2:
                seen = {"tokens_in": 280, "tokens_out": 90, "fallback": hours == 5}
                rows.append(reply(chat, v2, at, ttft_ms=150, total_ms=900, **seen))
        rows.append(reply(chat, v1, now - timedelta(hours=2), status="error"))
        # A day earlier still, so the 7-day lines have two days with data at any time of day
        # (one day alone draws a dot, not a path).
        rows.append(reply(chat, v1, now - timedelta(hours=30), ttft_ms=260, total_ms=1530))
        rows.append(reply(chat, v3, now - timedelta(days=2), ttft_ms=400, total_ms=3000))
        add_rows(rows)
    return owner, project_id


def test_metrics_table_compares_production_and_candidate(app, live_server, page, new_page, shot):
    owner, project_id = seed(app)
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project_id}/prompts")

    table = page.locator("#metrics table.metrics")
    expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    assert [rows.nth(i).get_attribute("data-version") for i in range(rows.count())] == [
        "1",
        "2",
        "3",
    ]
    assert rows.nth(0).locator(".badge").inner_text() == "production"
    assert rows.nth(1).locator(".badge").inner_text() == "candidate"
    assert rows.nth(2).locator(".badge").count() == 0
    assert rows.nth(0).locator("td").nth(0).locator(".metric-value").inner_text() == "21"
    assert rows.nth(1).locator("td").nth(0).locator(".metric-value").inner_text() == "10"
    charts = table.locator("svg.spark[role=img]")
    assert charts.count() == 3 * 9
    label = rows.nth(0).locator("svg.spark").first.get_attribute("aria-label")
    assert label.startswith("v1 Replies per day: lowest 0, highest ")
    # The charts are drawn: a line has a path with a real length, bars have a height.
    length = (
        rows.nth(0).locator("td").nth(4).locator("svg path").evaluate("p => p.getTotalLength()")
    )
    assert length > 0
    assert rows.nth(0).locator("td").nth(0).locator("svg rect").count() >= 1
    assert page.locator(".window-links a[aria-current=true]").inner_text() == "7 d"
    shot(page, "prompt-metrics", full_page=True)

    # The last 24 hours, by hour: v3's only reply (two days old) drops out.
    page.click(".window-links >> text=24 h")
    page.wait_for_url("**/prompts?window=24h#metrics")
    assert page.locator(".window-links a[aria-current=true]").inner_text() == "24 h"
    expect(rows).to_have_count(2)
    label = rows.nth(1).locator("svg.spark").first.get_attribute("aria-label")
    assert label.startswith("v2 Replies per hour:")
    page.click(".window-links >> text=All")
    page.wait_for_url("**/prompts?window=all#metrics")
    expect(rows).to_have_count(3)
    assert page.problems == []

    # A phone: the page does not scroll sideways; the table scrolls inside its card.
    phone = new_page(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    login(phone, live_server, owner)
    phone.goto(f"{live_server}/projects/{project_id}/prompts#metrics")
    assert horizontal_overflow(phone) == 0
    scroller = phone.locator(".metrics-scroll")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")
    scroller.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    assert scroller.evaluate("el => el.scrollLeft") > 0
    shot(phone, "prompt-metrics-phone")
    assert phone.problems == []
