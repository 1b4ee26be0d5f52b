"""What the design documents promise a client, to the letter: one chat per project through
``POST /api/chat``, unknown JSON fields refused, the system prompt edited with the project, and
the ``/chat`` and ``/upload`` pages. (CORS, ``JWT_SECRET``, files and deploy manifests have
modules of their own.)"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Conversation, PromptVersion
from tests.factories import make_project, make_user, make_version

pytestmark = pytest.mark.use_fake()

UNKNOWN = "This field is not part of this request."


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's bot.")


def design_chat(client, owner, **body):
    return client.post("/api/chat", json=body, headers=owner.headers)


def conversation_count(app, project_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count(Conversation.id)).where(Conversation.project_id == project_id)
        )


def sent_input(fake) -> list[tuple[str, str]]:
    """(role, text) of every message the last Responses call carried (instructions aside)."""
    items = fake.calls("responses")[-1].json["input"]
    return [(item["role"], item["content"]) for item in items]


# --- one chat per project ----------------------------------------------------------------------


def test_without_a_conversation_id_the_projects_chat_continues(
    app, client, owner, project_id, fake
):
    first = design_chat(client, owner, projectId=project_id, message="My name is Ada.")
    assert first.status_code == 200, first.get_json()
    second = design_chat(client, owner, projectId=project_id, message="What is my name?")
    assert second.status_code == 200
    assert second.get_json()["conversation_id"] == first.get_json()["conversation_id"]
    assert conversation_count(app, project_id) == 1
    # The model was sent the earlier turn: that is the memory the design promises.
    assert sent_input(fake) == [
        ("user", "My name is Ada."),
        ("assistant", first.get_json()["reply"]),
        ("user", "What is my name?"),
    ]


def test_new_conversation_starts_another_and_is_then_the_one_continued(
    app, client, owner, project_id, fake
):
    first = design_chat(client, owner, projectId=project_id, message="One")
    fresh = design_chat(client, owner, projectId=project_id, message="Two", newConversation=True)
    assert fresh.status_code == 200
    assert fresh.get_json()["conversation_id"] != first.get_json()["conversation_id"]
    assert sent_input(fake) == [("user", "Two")]  # a new conversation has no memory
    then = design_chat(client, owner, projectId=project_id, message="Three")
    assert then.get_json()["conversation_id"] == fresh.get_json()["conversation_id"]
    assert conversation_count(app, project_id) == 2


def test_a_named_conversation_is_continued_even_when_another_is_newer(
    client, owner, project_id, fake
):
    older = design_chat(client, owner, projectId=project_id, message="Old")
    design_chat(client, owner, projectId=project_id, message="New", newConversation=True)
    older_id = older.get_json()["conversation_id"]
    resp = design_chat(client, owner, projectId=project_id, conversationId=older_id, message="Back")
    assert resp.get_json()["conversation_id"] == older_id
    assert [role for role, _ in sent_input(fake)] == ["user", "assistant", "user"]


def test_pinned_tries_are_not_the_projects_chat(app, client, owner, project_id):
    chat = design_chat(client, owner, projectId=project_id, message="Production chat")
    make_version(app, owner, project_id, "A second version.")
    pinned = design_chat(client, owner, projectId=project_id, message="Try v1", version=1)
    assert pinned.status_code == 200
    assert pinned.get_json()["conversation_id"] != chat.get_json()["conversation_id"]
    resp = design_chat(client, owner, projectId=project_id, message="Back to the chat")
    assert resp.get_json()["conversation_id"] == chat.get_json()["conversation_id"]


def test_ids_may_arrive_as_strings_of_digits(client, owner, project_id):
    first = design_chat(client, owner, projectId=str(project_id), message="Hi")
    assert first.status_code == 200, first.get_json()
    conversation_id = str(first.get_json()["conversation_id"])
    resp = design_chat(
        client, owner, projectId=str(project_id), conversationId=conversation_id, message="Again"
    )
    assert resp.status_code == 200
    assert str(resp.get_json()["conversation_id"]) == conversation_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"projectId": "12a", "message": "Hi"}, "projectId"),
        ({"projectId": "", "message": "Hi"}, "projectId"),
        ({"projectId": "0", "message": "Hi"}, "projectId"),
        ({"projectId": "99999999999", "message": "Hi"}, "projectId"),
        ({"projectId": 1.5, "message": "Hi"}, "projectId"),
        ({"message": "Hi"}, "projectId"),
        ({"projectId": "{pid}", "conversationId": "x", "message": "Hi"}, "conversationId"),
        ({"projectId": "{pid}", "newConversation": "yes", "message": "Hi"}, "newConversation"),
        (
            {"projectId": "{pid}", "conversationId": 1, "newConversation": True, "message": "Hi"},
            "newConversation",
        ),
    ],
)
def test_bad_ids_and_contradictions_are_422_naming_the_field(
    app, client, owner, project_id, body, field
):
    body = {k: (str(project_id) if v == "{pid}" else v) for k, v in body.items()}
    resp = design_chat(client, owner, **body)
    assert resp.status_code == 422, resp.get_json()
    assert list(resp.get_json()["error"]["fields"]) == [field]
    assert conversation_count(app, project_id) == 0


def test_another_users_project_is_404_and_their_chat_is_untouched(app, client, owner, project_id):
    design_chat(client, owner, projectId=project_id, message="Mine")
    mallory = make_user(app, email="mallory@example.com")
    resp = design_chat(client, mallory, projectId=str(project_id), message="Let me in")
    assert resp.status_code == 404
    assert conversation_count(app, project_id) == 1


# --- unknown fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "unknown"),
    [
        ("post", "/api/projects", {"name": "Bot", "sytem_prompt": "typo"}, ["sytem_prompt"]),
        ("patch", "/api/projects/{pid}", {"nmae": "x", "extra": 1}, ["nmae", "extra"]),
        ("post", "/api/projects/{pid}/prompts", {"content": "Hi", "notes": "x"}, ["notes"]),
        ("post", "/api/chat", {"projectId": "{pid}", "message": "Hi", "model": "x"}, ["model"]),
        (
            "post",
            "/api/projects/{pid}/comparisons",
            {"message": "Hi", "left": {"version": 1}, "right": {"version": 1, "modle": "gpt-4o"}},
            ["right.modle"],
        ),
        (
            "post",
            "/api/auth/login",
            {"email": "a@example.com", "password": "x", "remember": 1},
            ["remember"],
        ),
    ],
)
def test_an_unknown_field_is_a_422_naming_it_and_nothing_changes(
    app, client, owner, project_id, method, path, body, unknown
):
    body = {k: (str(project_id) if v == "{pid}" else v) for k, v in body.items()}
    resp = getattr(client, method)(path.format(pid=project_id), json=body, headers=owner.headers)
    assert resp.status_code == 422, resp.get_json()
    fields = resp.get_json()["error"]["fields"]
    assert fields == dict.fromkeys(unknown, UNKNOWN)
    assert client.get("/api/projects", headers=owner.headers).get_json()["data"][0]["name"] == (
        "Support bot"
    )
    assert conversation_count(app, project_id) == 0
    with app.app_context():
        assert db.session.scalar(select(func.count(PromptVersion.id))) == 1


def test_every_documented_body_is_closed():
    """The OpenAPI document says what the check enforces: no body accepts other fields."""
    from app.openapi import request_bodies

    def closed(schema, where):
        if schema.get("type") == "object" or "properties" in schema:
            assert schema.get("additionalProperties") is False, where
            for name, sub in schema.get("properties", {}).items():
                closed(sub, f"{where}.{name}")

    bodies = request_bodies()
    for (path, method), schema in bodies.items():
        closed(schema, f"{method} {path}")
    assert len(bodies) >= 14


# --- the system prompt in the project's edit form ----------------------------------------------


def versions(app, project_id: int) -> list[tuple[int, str, str | None, bool]]:
    with app.app_context():
        from app.models import Project

        active = db.session.get(Project, project_id).active_prompt_id
        rows = db.session.scalars(
            select(PromptVersion)
            .where(PromptVersion.project_id == project_id)
            .order_by(PromptVersion.version)
        )
        return [(v.version, v.content, v.note, v.id == active) for v in rows]


@pytest.fixture
def logged_in(client, auth, owner):
    auth.login(email=owner.email, password=owner.password)
    return client


def edit(client, project_id, **form):
    data = {"name": "Support bot", "description": "", **form}
    return client.post(f"/projects/{project_id}/update", data=data)


def test_the_edit_form_shows_the_live_prompt(logged_in, project_id):
    page = logged_in.get(f"/projects/{project_id}/update").get_data(as_text=True)
    assert "You are Ada&#39;s bot.</textarea>" in page
    assert 'name="prompt_base" type="hidden" value="1"' in page


def test_a_changed_prompt_becomes_the_next_live_version_with_the_same_settings(
    app, client, logged_in, owner, project_id
):
    saved = client.post(
        f"/api/projects/{project_id}/prompts",
        json={"content": "You are Ada's bot.", "model": "gpt-4o", "temperature": 0.3},
        headers=owner.headers,
    )
    assert saved.status_code == 201
    resp = edit(logged_in, project_id, system_prompt="  You are Ada's kind bot.  ", prompt_base=2)
    assert resp.status_code == 302
    assert versions(app, project_id)[-1] == (
        3,
        "You are Ada's kind bot.",
        "Edited with the project",
        True,
    )
    with app.app_context():
        v3 = db.session.scalar(select(PromptVersion).where(PromptVersion.version == 3))
        assert (v3.model, v3.temperature) == ("gpt-4o", 0.3)
    page = logged_in.get(resp.headers["Location"]).get_data(as_text=True)
    assert "the prompt is now version 3" in page


def test_an_unchanged_prompt_saves_no_version(app, logged_in, project_id):
    resp = edit(
        logged_in, project_id, name="Renamed", system_prompt="You are Ada's bot.", prompt_base=1
    )
    assert resp.status_code == 302
    assert [v[0] for v in versions(app, project_id)] == [1]
    assert "Project saved." in logged_in.get(resp.headers["Location"]).get_data(as_text=True)


def test_a_blank_prompt_without_any_version_saves_nothing(app, client, logged_in, owner):
    bare = make_project(app, owner, name="Bare")
    resp = edit(logged_in, bare, name="Bare", system_prompt="", prompt_base=0)
    assert resp.status_code == 302
    assert versions(app, bare) == []


def test_blanking_the_live_prompt_is_a_form_error(app, logged_in, project_id):
    resp = edit(logged_in, project_id, system_prompt="   ", prompt_base=1)
    assert resp.status_code == 422
    assert "The prompt cannot be empty." in resp.get_data(as_text=True)
    assert [v[0] for v in versions(app, project_id)] == [1]


def test_an_old_form_never_reverts_a_newer_version(app, logged_in, owner, project_id):
    make_version(app, owner, project_id, "Saved on the Prompt tab meanwhile.")
    # Untouched text from a form opened on v1: nothing to save, v2 stays live.
    edit(logged_in, project_id, system_prompt="You are Ada's bot.", prompt_base=1)
    assert versions(app, project_id)[-1][0:2] == (2, "Saved on the Prompt tab meanwhile.")
    # Changed text over a production that moved on: refused, the text kept, the base updated.
    resp = edit(logged_in, project_id, system_prompt="My edit.", prompt_base=1)
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "production is now version 2" in page
    assert "My edit.</textarea>" in page
    assert 'name="prompt_base" type="hidden" value="2"' in page
    assert len(versions(app, project_id)) == 2
    # Saving again (over v2, as the re-rendered form says) works.
    assert edit(logged_in, project_id, system_prompt="My edit.", prompt_base=2).status_code == 302
    assert versions(app, project_id)[-1] == (3, "My edit.", "Edited with the project", True)


def test_name_and_prompt_errors_come_together(app, logged_in, project_id):
    too_long = "x" * (app.config["PROMPT_MAX_CHARS"] + 1)
    resp = edit(logged_in, project_id, name="", system_prompt=too_long, prompt_base=1)
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "Give the project a name." in page
    assert "Use at most" in page
    assert [v[0] for v in versions(app, project_id)] == [1]


def test_patch_with_a_system_prompt_saves_a_version(app, client, owner, project_id):
    url = f"/api/projects/{project_id}"
    resp = client.patch(url, json={"system_prompt": "You are terse."}, headers=owner.headers)
    assert resp.status_code == 200
    active = resp.get_json()["active_prompt"]
    assert (active["version"], active["content"], active["note"]) == (
        2,
        "You are terse.",
        "Edited with the project",
    )
    again = client.patch(url, json={"system_prompt": "You are terse."}, headers=owner.headers)
    assert again.get_json()["active_prompt"]["version"] == 2
    empty = client.patch(url, json={"system_prompt": ""}, headers=owner.headers)
    assert empty.status_code == 422
    assert empty.get_json()["error"]["fields"] == {"system_prompt": "The prompt cannot be empty."}


def test_a_too_long_prompt_at_creation_names_the_system_prompt_field(app, client, owner):
    too_long = "x" * (app.config["PROMPT_MAX_CHARS"] + 1)
    resp = client.post(
        "/api/projects", json={"name": "Bot", "system_prompt": too_long}, headers=owner.headers
    )
    assert resp.status_code == 422
    assert list(resp.get_json()["error"]["fields"]) == ["system_prompt"]


# --- /chat and /upload -------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/chat", "/upload"])
def test_the_design_pages_need_a_login(client, page):
    resp = client.get(page)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("page", "hint"),
    [("/chat", "Create a project to start chatting."), ("/upload", "Create a project to upload")],
)
def test_without_projects_the_design_pages_land_on_the_dashboard(
    client, auth, app, page, hint, project_id
):
    # Another user's project exists (``project_id``, Ada's): never a landing for this user.
    make_user(app, email="new@example.com")
    auth.login(email="new@example.com")
    resp = client.get(page)
    assert resp.headers["Location"] == "/"
    assert hint in client.get("/").get_data(as_text=True)


def test_the_design_pages_open_the_most_recently_active_project(
    app, client, logged_in, owner, project_id
):
    other = make_project(app, owner, name="Newer")
    assert logged_in.get("/chat").headers["Location"] == f"/projects/{other}"
    assert logged_in.get("/upload").headers["Location"] == f"/projects/{other}/files"
    design_chat(client, owner, projectId=project_id, message="Activity on the first project")
    assert logged_in.get("/chat").headers["Location"] == f"/projects/{project_id}"
