"""``flask files migrate-storage`` (local directory → S3, checked by sha256, resumable, local
files kept) and ``flask files check-storage``, against the session's SeaweedFS."""

from __future__ import annotations

import hashlib
import signal
import subprocess

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import S3_BUCKET, base_config
from tests.factories import make_project
from tests.filehelp import rows, upload
from tools.servers import BIN, ROOT, free_port, server_env


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs bot")


@pytest.fixture
def s3_app(app, database_url, s3_settings):
    """The same database and UPLOAD_DIR as ``app`` (files stored locally), configured for S3:
    the app after the operator set STORAGE_URL."""
    s3 = create_app(base_config(database_url, UPLOAD_DIR=app.config["UPLOAD_DIR"], **s3_settings))
    yield s3
    s3.extensions["broker"].shutdown()
    with s3.app_context():
        db.session.remove()
        db.engine.dispose()


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["files", *args])


def store_keys(s3_app, seaweed) -> list[str]:
    return seaweed.keys(S3_BUCKET, s3_app.extensions["storage"].prefix + "/")


def local_files(app) -> dict[str, bytes]:
    root = app.extensions["storage"].root
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def add_files(app, client, owner, project_id, count: int, size: int = 1000) -> dict[int, bytes]:
    made = {}
    for i in range(count):
        content = f"file {i}\n".encode() * (size // 7)
        made[upload(client, owner, project_id, f"f{i}.txt", content).get_json()["id"]] = content
    return made


@pytest.mark.server
def test_migrate_copies_every_file_checked_and_keeps_the_local_ones(
    app, client, owner, project_id, s3_app, seaweed
):
    made = add_files(app, client, owner, project_id, 3)
    before = local_files(app)
    result = cli(s3_app, "migrate-storage")
    assert result.exit_code == 0, result.output
    assert "copied 3, skipped 0, missing 0, mismatched 0, failed 0" in result.output
    assert "local files are kept" in result.output
    assert local_files(app) == before  # never deleted or changed
    prefix = s3_app.extensions["storage"].prefix
    assert store_keys(s3_app, seaweed) == sorted(
        f"{prefix}/{project_id}/{row.stored_name}" for row in rows(app)
    )
    s3_client = s3_app.test_client()
    for file_id, content in made.items():
        resp = s3_client.get(
            f"/api/projects/{project_id}/files/{file_id}/download", headers=owner.headers
        )
        assert resp.status_code == 200 and resp.data == content
        resp.close()
    again = cli(s3_app, "migrate-storage")
    assert again.exit_code == 0
    assert "copied 0, skipped 3, missing 0, mismatched 0, failed 0" in again.output


@pytest.mark.server
def test_migrate_reports_missing_and_damaged_local_files_and_copies_neither(
    app, client, owner, project_id, s3_app, seaweed
):
    made = add_files(app, client, owner, project_id, 3)
    ids = sorted(made)
    by_id = {row.id: row for row in rows(app)}
    store = app.extensions["storage"]
    store.path(project_id, by_id[ids[0]].stored_name).unlink()
    store.path(project_id, by_id[ids[1]].stored_name).write_bytes(b"bit rot")
    result = cli(s3_app, "migrate-storage")
    assert result.exit_code == 1
    assert "copied 1, skipped 0, missing 1, mismatched 1, failed 0" in result.output
    assert f"missing: file ids {ids[0]}" in result.output
    assert f"mismatched: file ids {ids[1]}" in result.output
    prefix = s3_app.extensions["storage"].prefix
    assert store_keys(s3_app, seaweed) == [f"{prefix}/{project_id}/{by_id[ids[2]].stored_name}"]


@pytest.mark.server
def test_an_interrupted_migration_goes_on_without_copying_again(
    app, client, owner, project_id, s3_app, s3_settings, seaweed, database_url
):
    """Killed (SIGKILL) after its first copy; the second run skips what is there and copies
    the rest: every object whole and checked, none copied twice."""
    total = 40
    add_files(app, client, owner, project_id, total, size=200_000)
    env = server_env(
        database_url,
        free_port(),
        UPLOAD_DIR=app.config["UPLOAD_DIR"],
        PYTHONUNBUFFERED="1",
        **s3_settings,
    )
    proc = subprocess.Popen(
        [str(BIN / "flask"), "files", "migrate-storage"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("copied "):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    present = len(store_keys(s3_app, seaweed))
    assert 1 <= present < total

    result = cli(s3_app, "migrate-storage")
    assert result.exit_code == 0, result.output
    assert f"copied {total - present}, skipped {present}, missing 0" in result.output
    store = s3_app.extensions["storage"]
    for row in rows(app):  # every object whole, with the row's checksum recorded
        info = store.head(project_id, row.stored_name)
        assert (info.size, info.sha256) == (row.size, row.sha256)
        opened = store.open(project_id, row.stored_name)
        with opened.file:
            assert hashlib.sha256(b"".join(opened.chunks())).hexdigest() == row.sha256


def test_migrate_needs_a_store_to_copy_to(app):
    result = cli(app, "migrate-storage")
    assert result.exit_code == 1
    assert "STORAGE_URL is empty" in result.output


@pytest.mark.server
def test_check_storage_says_what_is_wrong(app, s3_app, seaweed, database_url, tmp_path):
    ok = cli(s3_app, "check-storage")
    assert ok.exit_code == 0
    assert f"storage ok: s3://{S3_BUCKET}/" in ok.output
    local = cli(app, "check-storage")
    assert local.exit_code == 0 and "storage ok: local directory" in local.output
    missing = create_app(
        base_config(
            database_url, UPLOAD_DIR=str(tmp_path / "u"), **seaweed.settings("no-such-bucket")
        )
    )
    try:
        result = cli(missing, "check-storage")
    finally:
        missing.extensions["broker"].shutdown()
        with missing.app_context():
            db.engine.dispose()
    assert result.exit_code == 1
    assert "the bucket no-such-bucket does not exist" in result.output
