"""``flask backup`` / ``flask restore`` (app/backup/, docs/operations.md).

The restore drill runs end to end on the embedded default (SQLite and the local file store)
with real processes: gunicorn serving a user's projects, prompt versions, a conversation answered
by the fake provider and uploaded files; ``flask backup`` while it serves (and while another
client uploads); a new empty instance; ``flask restore``; gunicorn again, checked through HTTP.
The other tests feed the commands bad input: each is one line and exit 1, never a traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import subprocess
import tarfile
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.conftest import PG_URL, S3_BUCKET, base_config, drop_pg_database, recreate_pg_database
from tests.factories import make_project, make_user
from tests.filehelp import multipart
from tools.fake_provider import Scenario
from tools.servers import BIN, ROOT, gunicorn, migrate, provider_env

PASSWORD = "correct horse battery"


# --- helpers ---------------------------------------------------------------------------------


def migration_heads() -> set[str]:
    """The newest migrations in ``migrations/``, read by Alembic itself."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return set(ScriptDirectory.from_config(config).get_heads())


def instance_env(fake, folder: Path) -> dict[str, str]:
    """A production server whose whole state lives in ``folder`` (an instance of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    return provider_env(
        fake,
        folder,
        f"sqlite:///{folder / 'prompthub.db'}",
        AUTH_REVOCATION_LOG=str(folder / "auth-revocations.log"),
        STORAGE_STAGING_DIR=str(folder / "staging"),
    )


def flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "flask"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def state(c: httpx.Client) -> dict:
    """What the user sees: projects, prompt versions, conversations with their messages, files."""
    seen: dict = {"projects": c.get("/api/projects").json()["data"]}
    for project in seen["projects"]:
        pid = project["id"]
        seen[f"versions {pid}"] = c.get(f"/api/projects/{pid}/prompts").json()["data"]
        seen[f"files {pid}"] = c.get(f"/api/projects/{pid}/files").json()["data"]
        for conv in c.get(f"/api/projects/{pid}/conversations").json()["data"]:
            seen[f"conversation {conv['id']}"] = conv
            messages = c.get(f"/api/conversations/{conv['id']}/messages").json()["data"]
            seen[f"messages {conv['id']}"] = messages
    return seen


def login(base: str, email: str) -> httpx.Client:
    r = httpx.post(
        f"{base}/api/auth/login", json={"email": email, "password": PASSWORD}, trust_env=False
    )
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    return httpx.Client(base_url=base, headers=headers, trust_env=False, timeout=30)


def upload(c: httpx.Client, project_id: int, name: str, content: bytes) -> dict:
    body, content_type = multipart(name, content)
    r = c.post(
        f"/api/projects/{project_id}/files", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code == 201, r.text
    return r.json()


def manifest_of(archive: Path) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        return json.load(tar.extractfile("manifest.json"))


def rewrite(archive: Path, target: Path, change) -> None:
    """Copy ``archive`` to ``target`` with ``change(name, data) -> data`` applied to members."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(target, "w:gz") as out:
        for member in src:
            data = change(member.name, src.extractfile(member).read())
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def only_archive(folder: Path) -> Path:
    (archive,) = folder.glob("*.tar.gz")
    return archive


# --- the drill -------------------------------------------------------------------------------


@pytest.mark.server
def test_restore_drill_a_new_instance_serves_what_the_backup_held(fake, tmp_path):
    fake.reset()
    old_env, new_env = instance_env(fake, tmp_path / "old"), instance_env(fake, tmp_path / "new")
    backups = tmp_path / "backups"
    backups.mkdir()
    email = "drill@example.com"
    content = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64  # every byte value
    migrate(old_env)
    with gunicorn(old_env, tmp_path / "old") as server:
        r = httpx.post(
            f"{server.base}/api/auth/register",
            json={"email": email, "password": PASSWORD},
            trust_env=False,
        )
        assert r.status_code == 201, r.text
        with login(server.base, email) as c:
            r = c.post("/api/projects", json={"name": "Support", "system_prompt": "Be brief."})
            project = r.json()["id"]
            for note, prompt in (("warmer", "Be brief and kind."), ("cites", "Cite the policy.")):
                r = c.post(
                    f"/api/projects/{project}/prompts", json={"content": prompt, "note": note}
                )
                assert r.status_code == 201, r.text
            fake.script(
                "responses", Scenario(text="Thirty days."), Scenario(text="Yes, with a receipt.")
            )
            r = c.post(
                f"/api/projects/{project}/chat", json={"message": "Refunds?", "stream": False}
            )
            assert r.status_code == 200 and r.json()["reply"] == "Thirty days.", r.text
            conversation = r.json()["conversation_id"]
            r = c.post(
                f"/api/projects/{project}/chat",
                json={"message": "In store?", "conversation_id": conversation, "stream": False},
            )
            assert r.json()["reply"] == "Yes, with a receipt.", r.text
            kept = upload(c, project, "chart.png", content)
            busy = c.post("/api/projects", json={"name": "Busy"}).json()["id"]

            # Backup while the server runs and another client keeps uploading.
            stop, first = threading.Event(), threading.Event()
            uploaded = []

            def keep_uploading() -> None:
                with login(server.base, email) as other:
                    while not stop.is_set():
                        n = len(uploaded)
                        uploaded.append(upload(other, busy, f"n{n}.txt", f"upload {n}\n".encode()))
                        first.set()

            uploader = threading.Thread(target=keep_uploading)
            uploader.start()
            try:
                assert first.wait(timeout=60), "no upload went through"
                done = flask(old_env, "backup", str(backups))
            finally:
                stop.set()
                uploader.join(timeout=60)
            assert done.returncode == 0, done.stderr
            assert "wrote" in done.stdout and "Traceback" not in done.stderr
            seen = state(c)
            old_token = c.headers["Authorization"]
    archive = only_archive(backups)
    manifest = manifest_of(archive)
    assert manifest["database"]["revision"] in migration_heads()
    assert manifest["files"]["missing"] == [] and manifest["files"]["mismatched"] == []
    in_archive = manifest["database"]["counts"]["files"]  # the snapshot's file rows
    assert manifest["files"]["count"] == in_archive and in_archive >= 2
    assert len([n for n in manifest["members"] if n.startswith("files/")]) == in_archive

    assert not (tmp_path / "new" / "prompthub.db").exists()
    done = flask(new_env, "restore", str(archive))
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout

    with gunicorn(new_env, tmp_path / "new") as server, login(server.base, email) as c:
        after = state(c)
        busy_after = after.pop(f"files {busy}")
        seen.pop(f"files {busy}")
        assert after == seen  # projects, versions, conversations, messages, the kept file
        # Same secrets: a token issued before the backup still works (its session row is back).
        me = httpx.get(
            f"{server.base}/api/auth/me", headers={"Authorization": old_token}, trust_env=False
        )
        assert me.status_code == 200 and me.json()["user"]["email"] == email
        assert len(busy_after) == in_archive - 1  # the uploads the snapshot held
        r = c.get(f"/api/projects/{project}/files/{kept['id']}/download")
        assert r.status_code == 200 and r.content == content
        for row in busy_after:
            r = c.get(f"/api/projects/{busy}/files/{row['id']}/download")
            assert hashlib.sha256(r.content).hexdigest() == row["sha256"]
        messages = after[f"messages {conversation}"]
        assert [m["content"] for m in messages] == [
            "Refunds?",
            "Thirty days.",
            "In store?",
            "Yes, with a receipt.",
        ]


# --- the commands in process, bad input -------------------------------------------------------


def make_instance(
    folder: Path, database_url: str | None = None, revision: str = "head", **settings
):
    """An app whose state lives in ``folder``, its database migrated to ``revision``."""
    from flask_migrate import upgrade

    folder.mkdir(parents=True, exist_ok=True)
    app = create_app(
        base_config(
            database_url or f"sqlite:///{folder / 'prompthub.db'}",
            UPLOAD_DIR=str(folder / "uploads"),
            REPLY_SPOOL_DIR=str(folder / "spool"),
            STORAGE_STAGING_DIR=str(folder / "staging"),
            **settings,
        )
    )
    with app.app_context():
        upgrade(revision=revision)
        db.engine.dispose()
    return app


@pytest.fixture
def source(tmp_path):
    """An instance with a user, a project, an uploaded file and a spooled reply."""
    src = make_instance(tmp_path / "src")
    user = make_user(src, email="ops@example.com")
    project = make_project(src, user, name="Docs")
    client = src.test_client()
    resp = client.post(
        f"/api/projects/{project}/files",
        data={"file": (io.BytesIO(b"hello backup\n"), "a.txt")},
        headers={"Authorization": f"Bearer {user.token}"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    spool = Path(src.config["REPLY_SPOOL_DIR"])
    spool.mkdir(parents=True)
    (spool / "7.json").write_text('{"reply_id": 7, "conversation_id": 1, "values": {}}')
    yield src
    dispose(src)


def dispose(app) -> None:
    app.extensions["broker"].shutdown()
    app.extensions["token_users"].shutdown()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def target(tmp_path):
    app = create_app(
        base_config(
            f"sqlite:///{tmp_path / 'dst' / 'prompthub.db'}",
            UPLOAD_DIR=str(tmp_path / "dst" / "uploads"),
            REPLY_SPOOL_DIR=str(tmp_path / "dst" / "spool"),
        )
    )
    yield app
    dispose(app)


def run(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def archive(source, tmp_path) -> Path:
    path = tmp_path / "backup.tar.gz"
    result = run(source, "backup", str(path))
    assert result.exit_code == 0, result.output
    return path


def test_backup_and_restore_carry_rows_files_and_the_reply_spool(source, target, archive):
    result = run(target, "restore", str(archive))
    assert result.exit_code == 0, result.output
    with target.app_context():
        assert db.session.execute(text("SELECT email FROM users")).scalars().all() == [
            "ops@example.com"
        ]
        (project, stored) = db.session.execute(
            text("SELECT project_id, stored_name FROM files")
        ).one()
    restored = Path(target.config["UPLOAD_DIR"]) / str(project) / stored
    assert restored.read_bytes() == b"hello backup\n"
    assert (Path(target.config["REPLY_SPOOL_DIR"]) / "7.json").is_file()
    assert list(Path(target.config["UPLOAD_DIR"]).rglob(".restore-*")) == []


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"not an archive at all", id="not-gzip"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:100] + b"\x00" * 64 + data[164:], id="bytes-changed"),
    ],
)
def test_a_corrupt_archive_is_refused_and_nothing_is_restored(archive, target, tmp_path, damage):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(damage(archive.read_bytes()))
    result = run(target, "restore", str(bad))
    assert result.exit_code == 1
    assert "restore failed:" in result.output
    assert "cannot be read as a backup archive" in result.output
    assert not Path(target.config["UPLOAD_DIR"]).exists()
    assert not Path(target.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")).exists()


def test_a_member_that_does_not_match_its_checksum_is_refused(archive, target, tmp_path):
    edited = tmp_path / "edited.tar.gz"
    rewrite(archive, edited, lambda n, d: b"HELLO backup\n" if n.startswith("files/") else d)
    result = run(target, "restore", str(edited))
    assert result.exit_code == 1
    assert "checksum mismatch in 1 member(s): files/" in result.output
    assert not Path(target.config["UPLOAD_DIR"]).exists()


def test_an_archive_without_a_manifest_is_refused(archive, target, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    with tarfile.open(archive, "r:gz") as src, tarfile.open(cut, "w:gz") as out:
        for member in src:
            if member.name != "manifest.json":
                out.addfile(member, src.extractfile(member))
    result = run(target, "restore", str(cut))
    assert result.exit_code == 1
    assert "has no manifest.json: not a whole PromptHub backup" in result.output


def test_a_target_that_holds_data_is_refused_unless_forced(archive, source, tmp_path):
    result = run(source, "restore", str(archive))
    assert result.exit_code == 1
    assert "the target is not empty:" in result.output
    assert re.search(r"SQLite database \S+ holds \d+ rows", result.output)
    assert "already holds 1 of the archive's files" in result.output
    assert "--force" in result.output
    forced = run(source, "restore", "--force", str(archive))
    assert forced.exit_code == 0, forced.output


def test_an_archive_from_newer_code_is_refused(archive, target, tmp_path):
    newer = tmp_path / "newer.tar.gz"
    work = tmp_path / "newer-db"
    work.mkdir()

    # Change the revision inside the database and in the manifest, checksums kept right.
    with tarfile.open(archive, "r:gz") as src:
        src.extractall(work, filter="data")
    conn = sqlite3.connect(work / "database.sqlite3")
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["database"]["revision"] = "9999"
    body = (work / "database.sqlite3").read_bytes()
    manifest["members"]["database.sqlite3"] = {
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    (work / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(newer, "w:gz") as out:
        for name in manifest["members"]:
            out.add(work / name, arcname=name)
        out.add(work / "manifest.json", arcname="manifest.json")
    result = run(target, "restore", str(newer))
    assert result.exit_code == 1
    assert "migration 9999, which this code does not have" in result.output
    assert "made by newer code" in result.output


def test_an_archive_from_older_code_is_restored_and_migrated_forward(tmp_path, target):
    old = make_instance(tmp_path / "old", revision="0010")
    path = tmp_path / "old.tar.gz"
    assert run(old, "backup", str(path)).exit_code == 0
    dispose(old)
    assert manifest_of(path)["database"]["revision"] == "0010"
    result = run(target, "restore", str(path))
    assert result.exit_code == 0, result.output
    assert "running the migrations forward" in result.output
    with target.app_context():
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version in migration_heads()


def test_without_files_the_archive_holds_the_rows_and_no_bytes(source, target, tmp_path):
    path = tmp_path / "rows-only.tar.gz"
    result = run(source, "backup", "--without-files", str(path))
    assert result.exit_code == 0, result.output
    assert "no files" in result.output
    manifest = manifest_of(path)
    assert manifest["files"]["included"] is False
    assert not [n for n in manifest["members"] if n.startswith("files/")]
    assert run(target, "restore", str(path)).exit_code == 0
    with target.app_context():
        assert db.session.execute(text("SELECT count(*) FROM files")).scalar() == 1


def test_backup_without_a_database_or_a_folder_says_so(tmp_path, target):
    result = run(target, "backup", str(tmp_path / "none.tar.gz"))
    assert result.exit_code == 1
    assert "no backup written: there is no database at" in result.output
    assert not (tmp_path / "none.tar.gz").exists()
    result = run(target, "backup", str(tmp_path / "no" / "such" / "folder.tar.gz"))
    assert result.exit_code == 1 and "is not a folder" in result.output


def test_backup_does_not_replace_an_existing_archive(source, archive):
    before = archive.read_bytes()
    result = run(source, "backup", str(archive))
    assert result.exit_code == 1
    assert "exists: choose another name, or add --force" in result.output
    assert archive.read_bytes() == before


def test_a_bad_archive_through_the_real_command_is_one_line_not_a_traceback(tmp_path, fake):
    env = instance_env(fake, tmp_path / "inst")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    done = flask(env, "restore", str(bad))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("Error: restore failed:"), done.stderr


@pytest.mark.server
def test_an_s3_store_is_backed_up_and_restored_through_the_store(tmp_path, seaweed):
    """The bytes come out of one bucket prefix and go into another (SeaweedFS, boto3)."""
    old, new = (f"bk-{uuid.uuid4().hex[:10]}" for _ in range(2))
    src = make_instance(tmp_path / "src", **seaweed.settings(S3_BUCKET, old))
    user = make_user(src, email="s3@example.com")
    project = make_project(src, user, name="Bucket")
    resp = src.test_client().post(
        f"/api/projects/{project}/files",
        data={"file": (io.BytesIO(b"in the bucket\n"), "b.txt")},
        headers={"Authorization": f"Bearer {user.token}"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    path = tmp_path / "s3.tar.gz"
    assert run(src, "backup", str(path)).exit_code == 0
    dispose(src)
    dst = make_instance(tmp_path / "dst", **seaweed.settings(S3_BUCKET, new))
    try:
        result = run(dst, "restore", str(path))
        assert result.exit_code == 0, result.output
        (key,) = seaweed.keys(S3_BUCKET, f"{new}/")
        body = seaweed.client().get_object(Bucket=S3_BUCKET, Key=key)["Body"].read()
        assert body == b"in the bucket\n"
        again = run(dst, "restore", str(path))
        assert "already holds 1 of the archive's files" in again.output
    finally:
        dispose(dst)


# --- PostgreSQL: pg_dump / pg_restore on one snapshot ------------------------------------------


@pytest.mark.postgres
def test_postgres_backup_restores_into_an_empty_database(tmp_path, fake):
    src_url, dst_url = PG_URL + "_bsrc", PG_URL + "_bdst"
    for url in (src_url, dst_url):
        recreate_pg_database(url)
    try:
        src = make_instance(tmp_path / "src", database_url=src_url)
        user = make_user(src, email="pg@example.com")
        make_project(src, user, name="On PG")
        path = tmp_path / "pg.tar.gz"
        result = run(src, "backup", str(path))
        assert result.exit_code == 0, result.output
        assert manifest_of(path)["database"]["engine"] == "postgresql"
        again = run(src, "restore", str(path))
        assert again.exit_code == 1 and "the target is not empty" in again.output
        dispose(src)
        dst = make_instance(tmp_path / "dst", database_url=dst_url)  # migrated, no rows
        result = run(dst, "restore", str(path))
        assert result.exit_code == 0, result.output
        with dst.app_context():
            assert db.session.execute(text("SELECT name FROM projects")).scalars().all() == [
                "On PG"
            ]
            assert db.session.execute(text("SELECT email FROM users")).scalar() == "pg@example.com"
        dispose(dst)
    finally:
        for url in (src_url, dst_url):
            drop_pg_database(url)
