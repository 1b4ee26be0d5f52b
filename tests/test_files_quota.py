"""Storage quotas (app/files/quota.py): per user across projects, per project in bytes and in
files; refused with a 413 naming the quota and nothing stored; the Files tab and the list show
used/allowed; another user is unaffected; concurrent uploads never cross a quota; files per
page-form upload are capped."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from app.config import ConfigError, load_config
from app.files.quota import MIB, Quotas, StorageUsage, Usage, human_size, refusal
from tests.factories import make_project, make_user
from tests.filehelp import files_page, login, multipart, on_disk, rows

KB = 1024


def blob(size: int, tag: str) -> bytes:
    """``size`` bytes of UTF-8 text, different for each ``tag`` (no two are duplicates)."""
    head = f"{tag}\n".encode()
    return head + b"x" * (size - len(head))


def upload(client, user, project_id, name, content: bytes):
    """An API upload with a hand-built body (the test client leaves large bodies' spool files
    open)."""
    return form_post(client, f"/api/projects/{project_id}/files", [(name, content)], user.headers)


def form_post(client, url: str, files: list[tuple[str, bytes]], headers=None):
    boundary = "----prompthub-quota"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in files
    )
    body += f"--{boundary}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    return client.post(url, data=body, content_type=content_type, headers=headers or {})


def quota_error(resp) -> dict:
    assert resp.status_code == 413, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "storage_quota_exceeded"
    return error


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs bot")


# --- the pure core -------------------------------------------------------------------------


def usage(project=(0, 0), user=(0, 0), limits=(10 * MIB, 4 * MIB, 3)) -> StorageUsage:
    """Usage as (files, bytes) for the project and the user; quotas (user bytes, project bytes,
    project files)."""
    return StorageUsage(
        project=Usage(files=project[0], bytes=project[1]),
        user=Usage(files=user[0], bytes=user[1]),
        quotas=Quotas(*limits),
    )


@pytest.mark.parametrize(
    ("current", "size", "quota"),
    [
        (usage(), 4 * MIB, None),  # exactly the project quota fits
        (usage(), 4 * MIB + 1, "project_bytes"),
        (usage(project=(2, MIB), user=(2, MIB)), 3 * MIB, None),
        (usage(project=(3, 10), user=(3, 10)), 1, "project_files"),
        (usage(project=(0, 0), user=(9, 9 * MIB)), MIB, None),  # the user quota, exactly
        (usage(project=(0, 0), user=(9, 9 * MIB)), MIB + 1, "user_bytes"),
    ],
)
def test_refusal_names_the_first_quota_a_file_would_cross(current, size, quota):
    refused = refusal(current, name="a.txt", size=size)
    assert (refused.extra["quota"]["name"] if refused else None) == quota


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (1, "1 byte"),
        (900, "900 bytes"),
        (1536, "1.5 KB"),
        (512 * MIB, "512 MB"),
        (1024 * MIB, "1 GB"),
    ],
)
def test_sizes_are_said_in_the_settings_units(count, text):
    assert human_size(count) == text


def test_quota_settings_have_defaults_and_refuse_less_than_one(tmp_path):
    cfg = load_config(tmp_path, env={"SECRET_KEY": "x" * 40})
    assert (cfg["STORAGE_QUOTA_USER_MB"], cfg["STORAGE_QUOTA_PROJECT_MB"]) == (1024, 512)
    assert (cfg["STORAGE_QUOTA_PROJECT_FILES"], cfg["UPLOAD_MAX_FILES_PER_REQUEST"]) == (500, 20)
    for key in ("STORAGE_QUOTA_USER_MB", "UPLOAD_MAX_FILES_PER_REQUEST"):
        with pytest.raises(ConfigError, match=f"{key} must be 1 or more, got 0"):
            load_config(tmp_path, env={"SECRET_KEY": "x" * 40, key: "0"})


# --- each quota ----------------------------------------------------------------------------


def test_a_file_over_the_project_quota_is_413_naming_it_and_nothing_is_stored(
    app, client, owner, project_id
):
    app.config["STORAGE_QUOTA_PROJECT_MB"] = 1
    assert upload(client, owner, project_id, "a.txt", blob(600 * KB, "a")).status_code == 201
    before = on_disk(app, project_id)

    error = quota_error(upload(client, owner, project_id, "b.txt", blob(600 * KB, "b")))
    assert error["quota"] == {
        "name": "project_bytes",
        "limit": MIB,
        "used": 600 * KB,
        "adding": 600 * KB,
    }
    assert "b.txt (600 KB) was not stored" in error["message"]
    assert "this project past its storage quota of 1 MB (600 KB used)" in error["message"]
    assert error["fields"] == {"file": error["message"]}
    assert [r.name for r in rows(app)] == ["a.txt"] and on_disk(app, project_id) == before
    # A file that still fits is stored.
    assert upload(client, owner, project_id, "c.txt", blob(400 * KB, "c")).status_code == 201


def test_the_user_quota_counts_every_project_of_the_user(app, client, owner, project_id):
    app.config["STORAGE_QUOTA_USER_MB"] = 1
    other_project = make_project(app, owner, name="Second")
    assert upload(client, owner, project_id, "a.txt", blob(600 * KB, "a")).status_code == 201

    error = quota_error(upload(client, owner, other_project, "b.txt", blob(600 * KB, "b")))
    assert error["quota"]["name"] == "user_bytes" and error["quota"]["used"] == 600 * KB
    assert "your storage quota of 1 MB (600 KB used across your projects)" in error["message"]
    assert on_disk(app, other_project) == []


def test_the_project_file_count_is_limited(app, client, owner, project_id):
    app.config["STORAGE_QUOTA_PROJECT_FILES"] = 2
    for name in ("a.txt", "b.txt"):
        assert upload(client, owner, project_id, name, name.encode()).status_code == 201
    error = quota_error(upload(client, owner, project_id, "c.txt", b"c"))
    assert error["quota"] == {"name": "project_files", "limit": 2, "used": 2, "adding": 1}
    assert "already has 2 files, its limit of 2" in error["message"]
    # Another project of the same user has its own count.
    assert upload(client, owner, make_project(app, owner), "c.txt", b"c").status_code == 201


def test_the_same_bytes_again_cost_nothing_and_a_delete_frees_room(app, client, owner, project_id):
    app.config["STORAGE_QUOTA_PROJECT_MB"] = 1
    first = upload(client, owner, project_id, "a.txt", blob(900 * KB, "a")).get_json()
    again = upload(client, owner, project_id, "copy.txt", blob(900 * KB, "a"))
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    quota_error(upload(client, owner, project_id, "b.txt", blob(200 * KB, "b")))

    url = f"/api/projects/{project_id}/files/{first['id']}"
    assert client.delete(url, headers=owner.headers).status_code == 204
    assert upload(client, owner, project_id, "b.txt", blob(200 * KB, "b")).status_code == 201


def test_a_second_user_is_unaffected_by_the_first_users_quota(app, client, owner, project_id):
    app.config.update(STORAGE_QUOTA_USER_MB=1, STORAGE_QUOTA_PROJECT_FILES=1)
    upload(client, owner, project_id, "a.txt", blob(MIB, "a"))
    quota_error(upload(client, owner, project_id, "b.txt", b"b"))

    other = make_user(app)
    theirs = make_project(app, other)
    resp = upload(client, other, theirs, "b.txt", blob(MIB, "b"))
    assert resp.status_code == 201, resp.get_json()
    listed = client.get(f"/api/projects/{theirs}/files", headers=other.headers).get_json()
    assert listed["storage"]["user"] == {"bytes": MIB, "files": 1, "max_bytes": MIB}


def test_another_users_files_and_usage_stay_404(app, client, owner, project_id):
    file_id = upload(client, owner, project_id, "a.txt", b"secret").get_json()["id"]
    other = make_user(app)
    for url in (
        f"/api/projects/{project_id}/files",
        f"/api/projects/{project_id}/files/{file_id}",
        f"/api/projects/{project_id}/files/{file_id}/download",
    ):
        assert client.get(url, headers=other.headers).status_code == 404, url
    refused = upload(client, other, project_id, "b.txt", b"b")
    assert refused.status_code == 404
    login(client, other)
    assert client.get(f"/projects/{project_id}/files").status_code == 404
    assert [r.name for r in rows(app)] == ["a.txt"]


# --- what the user sees ----------------------------------------------------------------------


def test_the_list_reports_usage_against_the_quotas(app, client, owner, project_id):
    upload(client, owner, project_id, "a.txt", blob(3 * KB, "a"))
    upload(client, owner, make_project(app, owner, name="Second"), "b.txt", blob(5 * KB, "b"))
    listed = client.get(f"/api/projects/{project_id}/files", headers=owner.headers).get_json()
    assert listed["storage"] == {
        "project": {"bytes": 3 * KB, "files": 1, "max_bytes": 512 * MIB, "max_files": 500},
        "user": {"bytes": 8 * KB, "files": 2, "max_bytes": 1024 * MIB},
    }


def test_the_files_tab_shows_used_and_allowed(app, client, owner, project_id):
    upload(client, owner, project_id, "a.txt", blob(3 * KB, "a"))
    upload(client, owner, make_project(app, owner, name="Second"), "b.txt", blob(5 * KB, "b"))
    login(client, owner)
    html = files_page(client, project_id)
    assert "This project</dt>" in html and "All your projects</dt>" in html
    assert "3 KB of 512 MB</span>" in html and "1 of 500 files" in html
    assert "8 KB of 1 GB</span>" in html
    assert f'max="{512 * MIB}" value="{3 * KB}"' in html
    assert "storage-full" not in html
    app.config["STORAGE_QUOTA_PROJECT_FILES"] = 1
    assert "Your storage quota is used up: delete files to upload more." in files_page(
        client, project_id
    )


def test_a_form_upload_stores_the_files_that_fit_and_says_which_did_not(
    app, client, owner, project_id
):
    """Each file of a form is its own upload: in order, each that fits is stored."""
    app.config["STORAGE_QUOTA_PROJECT_MB"] = 1
    login(client, owner)
    chosen = [("a.txt", blob(400 * KB, "a")), ("b.txt", blob(700 * KB, "b"))]
    resp = form_post(client, f"/projects/{project_id}/files", [*chosen, ("c.txt", b"c")])
    assert resp.status_code == 302
    html = files_page(client, project_id)
    assert "Uploaded a.txt." in html and "Uploaded c.txt." in html
    assert "b.txt (700 KB) was not stored: it would take this project past" in html
    assert sorted(r.name for r in rows(app)) == ["a.txt", "c.txt"]
    assert len(on_disk(app, project_id)) == 2


def test_a_form_with_more_files_than_allowed_stores_none(app, client, owner, project_id):
    app.config["UPLOAD_MAX_FILES_PER_REQUEST"] = 3
    login(client, owner)
    files = [(f"f{i}.txt", f"file {i}".encode()) for i in range(4)]
    resp = form_post(client, f"/projects/{project_id}/files", files)
    assert resp.status_code == 302
    html = files_page(client, project_id)
    assert "4 files were chosen; up to 3 can be uploaded at once. Nothing was uploaded" in html
    assert "3 files at once" in html  # the form says so up front
    assert rows(app) == [] and on_disk(app, project_id) == []


# --- concurrency -----------------------------------------------------------------------------


def post_file(base: str, project_id: int, token: str, name: str, content: bytes) -> int:
    body, content_type = multipart(name, content)
    req = urllib.request.Request(
        f"{base}/api/projects/{project_id}/files",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        assert json.loads(exc.read())["error"]["code"] == "storage_quota_exceeded"
        return exc.code


def race(base: str, project_id: int, token: str, files: list[tuple[str, bytes]]) -> list[int]:
    """Upload ``files`` at once, one thread each released together; their statuses."""
    start = threading.Barrier(len(files))
    statuses: list[int] = []

    def one(name: str, content: bytes) -> None:
        start.wait()
        statuses.append(post_file(base, project_id, token, name, content))

    threads = [threading.Thread(target=one, args=item) for item in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_concurrent_uploads_never_cross_the_quota(app, live_server, owner, project_id):
    """Twelve uploads of 900 KB at once against a 3 MB project quota: three fit, whatever the
    interleaving (the check that decides runs under the owner's lock, in the inserting
    transaction), and nothing of the refused ones is left in the store."""
    app.config["STORAGE_QUOTA_PROJECT_MB"] = 3
    racers = 12
    statuses = race(
        live_server,
        project_id,
        owner.token,
        [(f"r{i}.txt", blob(900 * KB, f"racer {i}")) for i in range(racers)],
    )
    stored_count = statuses.count(201)
    assert sorted(statuses) == [201] * 3 + [413] * (racers - 3), f"{stored_count} stored"
    stored = rows(app)
    assert sum(r.size for r in stored) <= 3 * MIB and len(stored) == 3
    assert sorted(on_disk(app, project_id)) == sorted(r.stored_name for r in stored)


def test_concurrent_uploads_of_the_same_bytes_at_the_quota_are_duplicates(
    app, live_server, owner, project_id
):
    """Room for one file, eight uploads of the same bytes at once: one is stored and the others
    are answered as that file (the same bytes cost nothing), not refused by the quota."""
    app.config["STORAGE_QUOTA_PROJECT_FILES"] = 1
    racers = 8
    content = blob(900 * KB, "the same")
    statuses = race(
        live_server, project_id, owner.token, [(f"s{i}.txt", content) for i in range(racers)]
    )
    assert sorted(statuses) == [200] * (racers - 1) + [201], statuses
    assert len(rows(app)) == 1 and len(on_disk(app, project_id)) == 1
