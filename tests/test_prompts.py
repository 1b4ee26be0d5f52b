import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Project, PromptVersion
from app.prompts.versions import DEFAULT_SYSTEM_PROMPT
from tests.factories import make_project


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner)


def save(client, owner, project_id, content, **extra):
    return client.post(
        f"/api/projects/{project_id}/prompts",
        json={"content": content, **extra},
        headers=owner.headers,
    )


def test_saving_creates_numbered_versions_and_activates_the_newest(client, owner, project_id):
    first = save(client, owner, project_id, "Be brief.", note="start")
    assert first.status_code == 201
    assert first.get_json()["version"] == 1
    assert first.get_json()["is_active"] is True
    assert first.get_json()["note"] == "start"

    second = save(client, owner, project_id, "Be brief and kind.")
    assert second.get_json()["version"] == 2

    listed = client.get(f"/api/projects/{project_id}/prompts", headers=owner.headers).get_json()
    assert [(v["version"], v["is_active"]) for v in listed["data"]] == [(2, True), (1, False)]


def test_unchanged_text_creates_no_version(client, owner, project_id):
    save(client, owner, project_id, "Be brief.")
    again = save(client, owner, project_id, "  Be brief.\n")
    assert again.status_code == 200
    assert again.get_json()["created"] is False
    assert again.get_json()["version"] == 1
    listed = client.get(f"/api/projects/{project_id}/prompts", headers=owner.headers).get_json()
    assert len(listed["data"]) == 1


def test_save_without_activating_keeps_the_current_version(client, owner, project_id):
    save(client, owner, project_id, "One")
    draft = save(client, owner, project_id, "Two", activate=False)
    assert draft.status_code == 201
    assert draft.get_json()["is_active"] is False
    project = client.get(f"/api/projects/{project_id}", headers=owner.headers).get_json()
    assert project["active_prompt"]["version"] == 1


def test_rollback_reactivates_an_old_version_without_renumbering(client, owner, project_id):
    for text in ("One", "Two", "Three"):
        save(client, owner, project_id, text)
    resp = client.post(f"/api/projects/{project_id}/prompts/1/activate", headers=owner.headers)
    assert resp.status_code == 200
    assert resp.get_json()["is_active"] is True
    project = client.get(f"/api/projects/{project_id}", headers=owner.headers).get_json()
    assert project["active_prompt"]["content"] == "One"
    listed = client.get(f"/api/projects/{project_id}/prompts", headers=owner.headers).get_json()
    assert [v["version"] for v in listed["data"]] == [3, 2, 1]
    assert [v["is_active"] for v in listed["data"]] == [False, False, True]
    # The next save continues the numbering.
    assert save(client, owner, project_id, "Four").get_json()["version"] == 4


def test_get_one_version_and_unknown_versions(client, owner, project_id):
    save(client, owner, project_id, "One")
    got = client.get(f"/api/projects/{project_id}/prompts/1", headers=owner.headers)
    assert got.get_json()["content"] == "One"
    missing = client.get(f"/api/projects/{project_id}/prompts/9", headers=owner.headers)
    assert missing.status_code == 404
    assert (
        client.post(
            f"/api/projects/{project_id}/prompts/9/activate", headers=owner.headers
        ).status_code
        == 404
    )


def test_diff_between_versions(client, owner, project_id):
    save(client, owner, project_id, "Line A\nLine B\nLine C")
    save(client, owner, project_id, "Line A\nLine B2\nLine C\nLine D")
    resp = client.get(f"/api/projects/{project_id}/prompts/diff?from=1&to=2", headers=owner.headers)
    body = resp.get_json()
    assert (body["from"], body["to"]) == (1, 2)
    lines = body["diff"].splitlines()
    assert "--- v1" in lines and "+++ v2" in lines
    assert "-Line B" in lines
    assert "+Line B2" in lines
    assert "+Line D" in lines
    assert " Line A" in lines
    assert " Line C" in lines  # a line added after the last one leaves that one unchanged
    assert "-Line C" not in lines


@pytest.mark.parametrize("query", ["", "?from=1", "?from=x&to=2", "?from=-1&to=2"])
def test_diff_needs_two_version_numbers(client, owner, project_id, query):
    save(client, owner, project_id, "One")
    resp = client.get(f"/api/projects/{project_id}/prompts/diff{query}", headers=owner.headers)
    assert resp.status_code == 422


def test_project_without_prompt_uses_the_documented_default(client, owner, project_id):
    body = client.get(f"/api/projects/{project_id}", headers=owner.headers).get_json()
    assert body["active_prompt"] is None
    assert body["default_prompt"] == DEFAULT_SYSTEM_PROMPT


def test_initial_prompt_at_creation_becomes_version_1(client, owner):
    resp = client.post(
        "/api/projects",
        json={"name": "Bot", "system_prompt": "Talk like a pirate."},
        headers=owner.headers,
    )
    assert resp.status_code == 201
    active = resp.get_json()["active_prompt"]
    assert (active["version"], active["content"]) == (1, "Talk like a pirate.")


def test_invalid_initial_prompt_creates_no_project(app, client, owner):
    app.config["PROMPT_MAX_CHARS"] = 10
    resp = client.post(
        "/api/projects", json={"name": "Bot", "system_prompt": "x" * 11}, headers=owner.headers
    )
    assert resp.status_code == 422
    assert client.get("/api/projects", headers=owner.headers).get_json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "   \n\t"}, "content"),
        ({"content": 42}, "content"),
        ({"content": "ok", "note": "n" * 201}, "note"),
        ({"content": "ok", "activate": "yes"}, "activate"),
    ],
)
def test_validation_errors(client, owner, project_id, body, field):
    resp = client.post(f"/api/projects/{project_id}/prompts", json=body, headers=owner.headers)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


def test_content_limit_is_configurable(app, client, owner, project_id):
    app.config["PROMPT_MAX_CHARS"] = 100
    assert save(client, owner, project_id, "x" * 100).status_code == 201
    resp = save(client, owner, project_id, "y" * 101)
    assert resp.status_code == 422
    assert "100" in resp.get_json()["error"]["fields"]["content"]


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def logged_in(client, owner):
    client.post("/login", data={"email": owner.email, "password": owner.password})


def test_editor_shows_the_default_prompt_until_the_first_save(client, logged_in, project_id):
    page = client.get(f"/projects/{project_id}/prompts").get_data(as_text=True)
    assert "default system prompt" in page
    assert DEFAULT_SYSTEM_PROMPT in page


def test_saving_through_the_editor(client, logged_in, project_id):
    url = f"/projects/{project_id}/prompts"
    resp = client.post(url, data={"content": "Be brief.", "note": "first"}, follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert "Saved as version 1" in page
    assert "first" in page

    resp = client.post(url, data={"content": "Be brief."}, follow_redirects=True)
    assert "No changes: version 1 already has this text and settings" in resp.get_data(as_text=True)

    resp = client.post(url, data={"content": "  "})
    assert resp.status_code == 422
    assert "cannot be empty" in resp.get_data(as_text=True)


def test_history_rollback_and_diff_pages(client, logged_in, project_id):
    url = f"/projects/{project_id}/prompts"
    client.post(url, data={"content": "Old line"})
    client.post(url, data={"content": "New line"})
    page = client.get(url).get_data(as_text=True)
    assert "v2" in page and "v1" in page
    assert "Make v1 live" in page

    resp = client.post(f"{url}/1/activate", follow_redirects=True)
    assert "Version 1 is live" in resp.get_data(as_text=True)
    shown = client.get(f"{url}/1").get_data(as_text=True)
    assert "Old line" in shown and '<span class="badge">production</span>' in shown

    diff = client.get(f"{url}/diff?from=1&to=2").get_data(as_text=True)
    assert '<del class="diff-del">-Old line</del>' in diff
    assert '<ins class="diff-add">+New line</ins>' in diff


def test_creating_a_project_with_a_prompt_through_the_form(client, logged_in):
    resp = client.post(
        "/projects/create", data={"name": "Pirate", "system_prompt": "Arr."}, follow_redirects=True
    )
    assert resp.status_code == 200
    project_id = int(resp.request.path.rsplit("/", 1)[1])
    page = client.get(f"/projects/{project_id}/prompts").get_data(as_text=True)
    assert "version 1" in page and "Arr." in page


# --- integrity under concurrency ---------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_saves_and_activations_keep_one_active_and_unique_numbers(
    app, owner, project_id
):
    from app.models import User
    from app.prompts import services

    threads_n, saves_each = 8, 4
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with app.app_context():
                user = db.session.get(User, owner.id)
                barrier.wait()
                for i in range(saves_each):
                    result = services.create_version(
                        user=user, project_id=project_id, content=f"thread {n} save {i}"
                    )
                    assert result.created
                    services.activate_version(user=user, project_id=project_id, number=1 + (i % 2))
                db.session.remove()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors

    with app.app_context():
        numbers = db.session.scalars(
            select(PromptVersion.version).where(PromptVersion.project_id == project_id)
        ).all()
        assert sorted(numbers) == list(range(1, threads_n * saves_each + 1))
        project = db.session.get(Project, project_id)
        active = db.session.get(PromptVersion, project.active_prompt_id)
        assert active.project_id == project_id
        assert db.session.scalar(select(func.count()).select_from(Project)) == 1
