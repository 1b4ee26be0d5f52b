"""The storage interface (``app/storage/``), the same contract on every backend: the local
directory and a real S3 server (SeaweedFS, ``tools/seaweed.py``). Then what only one backend
has: S3's keys, a missing bucket, refused credentials, an unreachable endpoint; the settings."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_config
from app.storage.base import (
    ObjectMissing,
    StorageConfigError,
    StoreUnavailable,
    new_name,
    parse_storage_url,
)
from app.storage.registry import build_store
from tests.conftest import S3_BUCKET
from tools.servers import ROOT, free_port


def make_store(tmp_path: Path, settings: dict):
    config = load_config(tmp_path, {"UPLOAD_DIR": str(tmp_path / "uploads"), **settings}, env={})
    return build_store(config)


@pytest.fixture
def store(tmp_path, storage_settings):
    return make_store(tmp_path, storage_settings)


def staged(store, project_id: int, content: bytes) -> tuple[Path, str]:
    folder = store.staging_dir(project_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".upload-{new_name()[:8]}.part"
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def put(store, project_id: int, content: bytes) -> str:
    name = new_name()
    path, digest = staged(store, project_id, content)
    store.put(project_id, name, path, sha256=digest)
    path.unlink(missing_ok=True)  # the service discards the staged file after put
    return name


def read_all(store, project_id: int, name: str) -> bytes:
    opened = store.open(project_id, name)
    with opened.file:
        return b"".join(opened.chunks())


# --- the contract, on both backends ----------------------------------------------------------


def test_put_then_open_streams_the_same_bytes(store):
    content = os.urandom(700 * 1024)  # several chunks
    name = put(store, 5, content)
    opened = store.open(5, name)
    with opened.file:
        assert opened.size == len(content)
        chunks = list(opened.chunks(64 * 1024))
    assert b"".join(chunks) == content
    assert max(len(c) for c in chunks) <= 64 * 1024 and len(chunks) >= 11


def test_head_says_the_size_and_the_recorded_checksum(store):
    content = b"alpha\n" * 100
    name = put(store, 5, content)
    info = store.head(5, name)
    assert info.size == len(content)
    # S3 records the sha256 it was given; the local directory keeps none (it is the bytes).
    expected = hashlib.sha256(content).hexdigest() if store.kind == "s3" else None
    assert info.sha256 == expected
    assert store.head(5, new_name()) is None


def test_a_seek_reads_from_that_offset(store):
    content = bytes(range(256)) * 4096  # 1 MiB
    name = put(store, 5, content)
    opened = store.open(5, name)
    with opened.file as fh:
        assert fh.seek(0, os.SEEK_END) == len(content)  # measuring the size costs no read
        fh.seek(0)
        assert fh.read(10) == content[:10]
        fh.seek(700_000)
        assert fh.read(5000) == content[700_000:705_000]
        fh.seek(20)
        assert fh.read(3) == content[20:23]


def test_missing_objects_are_object_missing(store):
    name = new_name()
    with pytest.raises(ObjectMissing):
        store.open(5, name)
    with pytest.raises(ObjectMissing), store.local_copy(5, name):
        pass


def test_delete_removes_the_object_and_deleting_again_is_fine(store):
    name = put(store, 5, b"bye")
    store.delete(5, name)
    assert store.head(5, name) is None
    with pytest.raises(ObjectMissing):
        store.open(5, name)
    store.delete(5, name)


def test_delete_project_removes_that_project_only(store):
    gone = [put(store, 7, f"seven {i}".encode()) for i in range(3)]
    kept = put(store, 70, b"seventy")  # a prefix of "7" as text: must not go with project 7
    store.delete_project(7)
    assert [store.head(7, name) for name in gone] == [None, None, None]
    assert store.head(70, kept) is not None
    store.delete_project(7)  # nothing left: still fine


def test_local_copy_is_a_readable_file_for_the_block_only(store, tmp_path):
    content = b"%PDF-1.4 pretend\n"
    name = put(store, 5, content)
    with store.local_copy(5, name) as path:
        assert path.read_bytes() == content
    if store.kind == "s3":  # a temporary copy in the staging folder, removed afterwards
        assert path.parent == store.staging_dir(5)
        assert not path.exists()
        assert list(store.staging_dir(5).iterdir()) == []
    else:  # the stored file itself
        assert path.exists()


@pytest.mark.parametrize(
    "name", ["../../x", "a/b", "%2e%2e", "..", "", "0" * 31, "A" * 32, "0" * 32 + "/x", None]
)
def test_names_that_are_not_generated_never_reach_a_path_or_key(store, name):
    path, digest = staged(store, 5, b"x")
    for call in (
        lambda: store.put(5, name, path, sha256=digest),
        lambda: store.open(5, name),
        lambda: store.head(5, name),
        lambda: store.delete(5, name),
    ):
        with pytest.raises(ValueError, match="not a generated stored name"):
            call()


@pytest.mark.parametrize("project_id", [0, -1, True, "3", "../3"])
def test_project_ids_must_be_positive_integers(store, project_id):
    with pytest.raises(ValueError, match="not a project id"):
        store.head(project_id, new_name())
    with pytest.raises(ValueError, match="not a project id"):
        store.delete_project(project_id)


def test_check_passes_on_a_working_store(store):
    store.check()


# --- S3 only ---------------------------------------------------------------------------------


@pytest.mark.server
def test_s3_keys_are_the_prefix_the_project_and_the_generated_name(tmp_path, s3_settings, seaweed):
    store = make_store(tmp_path, s3_settings)
    name = put(store, 12, b"keyed")
    prefix = s3_settings["STORAGE_URL"].removeprefix(f"s3://{S3_BUCKET}/")
    assert seaweed.keys(S3_BUCKET, prefix) == [f"{prefix}/12/{name}"]


@pytest.mark.server
def test_a_missing_bucket_is_a_configuration_error_naming_it(tmp_path, seaweed):
    store = make_store(tmp_path, seaweed.settings("no-such-bucket-here"))
    with pytest.raises(StorageConfigError, match="the bucket no-such-bucket-here does not exist"):
        store.check()
    path, digest = staged(store, 5, b"x")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.put(5, new_name(), path, sha256=digest)


@pytest.mark.server
def test_refused_credentials_are_a_configuration_error(tmp_path, seaweed):
    settings = {**seaweed.settings(S3_BUCKET), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    store = make_store(tmp_path, settings)
    with pytest.raises(StorageConfigError, match="refused access"):
        store.check()
    with pytest.raises(StoreUnavailable, match="refused the credentials"):
        store.open(5, new_name())


@pytest.mark.server
def test_an_unreachable_endpoint_is_unavailable_not_missing(tmp_path, seaweed):
    settings = {
        **seaweed.settings(S3_BUCKET),
        "STORAGE_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens
        "STORAGE_S3_MAX_ATTEMPTS": 1,
    }
    store = make_store(tmp_path, settings)
    with pytest.raises(StoreUnavailable) as caught:
        store.check()
    assert not isinstance(caught.value, StorageConfigError)  # the start hook serves anyway
    path, digest = staged(store, 5, b"x")
    for call in (
        lambda: store.put(5, new_name(), path, sha256=digest),
        lambda: store.open(5, new_name()),
        lambda: store.head(5, new_name()),
        lambda: store.delete(5, new_name()),
        lambda: store.delete_project(5),
    ):
        with pytest.raises(StoreUnavailable, match="EndpointConnectionError"):
            call()


def test_a_local_directory_that_cannot_be_made_fails_the_check(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = make_store(tmp_path, {"UPLOAD_DIR": str(blocker / "uploads")})
    with pytest.raises(StorageConfigError, match="cannot be created"):
        store.check()


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "bucket", "prefix"),
    [
        ("", "local", None, ""),
        ("s3://files", "s3", "files", ""),
        ("s3://my.files-1/prompthub/prod/", "s3", "my.files-1", "prompthub/prod"),
    ],
)
def test_storage_urls_that_are_understood(url, scheme, bucket, prefix):
    spec = parse_storage_url(url)
    assert (spec.scheme, spec.bucket, spec.prefix) == (scheme, bucket, prefix)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("gs://files", "gs:// is not a storage PromptHub knows"),
        ("file:///var/data", "file:// is not a storage PromptHub knows"),
        ("/var/data/uploads", "is not a storage PromptHub knows"),
        ("s3://Files", "is not an S3 bucket name"),
        ("s3://ab", "is not an S3 bucket name"),
        ("s3://files/../other", "the prefix may hold"),
        ("s3://files/a b", "the prefix may hold"),
        ("s3://key:secret@files", "no credentials"),
        ("s3://files?region=eu", "no credentials, port, query"),
    ],
)
def test_other_storage_urls_stop_the_app_at_start(tmp_path, url, why):
    with pytest.raises(ConfigError, match="STORAGE_URL") as caught:
        load_config(tmp_path, env={"STORAGE_URL": url})
    assert why in str(caught.value)


def test_the_standard_aws_variables_are_read_when_ours_are_not_set(tmp_path):
    env = {
        "STORAGE_URL": "s3://files",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    }
    config = load_config(tmp_path, env=env)
    assert config["STORAGE_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert config["STORAGE_S3_REGION"] == "eu-west-3"
    ours = load_config(
        tmp_path,
        env={**env, "STORAGE_S3_ENDPOINT_URL": "https://s3.example", "AWS_ENDPOINT_URL_S3": "x"},
    )
    assert ours["STORAGE_S3_ENDPOINT_URL"] == "https://s3.example"


@pytest.mark.parametrize("url", ["", "s3://files/prefix"])
def test_building_the_app_imports_no_boto3_and_calls_nobody(tmp_path, url):
    """boto3 costs an idle worker tens of MB: it is imported when S3 is first used, never by
    building the app, even with S3 configured (at an address nobody answers)."""
    code = (
        "import sys; from app import create_app; "
        f"app = create_app({{'APP_ENV': 'testing', 'SECRET_KEY': 'x' * 40, 'STORAGE_URL': {url!r},"
        f" 'STORAGE_S3_ENDPOINT_URL': 'http://127.0.0.1:9', 'UPLOAD_DIR': {str(tmp_path)!r},"
        f" 'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path}/x.db'}}); "
        "print(app.extensions['storage'].kind, 'boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["s3" if url else "local", "False", "False"]
