"""The OpenAI Files mirror against the fake provider server over real HTTP: the multipart body,
success, a failure that keeps the local file, retry, and delete propagation."""

from __future__ import annotations

import pytest

from tests.factories import make_project
from tests.test_files import files_page, login, on_disk, upload


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()


@pytest.fixture
def config_overrides(fake):
    return fake.app_config(openrouter=False, LLM_TIMEOUT_SECONDS=2.0)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs bot")


def test_upload_is_mirrored_with_the_right_multipart_fields(app, client, owner, project_id, fake):
    content = b"# Returns\n\n30 days.\n"
    body = upload(client, owner, project_id, "returns.md", content).get_json()
    assert body["openai"]["status"] == "synced"
    assert body["openai"]["file_id"].startswith("file-")
    assert body["openai"]["error"] is None

    (call,) = fake.calls("files")
    assert call.method == "POST" and call.path == "/v1/files"
    assert call.headers["Authorization"] == "Bearer test-openai-key"
    assert call.form == {"purpose": "user_data"}
    sent = call.files["file"]
    assert sent["filename"] == "returns.md"
    assert sent["content"] == content
    assert sent["content_type"] == "text/markdown"
    assert fake.files[body["openai"]["file_id"]]["content"] == content


def test_purpose_is_configurable(app, client, owner, project_id, fake):
    app.config["OPENAI_FILE_PURPOSE"] = "assistants"
    upload(client, owner, project_id, "a.txt", b"alpha")
    assert fake.calls("files")[0].form == {"purpose": "assistants"}


def test_a_failed_mirror_keeps_the_local_file_and_retry_syncs_it(
    app, client, owner, project_id, fake
):
    fake.script("files", {"status": 500, "message": "The server had an error while processing"})
    resp = upload(client, owner, project_id, "a.txt", b"alpha")
    assert resp.status_code == 201  # the upload itself succeeded
    body = resp.get_json()
    assert body["openai"]["status"] == "failed"
    assert body["openai"]["file_id"] is None
    assert "The server had an error while processing" in body["openai"]["error"]
    assert len(on_disk(app, project_id)) == 1
    login(client, owner)
    assert "not synced" in files_page(client, project_id)

    retried = client.post(
        f"/api/projects/{project_id}/files/{body['id']}/sync", headers=owner.headers
    ).get_json()
    assert retried["openai"]["status"] == "synced"
    assert retried["openai"]["file_id"] in fake.files
    assert retried["openai"]["error"] is None


def test_page_retry_reports_a_second_failure(app, client, owner, project_id, fake):
    fake.script("files", {"status": 503}, {"status": 429, "message": "Slow down"})
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    login(client, owner)
    client.post(f"/projects/{project_id}/files/{file_id}/sync")
    assert "still not synced: OpenAI: Slow down" in files_page(client, project_id)


def test_unreachable_openai_is_recorded_not_raised(app, client, owner, project_id):
    from tests.fake_provider import closed_port_url

    app.config["OPENAI_BASE_URL"] = closed_port_url() + "/v1"
    body = upload(client, owner, project_id, "a.txt", b"alpha").get_json()
    assert body["openai"]["status"] == "failed"
    assert "could not connect" in body["openai"]["error"]


def test_deleting_a_file_deletes_the_remote_copy(app, client, owner, project_id, fake):
    body = upload(client, owner, project_id, "a.txt", b"alpha").get_json()
    remote = body["openai"]["file_id"]
    assert remote in fake.files
    client.delete(f"/api/projects/{project_id}/files/{body['id']}", headers=owner.headers)
    assert remote not in fake.files
    assert [c.method for c in fake.calls("files")] == ["POST", "DELETE"]
    assert fake.calls("files")[1].path == f"/v1/files/{remote}"


def test_remote_delete_failure_still_deletes_locally(app, client, owner, project_id, fake):
    body = upload(client, owner, project_id, "a.txt", b"alpha").get_json()
    fake.script("files", {"status": 500})
    resp = client.delete(f"/api/projects/{project_id}/files/{body['id']}", headers=owner.headers)
    assert resp.status_code == 204
    assert on_disk(app, project_id) == []


def test_deleting_the_project_deletes_remote_copies(app, client, owner, project_id, fake):
    ids = [
        upload(client, owner, project_id, f"{n}.txt", n.encode()).get_json()["openai"]["file_id"]
        for n in ("a", "b")
    ]
    client.delete(f"/api/projects/{project_id}", headers=owner.headers)
    assert not set(ids) & set(fake.files)


def test_without_a_key_files_stay_local_and_sync_says_why(app, client, owner, project_id, fake):
    app.config["OPENAI_API_KEY"] = None
    from app.chat.llm import close_client

    close_client(app)
    body = upload(client, owner, project_id, "a.txt", b"alpha").get_json()
    assert body["openai"]["status"] == "local"
    assert fake.calls("files") == []
    resp = client.post(f"/api/projects/{project_id}/files/{body['id']}/sync", headers=owner.headers)
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "sync_unavailable"
