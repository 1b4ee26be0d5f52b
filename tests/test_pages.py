"""Page markup that a strict Content-Security-Policy allows, and the dashboard's cards.

CSP (``script-src 'self'; style-src 'self'``) forbids inline ``<script>`` bodies, ``on*=``
handlers, ``style=`` attributes and ``javascript:`` URLs. The templates are checked as source,
and every main page is rendered (with Markdown replies, hostile names and prompt diffs) and
parsed, so a filter or a macro cannot slip one in either.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.extensions import db
from app.models import Conversation, User
from app.projects.services import project_cards
from tests.factories import (
    make_comparison,
    make_conversation,
    make_file,
    make_project,
    make_user,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2) style="color:red">'


class Inline(HTMLParser):
    """Collects everything CSP would block."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}=javascript:...>")
        if tag == "script":
            if not names.get("src"):
                self.found.append("<script> without src")
            self.in_script = True
        if tag == "style":
            self.found.append("<style> element")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.found.append("inline script body")


def inline_parts(html: str) -> list[str]:
    parser = Inline()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("path", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: p.name)
def test_templates_have_no_inline_script_style_or_handlers(path):
    source = path.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", source), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", source), "inline event handler"
    assert not re.search(r"\sstyle\s*=", source), "style attribute"
    assert "javascript:" not in source.lower()


def test_rendered_pages_have_nothing_a_strict_csp_blocks(app, client, owner):
    project_id = make_project(
        app, owner, name=HOSTILE, description=HOSTILE, system_prompt="First\n" + HOSTILE
    )
    cid = make_conversation(app, owner, project_id, message=HOSTILE + "\n| a | b |\n|--:|:-|")
    make_file(app, owner, project_id, name="notes.txt")
    client.post("/login", data={"email": owner.email, "password": owner.password})
    client.post(f"/projects/{project_id}/prompts", data={"content": "Second\n" + HOSTILE})
    comparison_id = make_comparison(app, owner, project_id, message=HOSTILE, right={"version": 2})
    pages = [
        "/",
        "/projects/create",
        f"/projects/{project_id}",
        f"/projects/{project_id}?c={cid}",
        f"/projects/{project_id}/update",
        f"/projects/{project_id}/delete",
        f"/projects/{project_id}/prompts",
        f"/projects/{project_id}/prompts/1",
        f"/projects/{project_id}/prompts/diff?from=1&to=2",
        f"/projects/{project_id}/files",
        f"/projects/{project_id}/compare",
        f"/projects/{project_id}/compare?c={comparison_id}&left=1",
        "/projects/999999",  # the 404 page
    ]
    for url in pages:
        html = client.get(url).get_data(as_text=True)
        assert inline_parts(html) == [], url
        assert "<script>alert(1)" not in html, url
    client.post("/logout")
    for url in ("/login", "/register"):
        assert inline_parts(client.get(url).get_data(as_text=True)) == [], url


def test_dashboard_cards_count_and_order_by_last_activity(app, client, owner):
    make_project(app, owner, name="Old")
    quiet = make_project(app, owner, name="Quiet", system_prompt="v1")
    busy = make_project(app, owner, name="Busy")
    make_conversation(app, owner, busy)
    make_conversation(app, owner, busy)
    make_file(app, owner, busy)
    other = make_user(app, email="other@example.com")
    make_project(app, other, name="Not mine")
    with app.app_context():
        # The quiet project's newest activity is its conversation, moved to tomorrow: the
        # latest thing that happened anywhere.
        cid = make_conversation(app, owner, quiet)
        conversation = db.session.get(Conversation, cid)
        conversation.updated_at = conversation.updated_at + timedelta(days=1)
        db.session.commit()
        cards = project_cards(user=db.session.get(User, owner.id))
        summary = [(c.project.name, c.active_version, c.conversations, c.files) for c in cards]
        assert summary == [
            ("Quiet", 1, 1, 0),
            ("Busy", None, 2, 1),
            ("Old", None, 0, 0),
        ]
        assert cards[0].last_activity == conversation.updated_at
        assert cards[0].last_activity.tzinfo is not None
    client.post("/login", data={"email": owner.email, "password": owner.password})
    page = client.get("/").get_data(as_text=True)
    assert "Not mine" not in page
    assert "2 conversations" in page and "1 file<" in page and "prompt v1" in page
    assert page.index("Quiet") < page.index("Busy") < page.index("Old")
