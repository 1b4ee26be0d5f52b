"""Every page scanned by axe-core in real Chromium, in the light and the dark theme: zero WCAG 2.1
A/AA violations (contrast included, as the browser computes it: opacity, overlays and all).

axe-core is vendored in ``tests/browser/vendor/axe-core/`` with its licence (MPL-2.0); the scan
runs in a context that bypasses the Content-Security-Policy only so the test can add axe's own
script tag, which changes nothing in how the page itself loads or runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.helpers import chat_ready, horizontal_overflow, login, wait_until
from tests.factories import (
    make_conversation,
    make_file,
    make_project,
    make_share_link,
    make_user,
    make_version,
)
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
RUN = """(tags) => axe.run(document, { runOnly: { type: "tag", values: tags } }).then((r) =>
  r.violations.map((v) => ({
    id: v.id,
    help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " :: " + n.failureSummary),
  })))"""


def violations(page) -> list[dict]:
    page.add_script_tag(content=AXE)
    return page.evaluate(RUN, TAGS)


def by_rule(found: dict[str, list[dict]]) -> dict[str, dict]:
    """``{rule: {"help", "pages", "nodes"}}``: each broken rule once, with where it broke."""
    rules: dict[str, dict] = {}
    for path, broken in found.items():
        for v in broken:
            rule = rules.setdefault(v["id"], {"help": v["help"], "pages": [], "nodes": set()})
            rule["pages"].append(path)
            rule["nodes"].update(v["nodes"])
    return rules


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada Lovelace")


@pytest.fixture
def project(app, owner, fake):
    """A project with two versions, a conversation holding a regenerated (folded) answer and a
    failed reply, and a file: the states a page can show."""
    from app.chat import services as chat_services
    from app.chat import start as start_turn
    from app.errors import ProviderFailed
    from app.extensions import db
    from app.models import User

    project = make_project(app, owner, name="Support bot", description="Answers questions.")
    make_version(app, owner, project, "You are terse.")
    refused = Scenario(status=401, error="invalid_api_key")
    fake.script("responses", Scenario(text="**Thirty** days.\n\n```python\nprint(1)\n```"))
    fake.script("responses", Scenario(text="| a | b |\n|---|---|\n| 1 | 2 |"), refused)
    fake.script("chat", Scenario(status=401, error="missing"))
    conversation = make_conversation(app, owner, project, message="How long do refunds take?")
    with app.app_context():
        user = db.session.get(User, owner.id)
        # A regenerated reply (two versions: a ‹ 2/2 › switch), then a failed one.
        for message in (None, "And exchanges?"):
            if message is None:
                turn = start_turn.regenerate(user=user, conversation_id=conversation)
            else:
                turn = start_turn.send(
                    user=user, project_id=project, conversation_id=conversation, message=message
                )
            try:
                chat_services.complete_turn(turn)
            except ProviderFailed:
                assert message == "And exchanges?"  # stored as a failed reply
    make_file(app, owner, project, name="handbook.md", content=b"# Handbook\n\nBe kind.")
    make_share_link(app, owner, project, allowed_origins=["https://example.com"], monthly_tokens=9)
    return project, conversation


def logged_in_pages(project: int, conversation: int, file_id: int) -> list[str]:
    base = f"/projects/{project}"
    return [
        "/",
        "/projects/create",
        f"{base}?c={conversation}",
        base,
        f"{base}/prompts",
        f"{base}/prompts/1",
        f"{base}/prompts/diff?a=1&b=2",
        f"{base}/compare",
        f"{base}/files",
        f"{base}/files/{file_id}/delete",
        f"{base}/share",
        f"{base}/update",
        f"{base}/delete",
        "/projects/999999",  # the 404 page, signed in
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_signed_out_have_no_violations(live_server, new_page, scheme):
    page = new_page(color_scheme=scheme, bypass_csp=True)
    found = {}
    for path in ("/login", "/register", "/no-such-page"):
        page.goto(live_server + path)
        found[path] = violations(page)
    # A refused login: the error summary and the field errors.
    page.goto(live_server + "/login")
    page.fill("#email", "nobody@example.com")
    page.fill("#password", "wrong password")
    page.click("main button[type=submit]")
    page.wait_for_selector(".alert-error")
    found["/login (refused)"] = violations(page)
    page.goto(live_server + "/register")
    page.click("main button[type=submit]")
    page.wait_for_selector(".has-error")
    found["/register (empty)"] = violations(page)
    assert by_rule(found) == {}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_share_link_pages_have_no_violations(app, live_server, new_page, owner, scheme):
    """A visitor's pages: the passcode form (and refused), the chat with a reply, the 404."""
    project = make_project(app, owner, name="Support bot")
    _, open_token = make_share_link(app, owner, project)
    _, closed_token = make_share_link(app, owner, project, passcode="open sesame")
    page = new_page(color_scheme=scheme, bypass_csp=True)
    found = {}
    page.goto(f"{live_server}/s/{closed_token}")
    found["/s/<passcode>"] = violations(page)
    page.fill("#passcode", "wrong")
    page.click("main button[type=submit]")
    page.wait_for_selector(".has-error")
    found["/s/<passcode> (refused)"] = violations(page)
    page.goto(f"{live_server}/s/{open_token}")
    page.wait_for_selector("#share-chat[data-ready]", state="attached")
    page.fill("#message", "How do refunds work?")
    page.click("#send")
    page.wait_for_selector(".msg-assistant.status-complete")
    found["/s/<token> (a reply)"] = violations(page)
    page.goto(f"{live_server}/s/no-such-link")
    found["/s/<unknown>"] = violations(page)
    assert by_rule(found) == {}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_signed_in_have_no_violations(app, live_server, new_page, owner, project, scheme):
    from app.extensions import db
    from app.models import StoredFile

    project, conversation = project
    with app.app_context():
        file_id = db.session.query(StoredFile.id).filter_by(project_id=project).scalar()
    page = new_page(color_scheme=scheme, bypass_csp=True)
    login(page, live_server, owner)
    found = {}
    for path in logged_in_pages(project, conversation, file_id):
        page.goto(live_server + path)
        if path.endswith(f"?c={conversation}"):
            chat_ready(page)
            wait_until(page, "document.querySelector('.branch-switch')")
        found[path] = violations(page)
    # The account menu, open.
    page.goto(live_server + "/")
    page.click("#user-menu summary")
    found["/ (menu open)"] = violations(page)
    assert by_rule(found) == {}


def test_no_page_scrolls_sideways_on_a_phone(app, live_server, new_page, owner, project):
    from app.extensions import db
    from app.models import StoredFile

    project, conversation = project
    with app.app_context():
        file_id = db.session.query(StoredFile.id).filter_by(project_id=project).scalar()
    page = new_page(viewport={"width": 375, "height": 740}, has_touch=True)
    wide = {}
    for path in ("/login", "/register"):
        page.goto(live_server + path)
        wide[path] = horizontal_overflow(page)
    login(page, live_server, owner)
    for path in logged_in_pages(project, conversation, file_id):
        page.goto(live_server + path)
        wide[path] = horizontal_overflow(page)
    assert {path: px for path, px in wide.items() if px} == {}
    # On the Files tab every row's actions are on screen.
    page.goto(f"{live_server}/projects/{project}/files")
    for action in page.locator("table.files button, table.files a").all():
        box = action.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, action
