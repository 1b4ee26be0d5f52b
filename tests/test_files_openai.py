"""The OpenAI Files mirror against the fake provider server over real HTTP: the multipart body,
success, a failure that keeps the local file, retry, and delete propagation. The copy is a
``copy`` job on the queue (``app/files/copies.py``): the upload answers ``pending``, and the
tests read the file once this process's queue has run it (``copied``)."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.filetypes import parse_extensions
from app.models import StoredFile
from app.models.base import utcnow
from tests.factories import make_project
from tests.filehelp import (
    copied,
    docx_bytes,
    files_page,
    login,
    on_disk,
    settled,
    upload,
    upload_copied,
)

pytestmark = pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2.0)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs bot")


def test_upload_is_mirrored_with_the_right_multipart_fields(app, client, owner, project_id, fake):
    content = b"# Returns\n\n30 days.\n"
    body = upload_copied(app, client, owner, project_id, "returns.md", content)
    assert body["openai"]["status"] == "synced"
    assert body["openai"]["file_id"].startswith("file-")
    assert body["openai"]["error"] is None

    (call,) = fake.calls("files")
    assert call.method == "POST" and call.path == "/v1/files"
    assert call.headers["Authorization"] == "Bearer test-openai-key"
    assert call.form == {"purpose": "assistants"}  # the default, as the design says
    sent = call.files["file"]
    assert sent["filename"] == "returns.md"
    assert sent["content"] == content
    assert sent["content_type"] == "text/markdown"
    assert fake.files[body["openai"]["file_id"]]["content"] == content


def test_the_file_json_carries_openais_file_object(app, client, owner, project_id, fake):
    """What OpenAI answered is kept: the upload, the file and the list all show it."""
    body = upload_copied(app, client, owner, project_id, "returns.md", b"30 days.")
    remote = fake.files[body["openai"]["file_id"]]
    expected = {
        "id": remote["id"],
        "bytes": 8,
        "created_at": remote["created_at"],
        "expires_at": None,
        "purpose": "assistants",
        "status": "processed",
    }
    assert {k: remote[k] for k in expected} == expected  # the fake answered what we keep
    assert body["openai"]["file"] == expected
    one = client.get(f"/api/projects/{project_id}/files/{body['id']}", headers=owner.headers)
    assert one.get_json()["openai"]["file"] == expected
    listed = client.get(f"/api/projects/{project_id}/files", headers=owner.headers).get_json()
    assert [f["openai"]["file"] for f in listed["data"]] == [expected]


def test_purpose_is_configurable(app, client, owner, project_id, fake):
    app.config["OPENAI_FILE_PURPOSE"] = "batch"
    body = upload_copied(app, client, owner, project_id, "a.jsonl", b'{"a": 1}\n')
    assert fake.calls("files")[0].form == {"purpose": "batch"}
    remote = body["openai"]["file"]
    assert remote["purpose"] == "batch"
    assert remote["expires_at"] == remote["created_at"] + 30 * 24 * 3600


def test_an_added_type_is_mirrored_as_it_is(app, client, owner, project_id, fake):
    app.config["UPLOAD_ALLOWED_EXTENSIONS"] = parse_extensions("builtin,.docx")
    content = docx_bytes()
    body = upload_copied(app, client, owner, project_id, "plan.docx", content)
    (call,) = fake.calls("files")
    assert call.form == {"purpose": "assistants"}
    assert call.files["file"] == {
        "filename": "plan.docx",
        "content_type": "application/octet-stream",
        "size": len(content),
        "content": content,
    }
    assert body["openai"]["status"] == "synced"
    assert body["openai"]["file"]["bytes"] == len(content)
    assert body["openai"]["file"]["purpose"] == "assistants"


def test_a_purpose_openai_refuses_fails_the_copy_not_the_upload(
    app, client, owner, project_id, fake
):
    app.config["OPENAI_FILE_PURPOSE"] = "everything"
    openai = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")["openai"]
    assert (openai["status"], openai["file_id"], openai["file"]) == ("failed", None, None)
    assert openai["error"].startswith("OpenAI refused this file. OpenAI said: 'everything' is")


def test_a_failed_mirror_keeps_the_local_file_and_retry_syncs_it(
    app, client, owner, project_id, fake
):
    fake.script("files", {"status": 500, "message": "The server had an error while processing"})
    body = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")  # a 201 all the same
    assert body["openai"]["status"] == "failed"
    assert body["openai"]["file_id"] is None
    assert body["openai"]["file"] is None
    assert body["openai"]["error"] == (
        "OpenAI had a problem on its side; retry the copy later. "
        "OpenAI said: The server had an error while processing"
    )
    assert len(on_disk(app, project_id)) == 1

    retried = client.post(
        f"/api/projects/{project_id}/files/{body['id']}/sync", headers=owner.headers
    ).get_json()
    assert retried["openai"]["status"] == "pending"
    retried = copied(app, client, owner, project_id, body["id"])
    assert retried["openai"]["status"] == "synced"
    assert retried["openai"]["file_id"] in fake.files
    assert retried["openai"]["file"]["id"] == retried["openai"]["file_id"]
    assert retried["openai"]["error"] is None


@pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2.0, QUEUE_IN_PROCESS=False)
def test_the_upload_answers_before_the_copy_is_made(app, client, owner, project_id, fake):
    """The copy is a job: the upload answers ``pending`` having called nobody; the job makes
    the copy. Before: the upload request itself sent the bytes to OpenAI."""
    body = upload(client, owner, project_id, "a.txt", b"alpha").get_json()
    assert body["openai"] == {"status": "pending", "file_id": None, "error": None, "file": None}
    assert fake.calls("files") == []
    assert app.extensions["jobs"].run_pending() == 1
    body = copied(app, client, owner, project_id, body["id"])
    assert body["openai"]["status"] == "synced"
    assert body["openai"]["file_id"] in fake.files


@pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2.0, QUEUE_IN_PROCESS=False)
def test_a_copy_whose_run_died_is_made_once_by_the_sweep(app, client, owner, project_id, fake):
    """A run that claimed the copy and died (its worker killed mid-upload) leaves the claim:
    nothing runs it while the lease holds; once it is over the sweep queues the job, and the
    copy is made and recorded once however often the job then runs."""
    from app.files.copies import copy_file

    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    with app.app_context():  # the dead run's claim
        db.session.execute(
            update(StoredFile).where(StoredFile.id == file_id).values(sync_claimed_at=utcnow())
        )
        db.session.commit()
    app.extensions["jobs"].run_pending()  # the upload's message: the claim is live
    app.extensions["maintenance"].run_now()
    app.extensions["jobs"].run_pending()
    assert fake.calls("files") == []
    with app.app_context():  # the lease is over
        db.session.execute(
            update(StoredFile)
            .where(StoredFile.id == file_id)
            .values(sync_claimed_at=utcnow() - timedelta(hours=1))
        )
        db.session.commit()
    app.extensions["maintenance"].run_now()
    app.extensions["maintenance"].run_now()  # two sweeps, two messages: one copy
    assert app.extensions["jobs"].run_pending() == 2
    with app.app_context():
        assert copy_file(file_id) is False
    assert [c.method for c in fake.calls("files")] == ["POST"]
    body = copied(app, client, owner, project_id, file_id)
    assert body["openai"]["status"] == "synced"
    assert list(fake.files) == [body["openai"]["file_id"]]


def retry_form(html: str, project_id: int, file_id: int) -> str:
    """The row's retry form (action and button), or "" when the page offers none."""
    action = f'action="/projects/{project_id}/files/{file_id}/sync"'
    start = html.find(action)
    return html[start : html.find("</form>", start)] if start >= 0 else ""


def test_the_files_tab_says_why_a_copy_failed_and_retries_it(app, client, owner, project_id, fake):
    fake.script("files", {"status": 401, "error": "invalid_api_key"})
    file_id = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")["id"]
    login(client, owner)
    html = files_page(client, project_id)
    assert "Copy failed" in html
    assert "OpenAI did not accept the API key (check OPENAI_API_KEY and OPENAI_BASE_URL)." in html
    assert ">Retry the copy</button>" in retry_form(html, project_id, file_id)

    client.post(f"/projects/{project_id}/files/{file_id}/sync")
    settled(app)
    html = files_page(client, project_id)
    assert "Copying a.txt to OpenAI…" in html
    assert "Copy failed" not in html and retry_form(html, project_id, file_id) == ""
    assert ">copied</span>" in html
    (remote,) = fake.files.values()
    assert remote["content"] == b"alpha" and remote["purpose"] == "assistants"


def test_page_retry_reports_a_second_failure(app, client, owner, project_id, fake):
    fake.script("files", {"status": 503}, {"status": 429, "message": "Slow down"})
    file_id = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")["id"]
    login(client, owner)
    client.post(f"/projects/{project_id}/files/{file_id}/sync")
    settled(app)
    html = files_page(client, project_id)
    assert "Copying a.txt to OpenAI…" in html and "Copy failed" in html
    assert (
        "OpenAI is limiting requests right now; retry the copy in a minute. OpenAI said: Slow down"
    ) in html
    assert ">Retry the copy</button>" in retry_form(html, project_id, file_id)


def test_unreachable_openai_is_recorded_not_raised(app, client, owner, project_id):
    from tools.fake_provider import closed_port_url

    app.config["OPENAI_BASE_URL"] = closed_port_url() + "/v1"
    body = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")
    assert body["openai"]["status"] == "failed"
    assert body["openai"]["error"].startswith(
        "PromptHub could not reach OpenAI; retry the copy. Details: could not connect"
    )


def test_a_file_refused_by_a_quota_is_never_copied(app, client, owner, project_id, fake):
    app.config.update(STORAGE_QUOTA_PROJECT_FILES=1)
    assert upload_copied(app, client, owner, project_id, "a.txt", b"a")["openai"]["status"] == (
        "synced"
    )
    refused = upload(client, owner, project_id, "b.txt", b"b")
    assert refused.status_code == 413
    assert refused.get_json()["error"]["code"] == "storage_quota_exceeded"
    assert [call.files["file"]["filename"] for call in fake.calls("files")] == ["a.txt"]


@pytest.mark.use_fake(
    openrouter=False,
    RATELIMIT_ENABLED=True,
    RATELIMIT_UPLOAD="2 per minute",
    RATELIMIT_KEY_PREFIX=f"files-openai-{uuid.uuid4().hex}",
)
def test_a_form_upload_copies_only_the_files_within_the_upload_limit(
    app, client, owner, project_id, fake
):
    login(client, owner)
    files = [(io.BytesIO(name.encode()), name) for name in ("a.txt", "b.txt", "c.txt")]
    client.post(
        f"/projects/{project_id}/files", data={"file": files}, content_type="multipart/form-data"
    )
    settled(app)
    assert [call.files["file"]["filename"] for call in fake.calls("files")] == ["a.txt", "b.txt"]


def test_deleting_a_file_deletes_the_remote_copy(app, client, owner, project_id, fake):
    body = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")
    remote = body["openai"]["file_id"]
    assert remote in fake.files
    client.delete(f"/api/projects/{project_id}/files/{body['id']}", headers=owner.headers)
    assert remote not in fake.files
    assert [c.method for c in fake.calls("files")] == ["POST", "DELETE"]
    assert fake.calls("files")[1].path == f"/v1/files/{remote}"


def test_remote_delete_failure_still_deletes_locally(app, client, owner, project_id, fake):
    body = upload_copied(app, client, owner, project_id, "a.txt", b"alpha")
    fake.script("files", {"status": 500})
    resp = client.delete(f"/api/projects/{project_id}/files/{body['id']}", headers=owner.headers)
    assert resp.status_code == 204
    assert on_disk(app, project_id) == []


def test_deleting_the_project_deletes_remote_copies(app, client, owner, project_id, fake):
    ids = [
        upload_copied(app, client, owner, project_id, f"{n}.txt", n.encode())["openai"]["file_id"]
        for n in ("a", "b")
    ]
    client.delete(f"/api/projects/{project_id}", headers=owner.headers)
    assert not set(ids) & set(fake.files)


def test_without_a_key_files_stay_local_and_sync_says_why(app, client, owner, project_id, fake):
    app.config["OPENAI_API_KEY"] = None
    from app.llm import close_client

    close_client(app)
    body = upload(client, owner, project_id, "a.txt", b"alpha").get_json()
    assert body["openai"]["status"] == "local"
    assert fake.calls("files") == []
    resp = client.post(f"/api/projects/{project_id}/files/{body['id']}/sync", headers=owner.headers)
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "sync_unavailable"


def test_a_file_uploaded_without_a_key_can_be_copied_from_the_page_later(
    app, client, owner, project_id, fake
):
    from app.llm import close_client

    key = app.config["OPENAI_API_KEY"]
    app.config["OPENAI_API_KEY"] = None
    close_client(app)
    file_id = upload(client, owner, project_id, "a.txt", b"alpha").get_json()["id"]
    app.config["OPENAI_API_KEY"] = key
    close_client(app)
    login(client, owner)
    html = files_page(client, project_id)
    assert "Not copied: uploaded before an OpenAI key was set." in html
    assert ">Copy to OpenAI</button>" in retry_form(html, project_id, file_id)

    client.post(f"/projects/{project_id}/files/{file_id}/sync")
    settled(app)
    html = files_page(client, project_id)
    assert "Copying a.txt to OpenAI…" in html and ">copied</span>" in html
    assert [c.method for c in fake.calls("files")] == ["POST"]


# --- OpenAI's answer, read by the adapter ------------------------------------------------------


def test_an_answer_with_fields_missing_or_odd_still_counts_as_a_copy():
    """OpenAI's own example omits ``status``; a field of the wrong type is dropped, not fatal."""
    from app.providers.openai_files import RemoteFile

    remote = RemoteFile.from_body(
        {"id": "file-abc123", "object": "file", "bytes": "120000", "created_at": 1677610602,
         "filename": "salesOverview.pdf", "purpose": "assistants"}
    )  # fmt: skip
    assert remote == RemoteFile(id="file-abc123", created_at=1677610602, purpose="assistants")


@pytest.mark.parametrize("body", [{}, {"id": ""}, {"id": 7}])
def test_an_answer_without_an_id_is_malformed(body):
    from app.providers.errors import ProviderMalformed
    from app.providers.openai_files import RemoteFile

    with pytest.raises(ProviderMalformed, match="no id"):
        RemoteFile.from_body(body)
