"""The store of this process, chosen once from the configuration: a dict registry of backends
(``BACKENDS``, as CTFd's ``UPLOADERS``), so no other module asks which backend is configured.

``init_app`` builds the store into ``app.extensions["storage"]`` and reports it on ``/readyz``.
Building makes no network call and imports no boto3 (``s3.py`` does that on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.storage.base import StorageError, Store, parse_storage_url
from app.storage.local import LocalStore
from app.storage.s3 import S3Store


def _local(config: Mapping[str, Any]) -> Store:
    return LocalStore(Path(config["UPLOAD_DIR"]))


def _s3(config: Mapping[str, Any]) -> Store:
    spec = parse_storage_url(config["STORAGE_URL"])
    return S3Store(
        bucket=spec.bucket or "",
        prefix=spec.prefix,
        staging=Path(config["STORAGE_STAGING_DIR"]),
        endpoint_url=config["STORAGE_S3_ENDPOINT_URL"],
        region=config["STORAGE_S3_REGION"],
        access_key=config["AWS_ACCESS_KEY_ID"],
        secret_key=config["AWS_SECRET_ACCESS_KEY"],
        session_token=config["AWS_SESSION_TOKEN"],
        timeout=config["STORAGE_S3_TIMEOUT_SECONDS"],
        max_attempts=config["STORAGE_S3_MAX_ATTEMPTS"],
    )


BACKENDS: dict[str, Callable[[Mapping[str, Any]], Store]] = {"local": _local, "s3": _s3}


def build_store(config: Mapping[str, Any]) -> Store:
    """The store ``STORAGE_URL`` names (the configuration has already refused unknown ones)."""
    return BACKENDS[parse_storage_url(config["STORAGE_URL"]).scheme](config)


def readiness(store: Store) -> Callable[[], str]:
    """``/readyz``'s storage check: "ok", or what is wrong (the process still serves chat)."""

    def check() -> str:
        try:
            store.check()
        except StorageError as exc:
            return f"unavailable: {exc}"
        return "ok"

    return check


def init_app(app) -> None:
    from app import observability

    store = build_store(app.config)
    app.extensions["storage"] = store
    observability.register_check(app, "storage", readiness(store))
