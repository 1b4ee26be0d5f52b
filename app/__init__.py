"""PromptHub application factory."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from app.config import load_config
from app.models.base import MAX_DB_INT
from app.settings import ROOT

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite: enforce foreign keys (cascades) and wait on locks instead of failing at once.
    Listened for on this app's engine only (``create_app``), never on every ``Engine``."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


class IdConverter(IntegerConverter):
    """``<int:…>`` in every route: a number beyond the database's integer names no row, so it
    is a 404 here instead of an overflow inside the query (a 500).

    Not ``max=`` (a ``ValidationError``): Werkzeug notes the methods of the rules it passes
    before converting, so the other methods of the same path would answer 405 instead."""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if number > MAX_DB_INT:
            raise NotFound("Nothing has this id.")
        return number


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.url_map.converters["int"] = IdConverter  # before any rule is added
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(load_config(Path(app.instance_path), config))
    _configure_logging(app)

    from app import (
        api,
        cors,
        edge,
        jobs,
        limits,
        maintenance,
        metrics,
        models,  # noqa: F401  (register every table on the metadata)
        observability,
        security_headers,
        tracing,
        transactions,
        worker,
    )
    from app.auth import loading
    from app.auth import services as auth_services
    from app.chat import replies, titles, turns
    from app.cli import register_cli
    from app.errors import register_error_handlers
    from app.extensions import MIGRATE_OPTIONS, csrf, db, login_manager
    from app.files import copies, extraction
    from app.openapi import ALL  # with the route of the API document (see there)
    from app.storage import registry as storage

    edge.init_app(app)
    db.init_app(app)
    transactions.init_app(app)  # after db: its teardown runs first
    with app.app_context():  # builds the engine (no connection yet) to listen on it
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)
    tracing.init_app(app)  # early: its request span covers the other hooks; off by default
    if app.config["DB_MIGRATE_COMMANDS"]:
        from flask_migrate import Migrate

        Migrate(app, db, directory=str(ROOT / "migrations"), **MIGRATE_OPTIONS)
    login_manager.init_app(app)
    csrf.init_app(app)
    loading.init_app(app)
    auth_services.init_app(app)  # the token check's cache
    limits.init_app(app)  # after loading: per-user limits need the bearer user
    security_headers.init_app(app)
    cors.init_app(app)  # only /api/, only CORS_ORIGINS; never credentials
    api.init_input_guard(app)
    observability.init_app(app)
    metrics.init_app(app)  # request counts and /metrics (off without METRICS_TOKEN)
    jobs.init_app(app)  # the queue; before the features that register jobs
    maintenance.init_app(app)
    storage.init_app(app)  # builds the store; no network, no boto3 until it is used
    extraction.init_app(app)
    copies.init_app(app)  # the OpenAI Files copy job and its sweep
    replies.init_app(app)
    turns.init_app(app)
    titles.init_app(app)  # the title job and its sweep
    for blueprint in ALL:
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    register_cli(app)
    worker.init_app(app)  # flask worker

    from markupsafe import Markup

    from app.chat.render import ending, meta_line, render_reply
    from app.usage import usd

    app.add_template_filter(lambda m: Markup(render_reply(m)), "reply_html")  # noqa: S704 (sanitised by nh3)
    app.add_template_filter(meta_line, "meta_line")
    app.add_template_filter(ending, "ending")
    app.add_template_filter(usd, "usd")

    @app.context_processor
    def inject_globals():
        return {"app_env": app.config["APP_ENV"]}

    return app


def _configure_logging(app: Flask) -> None:
    if app.config.get("TESTING"):
        return
    level = getattr(logging, str(app.config["LOG_LEVEL"]).upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs every provider call at INFO; the chat path logs what went wrong itself, and
    # the access log has every request: one line fewer per reply.
    logging.getLogger("httpx").setLevel(logging.WARNING)
