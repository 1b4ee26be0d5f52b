"""Per-version metrics with 100,000 replies: the metrics service and the Prompt page, timed on
SQLite and PostgreSQL, with the query plans (docs/benchmarks.md, section 11).

    python -m tests.bench.metrics                        # both databases, 100k replies
    python -m tests.bench.metrics --database sqlite --replies 20000 --repeat 5

The measured project gets ``--replies`` assistant replies (one user message before each, as in
real conversations) spread over the last ``--days`` days across 8 versions: production (v8)
half, the candidate (v7) a tenth and only in the last week, the rest older. Statuses, ratings,
fallbacks, timings and tokens vary like real traffic; 1% of conversations override the
version's model (Compare), which the metrics leave out. Another project gets as many replies
again, so the project's filter has to pick its rows out of a table twice as big. Rows go in
with SQLAlchemy Core, 5,000 per statement; PostgreSQL is ``VACUUM ANALYZE``d once seeded (as
autovacuum does after many inserts, which sets the visibility map index-only scans rely on),
SQLite is not (the app never runs ``ANALYZE``). ``--index narrow`` swaps the model's covering
``ix_messages_version_created`` for the ``(prompt_version_id, created_at)`` index it replaced,
for the before/after.

Timed, ``--repeat`` times each after one warm-up: ``version_metrics`` for each window (the
service alone, in an app context) and ``GET /projects/<id>/prompts?window=…`` (the whole page:
login session, the version list, the history counts, the metrics and the template). Reported:
median and max milliseconds, and the statements one metrics call runs, with their plans
(``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL).

PostgreSQL: ``BENCH_PG`` (admin URL, default ``postgresql://postgres@127.0.0.1:5432``) and
``BENCH_METRICS_DB`` (default ``prompthub_benchmetrics``, dropped and recreated).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text

from app import create_app
from app.extensions import db
from app.models import Conversation, Message, Project, PromptVersion, User
from app.prompts.metrics import WINDOWS, version_metrics
from app.prompts.services import reply_counts
from tests.conftest import CSRFClient, base_config, drop_pg_database, recreate_pg_database
from tests.factories import make_project, make_user

PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
PG_DB = os.environ.get("BENCH_METRICS_DB", "prompthub_benchmetrics")
VERSIONS = 8
CHUNK = 5000
# Every row has the same keys, so the driver sends each chunk as one multi-row INSERT.
USER_ROW = {
    "role": "user", "content": "Hello there.", "status": "complete", "prompt_version_id": None,
    "provider": None, "model": None, "fallback": False, "tokens_in": None, "tokens_out": None,
    "ttft_ms": None, "total_ms": None, "rating": None,
}  # fmt: skip
NARROW_INDEX = (
    "CREATE INDEX ix_messages_version_created ON messages (prompt_version_id, created_at)"
)


# --- seeding -----------------------------------------------------------------------------------


def _versions(app, user_id: int, project_id: int) -> list[int]:
    """v1 … v8 (v1 exists already); v8 production, v7 the candidate. Returns ids by number."""
    from app.prompts import services

    with app.app_context():
        user = db.session.get(User, user_id)
        for number in range(2, VERSIONS + 1):
            services.create_version(
                user=user,
                project_id=project_id,
                content=f"Prompt number {number}.",
                activate=number == VERSIONS,
                candidate=number == VERSIONS - 1,
            )
        return [
            v.id
            for v in db.session.scalars(
                db.select(PromptVersion)
                .where(PromptVersion.project_id == project_id)
                .order_by(PromptVersion.version)
            )
        ]


def _pick_version(rng: random.Random, ids: list[int], age: timedelta) -> int:
    roll = rng.random()
    if roll < 0.5:
        return ids[-1]  # production
    if roll < 0.6 and age < timedelta(days=7):
        return ids[-2]  # candidate, this week only
    return ids[rng.randrange(0, VERSIONS - 2)]


def seed_project(app, user_id: int, project_id: int, replies: int, days: int, seed: int) -> None:
    rng = random.Random(seed)
    ids = _versions(app, user_id, project_id)
    now = datetime.now(UTC)
    per_conversation = 20
    with app.app_context():
        conversations = []
        for i in range(replies // per_conversation + 1):
            override = i % 100 == 0  # 1%: Compare against another model
            conversations.append(
                {
                    "project_id": project_id,
                    "title": f"Seeded {i}",
                    "prompt_version_id": ids[-1] if override else None,
                    "model": "gpt-4o" if override else None,
                }
            )
        db.session.execute(insert(Conversation), conversations)
        db.session.commit()
        conversation_ids = list(
            db.session.scalars(
                db.select(Conversation.id)
                .where(Conversation.project_id == project_id)
                .order_by(Conversation.id)
            )
        )
        rows: list[dict[str, Any]] = []

        def flush():
            db.session.execute(insert(Message), rows)
            rows.clear()

        for i in range(replies):
            age = timedelta(seconds=rng.uniform(0, days * 86400))
            at = now - age
            status = rng.choices(
                ["complete", "incomplete", "error", "interrupted"], [0.9, 0.05, 0.04, 0.01]
            )[0]
            complete = status == "complete"
            conversation_id = conversation_ids[i // per_conversation]
            rows.append(
                {**USER_ROW, "conversation_id": conversation_id,
                 "created_at": at - timedelta(milliseconds=5)}
            )  # fmt: skip
            rows.append(
                {
                    "conversation_id": conversation_id,
                    "role": "assistant",
                    "content": "A seeded reply of some typical length. " * 8,
                    "status": status,
                    "prompt_version_id": _pick_version(rng, ids, age),
                    "provider": "openai",
                    "model": "gpt-4o-mini-2024-07-18",
                    "fallback": rng.random() < 0.02,
                    "tokens_in": rng.randint(200, 4000) if complete else None,
                    "tokens_out": rng.randint(20, 800) if complete else None,
                    "ttft_ms": rng.randint(150, 2500) if status != "error" else None,
                    "total_ms": rng.randint(800, 30000),
                    "rating": rng.choice([1, 1, 1, -1]) if rng.random() < 0.1 else None,
                    "created_at": at,
                }
            )
            if len(rows) >= CHUNK:
                flush()
        if rows:
            flush()
        db.session.commit()


# --- measuring ---------------------------------------------------------------------------------


def _timed(fn, repeat: int) -> dict[str, float]:
    fn()  # warm-up: caches, compiled statements, the first connection
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def _statements(app, project_id: int, window: str) -> list[tuple[str, Any]]:
    """The SQL one metrics call runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            version_metrics(db.session.get(Project, project_id), window)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    return seen


def _plans(app, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    plans = []
    with app.app_context(), db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
        for statement, parameters in statements:
            if "messages" not in statement:
                continue  # the versions list and the session lookups
            result = conn.exec_driver_sql(prefix + statement, parameters)
            lines = [" | ".join(str(c) for c in row[-1:]) for row in result]
            plans.append({"sql": " ".join(statement.split()), "plan": lines})
    return plans


def measure(app, owner, project_id: int, repeat: int) -> dict[str, Any]:
    client = app.test_client()
    client.post("/login", data={"email": owner.email, "password": owner.password})
    report: dict[str, Any] = {"service": {}, "page": {}, "statements": {}}

    def history_counts():
        with app.app_context():
            reply_counts(project_id)

    report["history_reply_counts"] = _timed(history_counts, repeat)
    for window in WINDOWS:

        def service(window=window):
            with app.app_context():
                version_metrics(db.session.get(Project, project_id), window)

        def page(window=window):
            resp = client.get(f"/projects/{project_id}/prompts?window={window}")
            assert resp.status_code == 200, resp.status_code

        report["service"][window] = _timed(service, repeat)
        report["page"][window] = _timed(page, repeat)
        statements = _statements(app, project_id, window)
        report["statements"][window] = {"count": len(statements), "plans": _plans(app, statements)}
    return report


def run(
    database: str,
    replies: int,
    days: int,
    repeat: int,
    workdir: Path,
    index: str = "covering",
    keep: bool = False,
) -> dict[str, Any]:
    if database == "sqlite":
        (workdir / "metrics.db").unlink(missing_ok=True)
        url = f"sqlite:///{workdir / 'metrics.db'}"
    else:
        url = f"{PG_ADMIN}/{PG_DB}"
        recreate_pg_database(url)
    app = create_app(base_config(url))
    app.test_client_class = CSRFClient
    try:
        with app.app_context():
            db.create_all()
            if index == "narrow":  # the index before this benchmark: (version, time) only
                db.session.execute(text("DROP INDEX ix_messages_version_created"))
                db.session.execute(text(NARROW_INDEX))
                db.session.commit()
        owner = make_user(app, email="bench@example.com")
        project_id = make_project(app, owner, name="Measured", system_prompt="Prompt number 1.")
        other = make_project(app, owner, name="Other", system_prompt="Another project.")
        started = time.perf_counter()
        seed_project(app, owner.id, project_id, replies, days, seed=1)
        seed_project(app, owner.id, other, replies, days, seed=2)
        with app.app_context():
            if database == "postgresql":  # what autovacuum does after many inserts
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("VACUUM ANALYZE")
            total = db.session.scalar(db.select(db.func.count(Message.id)))
        seeded_s = round(time.perf_counter() - started, 1)
        report = {
            "database": database,
            "index": index,
            "messages_in_table": total,
            "seed_seconds": seeded_s,
        }
        report |= measure(app, owner, project_id, repeat)
        return report
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if database == "postgresql" and not keep:
            drop_pg_database(url)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--replies", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--index",
        choices=["covering", "narrow"],
        default="covering",
        help="the model's covering ix_messages_version_created, or (version, time) only",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--keep", type=Path, help="keep the databases (SQLite in this directory, PostgreSQL too)"
    )
    args = parser.parse_args(argv)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "load_at_start": os.getloadavg(),
        "replies_in_project": args.replies,
        "days": args.days,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for database in databases:
            report["runs"].append(
                run(
                    database,
                    args.replies,
                    args.days,
                    args.repeat,
                    workdir,
                    args.index,
                    bool(args.keep),
                )  # fmt: skip
            )
    report["load_at_end"] = os.getloadavg()
    text_ = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text_ + "\n")
    print(text_)  # noqa: T201
    return report


if __name__ == "__main__":
    main()
