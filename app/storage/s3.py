"""An S3-compatible object store through boto3 (docs/storage.md lists the calls and errors).

Object keys are ``<prefix>/<project_id>/<stored_name>``: a generated hex name under the
project's number, nothing a user typed. boto3 is imported on first use, so a process on the
local store never loads it (tens of MB per idle worker), and building the app makes no network
call: the client is created lazily, and ``check`` (``HeadBucket``) runs when asked (gunicorn's
worker start hook, ``flask files check-storage``, ``/readyz``).

- ``put`` uploads a staged local file with boto3's managed transfer (one ``PutObject`` below
  ``PART_SIZE``, a multipart upload above it, aborted by boto3 if a part fails). An object
  appears whole or not at all. The file's sha256 goes along as user metadata (``sha256``), so
  ``head`` can say what an object holds without reading it (``flask files migrate-storage``).
- ``open`` sends ``GetObject`` and hands back a seekable reader over the streamed body: reads
  come from the socket in chunks, never the whole object, and a seek (a Range request, served
  by Werkzeug) starts a new ``GetObject`` with ``Range: bytes=N-``.
- Errors: ``NoSuchKey`` (a 404 on ``HeadObject``) is ``ObjectMissing``; everything else,
  ``NoSuchBucket``, refused credentials, 5xx after boto3's retries, refused connections and
  timeouts, is ``StoreUnavailable``.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.storage.base import (
    CHUNK,
    ObjectInfo,
    ObjectMissing,
    Opened,
    StorageConfigError,
    StoreUnavailable,
    check_name,
)

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # multipart above this, in parts of this size
PART_CONCURRENCY = 2  # parts in flight per upload (each is held in memory while sent)
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}


class S3Store:
    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        staging: Path,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.staging = Path(staging)
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = (access_key, secret_key, session_token)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._client: Any = None
        self._lock = threading.Lock()

    # --- plumbing ----------------------------------------------------------------------------

    def describe(self) -> str:
        where = self.endpoint_url or f"AWS {self.region or '(default region)'}"
        return f"s3://{self.bucket}/{self.prefix} at {where}".replace("/ at", " at")

    @property
    def client(self):
        """The boto3 client, built on first use (boto3 clients are thread-safe once built)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self):
        import boto3
        from botocore.config import Config

        access_key, secret_key, session_token = self._credentials
        # Credentials given in the settings are passed explicitly; without them boto3 uses
        # its own chain (an instance or task role, ~/.aws), as AWS tooling does.
        session = boto3.session.Session(
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            aws_session_token=session_token or None,
            region_name=self.region or None,
        )
        config = Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            # No pool larger than what a worker uses at once; a multipart upload takes
            # PART_CONCURRENCY connections.
            max_pool_connections=20,
        )
        return session.client("s3", endpoint_url=self.endpoint_url or None, config=config)

    def key(self, project_id: int, name: str) -> str:
        project_id, name = check_name(project_id, name)
        return f"{self.prefix}/{project_id}/{name}" if self.prefix else f"{project_id}/{name}"

    def project_prefix(self, project_id: int) -> str:
        check_name(project_id, "0" * 32)
        return f"{self.prefix}/{int(project_id)}/" if self.prefix else f"{int(project_id)}/"

    def _fail(self, exc: Exception, doing: str, *, missing_ok: bool = False) -> Exception:
        """Our error for a boto3/botocore one (``ObjectMissing`` only where a key was read)."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if missing_ok and code in MISSING_CODES:
                return ObjectMissing(f"{doing}: no such object in s3://{self.bucket}")
            if code == "NoSuchBucket":
                return StoreUnavailable(f"{doing}: the bucket {self.bucket} does not exist")
            if code in AUTH_CODES:
                return StoreUnavailable(f"{doing}: the store refused the credentials ({code})")
            return StoreUnavailable(f"{doing}: S3 answered {status} {code}".rstrip())
        return StoreUnavailable(f"{doing}: {type(exc).__name__}: {exc}")

    @staticmethod
    def _errors() -> tuple[type[Exception], ...]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError as Urllib3Error

        return (BotoCoreError, ClientError, Boto3Error, Urllib3Error, OSError)

    # --- the interface -----------------------------------------------------------------------

    def staging_dir(self, project_id: int) -> Path:
        """One local folder for every upload in progress (``STORAGE_STAGING_DIR``)."""
        return self.staging

    def put(self, project_id: int, name: str, staged: Path, *, sha256: str) -> None:
        from boto3.s3.transfer import TransferConfig

        key = self.key(project_id, name)
        transfer = TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=PART_CONCURRENCY,
        )
        try:
            self.client.upload_file(
                str(staged),
                self.bucket,
                key,
                ExtraArgs={"Metadata": {"sha256": sha256}},
                Config=transfer,
            )
        except self._errors() as exc:
            raise self._fail(exc, f"put {key}") from exc

    def _get(self, key: str, start: int = 0) -> dict:
        args = {"Bucket": self.bucket, "Key": key}
        if start:
            args["Range"] = f"bytes={start}-"
        try:
            return self.client.get_object(**args)
        except self._errors() as exc:
            raise self._fail(exc, f"get {key}", missing_ok=True) from exc

    def open(self, project_id: int, name: str) -> Opened:
        key = self.key(project_id, name)
        answer = self._get(key)
        size = int(answer["ContentLength"])
        reader = ObjectReader(self, key, size, answer["Body"])
        return Opened(io.BufferedReader(reader, buffer_size=CHUNK), size)

    def head(self, project_id: int, name: str) -> ObjectInfo | None:
        key = self.key(project_id, name)
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except self._errors() as exc:
            error = self._fail(exc, f"head {key}", missing_ok=True)
            if isinstance(error, ObjectMissing):
                return None
            raise error from exc
        metadata = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
        return ObjectInfo(size=int(answer["ContentLength"]), sha256=metadata.get("sha256"))

    @contextmanager
    def local_copy(self, project_id: int, name: str) -> Iterator[Path]:
        self.staging.mkdir(parents=True, exist_ok=True)
        fd, raw = tempfile.mkstemp(prefix=".copy-", suffix=".part", dir=self.staging)
        path = Path(raw)
        try:
            with os.fdopen(fd, "wb") as out:
                opened = self.open(project_id, name)
                with opened.file:
                    for chunk in opened.chunks():
                        out.write(chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def delete(self, project_id: int, name: str) -> None:
        key = self.key(project_id, name)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except self._errors() as exc:
            raise self._fail(exc, f"delete {key}") from exc

    def delete_project(self, project_id: int) -> int:
        prefix = self.project_prefix(project_id)
        removed = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                errors = answer.get("Errors") or []
                if errors:
                    raise StoreUnavailable(
                        f"delete {prefix}*: {len(errors)} objects not deleted "
                        f"({errors[0].get('Code')})"
                    )
                removed += len(batch)
        except self._errors() as exc:
            raise self._fail(exc, f"delete {prefix}*") from exc
        return removed

    def check(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if status == 404 or code == "NoSuchBucket":
                raise StorageConfigError(
                    f"the bucket {self.bucket} does not exist at {self.describe()}: create it "
                    "(docs/deploy.md, Object storage) or fix STORAGE_URL"
                ) from exc
            if status == 403 or code in AUTH_CODES:
                raise StorageConfigError(
                    f"{self.describe()} refused access to the bucket {self.bucket} ({status} "
                    f"{code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the policy"
                ) from exc
            raise self._fail(exc, f"head bucket {self.bucket}") from exc
        except self._errors() as exc:
            raise self._fail(exc, f"head bucket {self.bucket}") from exc


class ObjectReader(io.RawIOBase):
    """A stored object as a seekable raw file: reads stream from the current ``GetObject``
    body. A read at another position than the body's drops it and asks for
    ``Range: bytes=<pos>-`` (a seek alone costs nothing: measuring the size with
    ``seek(0, SEEK_END)`` and coming back keeps the body)."""

    def __init__(self, store: S3Store, key: str, size: int, body) -> None:
        super().__init__()
        self.store, self.key, self.size = store, key, size
        self._body = body
        self._body_pos = 0  # where the open body's next byte is
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self.size:
            return 0
        if self._body is not None and self._body_pos != self._pos:
            self._drop()
        if self._body is None:
            self._body = self.store._get(self.key, self._pos)["Body"]
            self._body_pos = self._pos
        try:
            data = self._body.read(len(buffer))
        except self.store._errors() as exc:
            self._drop()
            raise self.store._fail(exc, f"read {self.key}") from exc
        if not data:
            self._drop()
            raise StoreUnavailable(f"read {self.key}: the body ended at {self._pos}/{self.size}")
        buffer[: len(data)] = data
        self._pos += len(data)
        self._body_pos = self._pos
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            body, self._body = self._body, None
            body.close()

    def close(self) -> None:
        self._drop()
        super().close()
