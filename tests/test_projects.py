import pytest

from tests.factories import make_project, make_user


@pytest.fixture
def ada(app, auth):
    user = make_user(app, email="ada@example.com")
    auth.login()
    return user


def test_dashboard_lists_only_my_projects(app, client, ada):
    make_project(app, ada, name="Ada's bot")
    other = make_user(app)
    make_project(app, other, name="Someone else's bot")
    page = client.get("/").get_data(as_text=True)
    assert "Ada&#39;s bot" in page
    assert "Someone else" not in page


def test_empty_dashboard_invites_to_create(client, ada):
    assert "Create your first project" in client.get("/").get_data(as_text=True)


def test_create_update_delete_through_the_forms(client, ada):
    resp = client.post(
        "/projects/create", data={"name": "  Support bot ", "description": "Answers tickets"}
    )
    assert resp.status_code == 302
    detail_url = resp.headers["Location"]
    page = client.get(detail_url).get_data(as_text=True)
    assert "Support bot" in page and "Answers tickets" in page

    project_id = int(detail_url.rsplit("/", 1)[1])
    resp = client.post(
        f"/projects/{project_id}/update", data={"name": "Helpdesk", "description": ""}
    )
    assert resp.status_code == 302
    assert "Helpdesk" in client.get(detail_url).get_data(as_text=True)

    confirm = client.get(f"/projects/{project_id}/delete")
    assert "cannot be undone" in confirm.get_data(as_text=True)
    resp = client.post(f"/projects/{project_id}/delete", follow_redirects=True)
    assert "deleted" in resp.get_data(as_text=True)
    assert client.get(detail_url).status_code == 404


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "   "}, "Give the project a name"),
        ({"name": "n" * 121}, "at most 120"),
        ({"name": "ok", "description": "d" * 2001}, "at most 2000"),
    ],
)
def test_create_form_shows_errors_next_to_fields(client, ada, data, message):
    resp = client.post("/projects/create", data=data)
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)


def test_api_crud(app, client):
    user = make_user(app)
    h = user.headers
    created = client.post("/api/projects", json={"name": "Bot", "description": "d"}, headers=h)
    assert created.status_code == 201
    project = created.get_json()
    assert project["name"] == "Bot"

    listed = client.get("/api/projects", headers=h).get_json()
    assert [p["id"] for p in listed["data"]] == [project["id"]]

    url = f"/api/projects/{project['id']}"
    patched = client.patch(url, json={"name": "Renamed"}, headers=h)
    assert patched.status_code == 200
    assert patched.get_json()["name"] == "Renamed"
    assert patched.get_json()["description"] == "d"  # untouched by a partial update

    assert client.get(url, headers=h).get_json()["name"] == "Renamed"
    assert client.delete(url, headers=h).status_code == 204
    assert client.get(url, headers=h).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": 3}, "name"), ({"name": "x" * 121}, "name")],
)
def test_api_create_validation(app, client, body, field):
    user = make_user(app)
    resp = client.post("/api/projects", json=body, headers=user.headers)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


def test_api_patch_cannot_blank_the_name(app, client):
    user = make_user(app)
    pid = make_project(app, user)
    resp = client.patch(f"/api/projects/{pid}", json={"name": " "}, headers=user.headers)
    assert resp.status_code == 422


def test_deleting_a_user_account_cascade_is_enforced_by_the_database(app):
    from app.extensions import db
    from app.models import Project, User

    user = make_user(app)
    make_project(app, user)
    with app.app_context():
        db.session.execute(db.delete(User).where(User.id == user.id))
        db.session.commit()
        assert db.session.scalar(db.select(db.func.count(Project.id))) == 0
