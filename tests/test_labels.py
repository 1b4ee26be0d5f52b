"""Named labels (docs/formats.md, "Labels"): created, moved, deleted, listed on the Prompt tab,
and asked for by a pinned chat (API and page); bad names, a name used twice, another user's
labels, the rate limit."""

from __future__ import annotations

import pytest

from tests.factories import make_label, make_project, make_user, make_version


@pytest.fixture
def project_id(app, owner):
    project_id = make_project(app, owner, system_prompt="Version one.")
    make_version(app, owner, project_id, "Version two.")
    make_version(app, owner, project_id, "Version three.")
    return project_id


def labels_url(project_id: int, name: str | None = None) -> str:
    base = f"/api/projects/{project_id}/prompts/labels"
    return base if name is None else f"{base}/{name}"


def listed(client, owner, project_id) -> dict:
    data = client.get(labels_url(project_id), headers=owner.headers).get_json()["data"]
    return {row["name"]: row["version"] for row in data}


def test_create_move_list_and_delete_a_label(client, owner, project_id):
    made = client.post(
        labels_url(project_id), json={"name": "staging", "version": 2}, headers=owner.headers
    )
    assert made.status_code == 201
    assert made.get_json() == {"name": "staging", "version": 2, "built_in": False}
    assert listed(client, owner, project_id) == {
        "production": 3,
        "candidate": None,
        "staging": 2,
    }
    moved = client.put(
        labels_url(project_id, "staging"), json={"version": 1}, headers=owner.headers
    )
    assert moved.status_code == 200 and moved.get_json()["version"] == 1
    assert listed(client, owner, project_id)["staging"] == 1
    gone = client.delete(labels_url(project_id, "staging"), headers=owner.headers)
    assert gone.status_code == 204
    assert "staging" not in listed(client, owner, project_id)
    again = client.delete(labels_url(project_id, "staging"), headers=owner.headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    "name",
    ["has space", "Staging", "", " ", "-lead", "x" * 41, "eu/west", "é"],
)
def test_a_bad_label_name_is_a_422(client, owner, project_id, name):
    resp = client.post(
        labels_url(project_id), json={"name": name, "version": 1}, headers=owner.headers
    )
    assert resp.status_code == 422
    assert "name" in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize("name", ["production", "candidate"])
def test_the_built_in_names_cannot_be_created_moved_or_deleted(client, owner, project_id, name):
    body = {"name": name, "version": 1}
    assert client.post(labels_url(project_id), json=body, headers=owner.headers).status_code == 422
    url = labels_url(project_id, name)
    assert client.put(url, json={"version": 1}, headers=owner.headers).status_code == 422
    assert client.delete(url, headers=owner.headers).status_code == 422


def test_a_name_used_already_is_a_409(client, owner, project_id):
    body = {"name": "eu", "version": 1}
    assert client.post(labels_url(project_id), json=body, headers=owner.headers).status_code == 201
    again = client.post(
        labels_url(project_id), json={"name": "eu", "version": 2}, headers=owner.headers
    )
    assert again.status_code == 409
    assert again.get_json()["error"]["fields"] == {"name": "This name is used already."}
    assert listed(client, owner, project_id)["eu"] == 1


@pytest.mark.parametrize("version", [99, 0, "2", None, True])
def test_a_version_the_project_does_not_have_is_a_422(client, owner, project_id, version):
    resp = client.post(
        labels_url(project_id), json={"name": "eu", "version": version}, headers=owner.headers
    )
    assert resp.status_code == 422


def test_the_same_name_in_another_project_is_another_label(app, client, owner, project_id):
    other = make_project(app, owner, system_prompt="Other.")
    make_label(app, owner, project_id, "staging", 2)
    made = client.post(
        labels_url(other), json={"name": "staging", "version": 1}, headers=owner.headers
    )
    assert made.status_code == 201


def test_another_users_labels_are_404(app, client, owner, project_id):
    make_label(app, owner, project_id, "staging", 2)
    intruder = make_user(app, email="eve@example.com")
    headers = intruder.headers
    assert client.get(labels_url(project_id), headers=headers).status_code == 404
    body = {"name": "mine", "version": 1}
    assert client.post(labels_url(project_id), json=body, headers=headers).status_code == 404
    url = labels_url(project_id, "staging")
    assert client.put(url, json={"version": 1}, headers=headers).status_code == 404
    assert client.delete(url, headers=headers).status_code == 404
    # Nor can the intruder's chat pin the owner's label.
    chat = {"message": "Hi", "label": "staging"}
    resp = client.post(f"/api/projects/{project_id}/chat", json=chat, headers=headers)
    assert resp.status_code == 404
    assert listed(client, owner, project_id)["staging"] == 2


# --- asking for a version by label -----------------------------------------------------------


def chat(client, owner, project_id, **body):
    return client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Hi", **body}, headers=owner.headers
    )


def test_a_pinned_chat_asks_for_staging_and_keeps_its_version_when_the_label_moves(
    app, client, owner, project_id
):
    make_label(app, owner, project_id, "staging", 2)
    first = chat(client, owner, project_id, label="staging").get_json()
    assert first["message"]["prompt_version"] == 2
    conversation_id = first["conversation_id"]
    conversation = client.get(
        f"/api/conversations/{conversation_id}", headers=owner.headers
    ).get_json()
    assert conversation["pinned_version"] == 2
    client.put(labels_url(project_id, "staging"), json={"version": 1}, headers=owner.headers)
    later = chat(client, owner, project_id, conversation_id=conversation_id).get_json()
    assert later["message"]["prompt_version"] == 2  # pinned: the version, not the label
    moved = chat(client, owner, project_id, label="staging").get_json()
    assert moved["message"]["prompt_version"] == 1


def test_the_design_endpoint_and_the_built_in_labels(app, client, owner, project_id):
    resp = client.post(
        "/api/chat",
        json={"projectId": project_id, "message": "Hi", "label": "production"},
        headers=owner.headers,
    )
    assert resp.status_code == 200 and resp.get_json()["message"]["prompt_version"] == 3
    # No candidate yet: the label points nowhere.
    assert chat(client, owner, project_id, label="candidate").status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"label": "nope"}, 404),
        ({"label": "Not A Label"}, 404),
        ({"label": "staging", "version": 1}, 422),
        ({"label": "staging", "regenerate": True}, 422),
        ({"label": "x" * 41}, 422),
    ],
)
def test_bad_label_requests(app, client, owner, project_id, body, status):
    make_label(app, owner, project_id, "staging", 2)
    assert chat(client, owner, project_id, **body).status_code == status


def test_the_page_pins_a_new_chat_by_label(app, client, auth, owner, project_id):
    make_label(app, owner, project_id, "staging", 2)
    auth.login(owner.email, owner.password)
    page = client.get(f"/projects/{project_id}?label=staging")
    assert page.status_code == 200
    assert 'data-pin-version="2"' in page.get_data(as_text=True)
    assert client.get(f"/projects/{project_id}?label=nope").status_code == 404


def test_the_prompt_tab_lists_adds_moves_and_deletes_labels(app, client, auth, owner, project_id):
    auth.login(owner.email, owner.password)
    tab = f"/projects/{project_id}/prompts"
    made = client.post(f"{tab}/labels", data={"name": "staging", "version": "2"})
    assert made.status_code == 302
    html = client.get(tab).get_data(as_text=True)
    assert 'data-label="staging"' in html and f"/projects/{project_id}?label=staging" in html
    taken = client.post(f"{tab}/labels", data={"name": "staging", "version": "1"})
    assert taken.status_code == 422
    assert "This name is used already." in taken.get_data(as_text=True)
    spaced = client.post(f"{tab}/labels", data={"name": "two words", "version": "1"})
    assert spaced.status_code == 422
    assert client.post(f"{tab}/labels/staging/move", data={"version": "1"}).status_code == 302
    assert listed(client, owner, project_id)["staging"] == 1
    assert client.post(f"{tab}/labels/staging/delete").status_code == 302
    assert "staging" not in listed(client, owner, project_id)


@pytest.mark.parametrize(
    "config_overrides", [{"RATELIMIT_ENABLED": True, "RATELIMIT_LABELS": "2 per minute"}]
)
def test_label_writes_are_rate_limited_per_user(app, client, owner, project_id):
    url = labels_url(project_id)
    for name in ("a", "b"):
        body = {"name": name, "version": 1}
        assert client.post(url, json=body, headers=owner.headers).status_code == 201
    refused = client.put(labels_url(project_id, "a"), json={"version": 2}, headers=owner.headers)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    # Another user has a budget of their own.
    other = make_user(app, email="bob@example.com")
    theirs = make_project(app, other, system_prompt="Bob's.")
    body = {"name": "a", "version": 1}
    assert client.post(labels_url(theirs), json=body, headers=other.headers).status_code == 201


def test_compare_takes_a_label_for_a_side(app, client, auth, owner, project_id):
    make_label(app, owner, project_id, "staging", 1)
    body = {"message": "Which?", "left": {"label": "staging"}, "right": {"label": "production"}}
    made = client.post(f"/api/projects/{project_id}/comparisons", json=body, headers=owner.headers)
    assert made.status_code == 201, made.get_json()
    sides = made.get_json()
    assert (sides["left"]["version"], sides["right"]["version"]) == (1, 3)
    bad = {"message": "Which?", "left": {"label": "nope"}, "right": {"version": 1, "label": "eu"}}
    refused = client.post(
        f"/api/projects/{project_id}/comparisons", json=bad, headers=owner.headers
    )
    assert refused.status_code == 422
    assert set(refused.get_json()["error"]["fields"]) == {"left.label", "right.label"}
    # The page preselects sides by label and names labels beside their versions.
    auth.login(owner.email, owner.password)
    page = client.get(f"/projects/{project_id}/compare?left=staging&right=production")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "v1 · staging" in html
    assert client.get(f"/projects/{project_id}/compare?left=nope").status_code == 404


def test_the_diff_names_the_labels_pointing_at_each_version(app, client, auth, owner, project_id):
    """The diff shows every difference (issue 30, item 4), the labels too: production on v3
    (the last saved), staging on v2, nothing on v1."""
    make_label(app, owner, project_id, "staging", 2)
    url = f"/api/projects/{project_id}/prompts/diff"

    def labels_changed(a: int, b: int):
        body = client.get(f"{url}?from={a}&to={b}", headers=owner.headers).get_json()
        return [(c["from"], c["to"]) for c in body["settings"] if c["name"] == "labels"]

    assert labels_changed(1, 2) == [([], ["staging"])]
    assert labels_changed(2, 3) == [(["staging"], ["production"])]
    make_label(app, owner, project_id, "eu", 3)
    assert labels_changed(2, 3) == [(["staging"], ["production", "eu"])]
    auth.login(owner.email, owner.password)
    page = client.get(f"/projects/{project_id}/prompts/diff?from=2&to=3").get_data(as_text=True)
    row = page[page.index('data-field="labels"') :].split("</tr>")[0]
    assert "<li>staging</li>" in row and "<li>production</li>" in row and "<li>eu</li>" in row
