"""Per-version metrics from real traffic: how each prompt version's replies did in a time window
(24 h, 7 d or all), and how that moved over time (one series per metric, for the Prompt tab's
charts and ``GET /api/projects/<id>/prompts/metrics``).

What is counted: assistant replies of the project's versions created in the window that have
ended (a row still ``streaming`` or ``stopping`` is not counted yet). Replies in conversations
that override the version's model (Compare against another model) are left out: they are another
configuration, and would mix another model's latency and price into the version's figures.

- **replies**: how many.
- **👍 rate**: thumbs up / rated replies (up + down); None while nothing is rated.
- **error rate**: replies ``error`` (nothing arrived) or ``interrupted`` (the process writing
  it died) / replies. ``incomplete`` is not an error: it is mostly the user's Stop, or a stream
  cut after text had arrived.
- **fallback rate**: replies answered by a fallback provider / replies.
- **median time to first token / total time**: over ``complete`` replies only (a failure has
  no first token, and a stopped reply's total time says when the user stopped it). An even
  count gives the mean of the two middle values: PostgreSQL's ``percentile_cont(0.5)``, and
  SQLite computes the same with window functions (``row_number`` and ``count`` per group).
- **mean tokens in / out**: over the replies that report usage.
- **invalid JSON**: of a version with a JSON output format (``app/formats.py``), the complete
  replies checked (``format_checked``, the sample) and those not valid (``format_invalid``);
  the rate is invalid / checked, None while nothing was checked.
- **estimated cost**: the tokens of the version's replies × the price of the *version's* model
  in ``MODELS``. Not the stored ``messages.model``: that is the provider's wire id, often a
  dated one (``gpt-4o-mini-2024-07-18``) no allowlist entry names. None when the model has no
  price (an unlisted name, or a null price).

Everything is SQL aggregates (``count``, ``sum``, medians) grouped by version, and by version
and time bucket for the series; Python only turns those few rows into rates (``figures``) and
lays the buckets out (``bucket_*``), pure functions tested without a database. Buckets are whole
hours (24 h), days (7 d), or for "all" days, or weeks once the traffic spans more than
``MAX_DAILY_BUCKETS`` days, counted in UTC from a Monday (``EPOCH_MONDAY``) on both databases.
The filter rides on ``ix_messages_version_created`` (docs/benchmarks.md, section 11).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    Subquery,
    case,
    cast,
    func,
    null,
    or_,
    select,
)

from app import catalog
from app.catalog import ModelChoice
from app.extensions import db
from app.models import Conversation, Message, MessageStatus, Project, PromptVersion, Role
from app.models.base import utcnow

WINDOWS: dict[str, timedelta | None] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "all": None,
}
DEFAULT_WINDOW = "7d"
HOUR, DAY, WEEK = 3600, 86400, 7 * 86400
EPOCH_MONDAY = 4 * DAY  # 1970-01-05, a Monday: weeks start on Mondays, hours and days align too
MAX_DAILY_BUCKETS = 60  # "all" spanning more days than this is drawn week by week
IN_PROGRESS = (MessageStatus.STREAMING, MessageStatus.STOPPING)
FAILED = (MessageStatus.ERROR, MessageStatus.INTERRUPTED)
SERIES = (
    "replies",
    "up_rate",
    "error_rate",
    "fallback_rate",
    "median_ttft_ms",
    "median_total_ms",
    "mean_tokens_in",
    "mean_tokens_out",
    "cost_usd",
)


def page_window(raw: str | None) -> str:
    """The page's window: an unknown value (a hand-edited URL) shows the default."""
    return raw if raw in WINDOWS else DEFAULT_WINDOW


# --- pure core: rows of sums and counts → figures, buckets --------------------------------------


@dataclass(frozen=True)
class Tally:
    """The SQL aggregates of one group of replies (a version, or a version in one bucket)."""

    replies: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    failed: int = 0  # error + interrupted
    fallbacks: int = 0
    tokens_in: int = 0  # summed over the replies that report usage
    tokens_out: int = 0
    with_tokens_in: int = 0  # how many replies report them
    with_tokens_out: int = 0
    median_ttft_ms: float | None = None
    median_total_ms: float | None = None
    first_at: datetime | None = None
    format_checked: int = 0  # complete replies checked against a JSON output format
    format_invalid: int = 0  # of which not valid


EMPTY = Tally()


@dataclass(frozen=True)
class Figures:
    replies: int
    thumbs_up: int
    thumbs_down: int
    up_rate: float | None
    error_rate: float | None
    fallback_rate: float | None
    median_ttft_ms: float | None
    median_total_ms: float | None
    mean_tokens_in: float | None
    mean_tokens_out: float | None
    cost_usd: float | None  # None: the model has no price; 0.0 for no replies when it has one
    format_checked: int = 0
    format_invalid: int = 0
    format_invalid_rate: float | None = None  # None: no reply checked


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def figures(tally: Tally, model: ModelChoice) -> Figures:
    """The metrics of one group, from its aggregates and its version's model (for the price)."""
    return Figures(
        replies=tally.replies,
        thumbs_up=tally.thumbs_up,
        thumbs_down=tally.thumbs_down,
        up_rate=_ratio(tally.thumbs_up, tally.thumbs_up + tally.thumbs_down),
        error_rate=_ratio(tally.failed, tally.replies),
        fallback_rate=_ratio(tally.fallbacks, tally.replies),
        median_ttft_ms=tally.median_ttft_ms,
        median_total_ms=tally.median_total_ms,
        mean_tokens_in=_ratio(tally.tokens_in, tally.with_tokens_in),
        mean_tokens_out=_ratio(tally.tokens_out, tally.with_tokens_out),
        cost_usd=model.cost(tally.tokens_in, tally.tokens_out),
        format_checked=tally.format_checked,
        format_invalid=tally.format_invalid,
        format_invalid_rate=_ratio(tally.format_invalid, tally.format_checked),
    )


def bucket_seconds(window: str, first: datetime | None, now: datetime) -> int:
    """Hours for 24 h, days for 7 d; "all" by day, or by week past ``MAX_DAILY_BUCKETS`` days."""
    if window == "24h":
        return HOUR
    if window == "7d" or first is None or now - first <= timedelta(days=MAX_DAILY_BUCKETS):
        return DAY
    return WEEK


def bucket_index(moment: datetime, seconds: int) -> int:
    """The bucket a moment falls in; the SQL of ``bucket_of`` computes the same number."""
    return (int(moment.timestamp()) - EPOCH_MONDAY) // seconds


def bucket_start(index: int, seconds: int) -> datetime:
    return datetime.fromtimestamp(EPOCH_MONDAY + index * seconds, UTC)


def series_of(tallies: dict[int, Tally], indexes: range, model: ModelChoice) -> dict[str, list]:
    """One list per metric, a value per bucket (an empty bucket: 0 replies, no rates)."""
    rows = [figures(tallies.get(i, EMPTY), model) for i in indexes]
    return {name: [getattr(row, name) for row in rows] for name in SERIES}


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionMetrics:
    version: PromptVersion
    is_active: bool  # production
    is_candidate: bool
    figures: Figures
    series: dict[str, list]  # metric name (SERIES) → one value per bucket of ``Metrics.buckets``


@dataclass(frozen=True)
class Metrics:
    window: str
    since: datetime | None  # None: all time
    bucket_seconds: int
    buckets: list[datetime]  # start of each bucket, oldest first
    versions: list[VersionMetrics]  # production, candidate, then the others newest first
    source: str = "all"  # the conversations counted (``SOURCES``)

    @property
    def has_traffic(self) -> bool:
        return any(row.figures.replies for row in self.versions)


# --- SQL ----------------------------------------------------------------------------------------


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def bucket_of(column: ColumnElement, seconds: int, dialect: str) -> ColumnElement[int]:
    """SQL for ``bucket_index``: whole ``seconds`` since ``EPOCH_MONDAY``, UTC, on either
    database (SQLite stores UTC text that ``strftime('%s')`` reads; PostgreSQL ``timestamptz``)."""
    if dialect == "postgresql":
        # date_part is double precision; extract() is numeric, whose arithmetic costs far more.
        epoch = func.date_part("epoch", column, type_=Float)
        return cast(func.floor((epoch - EPOCH_MONDAY) / seconds), BigInteger)
    return (cast(func.strftime("%s", column), Integer) - EPOCH_MONDAY) // seconds


def _overridden(project_id: int) -> Select:
    """Conversations of the project that run their version on another model (Compare)."""
    return (
        select(Conversation.id)
        .join(PromptVersion, PromptVersion.id == Conversation.prompt_version_id)
        .where(
            Conversation.project_id == project_id,
            Conversation.model.is_not(None),
            Conversation.model != PromptVersion.model,
        )
    )


# Where replies came from (``Conversation.source``): every source, the owner's own chat
# (page and JSON API: no source), apps through the OpenAI-compatible endpoints, or visitors of
# share links.
SOURCES = ("all", "chat", "api", "share")
DEFAULT_SOURCE = "all"


def _from_source(project_id: int, source: str) -> Select:
    """The project's conversations of ``source`` (not ``all``)."""
    where = Conversation.source.is_(None) if source == "chat" else Conversation.source == source
    return select(Conversation.id).where(Conversation.project_id == project_id, where)


def _replies(
    project_id: int,
    version_ids: list[int],
    since: datetime | None,
    bucket: int | None = None,
    source: str = DEFAULT_SOURCE,
) -> Subquery:
    """The counted replies, one row each, with the columns the aggregates read: with a
    ``bucket`` size, its bucket instead of the time (fewer bytes to sort per row)."""
    complete = Message.status == MessageStatus.COMPLETE
    when = (
        Message.created_at
        if bucket is None
        else bucket_of(Message.created_at, bucket, _dialect()).label("bucket")
    )
    columns = [
        Message.prompt_version_id.label("version_id"),
        when,
        Message.status,
        Message.rating,
        Message.fallback,
        Message.tokens_in,
        Message.tokens_out,
        case((complete, Message.ttft_ms)).label("ttft"),
        case((complete, Message.total_ms)).label("total"),
        Message.format_valid,
    ]
    where = [
        Message.prompt_version_id.in_(version_ids),
        Message.role == Role.ASSISTANT,
        Message.status.not_in(IN_PROGRESS),
        Message.conversation_id.not_in(_overridden(project_id)),
    ]
    if since is not None:
        where.append(Message.created_at >= since)
    if source != "all":
        where.append(Message.conversation_id.in_(_from_source(project_id, source)))
    return select(*columns).where(*where).subquery("replies")


def _sqlite_medians(rows: Subquery, keys: list[str]) -> dict[tuple, tuple]:
    """SQLite has no percentile. Each ``complete`` reply gets its rank among its group's
    ``ttft`` / ``total`` values, largest first, and the group's count of values ``n``; the
    median is the mean of the values ranked (n+1)//2 and (n+2)//2: the middle one when n is odd,
    the two middle ones when even, as ``percentile_cont(0.5)`` (the middle is the same counted
    from either end). Descending, because SQLite sorts NULLs last that way: ordering by
    ``value IS NULL`` first made the statement 1.7x slower. Only the keys and the two values
    are ranked, in a statement of their own: SQLite copies whole rows through each window."""
    group = [rows.c[k] for k in keys]
    columns = []
    for name in ("ttft", "total"):
        value = rows.c[name]
        columns += [
            value,
            func.row_number().over(partition_by=group, order_by=value.desc()).label(name + "_r"),
            func.count(value).over(partition_by=group).label(name + "_n"),
        ]
    ranked = (
        select(*group, *columns)
        .where(or_(rows.c.ttft.is_not(None), rows.c.total.is_not(None)))
        .subquery("ranked")
    )

    def middle(name: str) -> ColumnElement:
        rank, n, value = ranked.c[name + "_r"], ranked.c[name + "_n"], ranked.c[name]
        return func.avg(case((or_(rank == (n + 1) // 2, rank == (n + 2) // 2), value)))

    by = [ranked.c[k] for k in keys]
    stmt = select(*by, middle("ttft"), middle("total")).group_by(*by)
    return {tuple(row[: len(keys)]): tuple(row[len(keys) :]) for row in db.session.execute(stmt)}


def _tallies(rows: Subquery, keys: list[str]) -> dict[tuple, Tally]:
    """A ``Tally`` per distinct value of ``keys``: one aggregate statement (PostgreSQL), or one
    plus one for the medians (SQLite)."""
    c = rows.c
    postgres = _dialect() == "postgresql"
    medians = (
        [
            func.percentile_cont(0.5).within_group(c.ttft),
            func.percentile_cont(0.5).within_group(c.total),
        ]
        if postgres
        else [null(), null()]
    )
    group = [c[k] for k in keys]
    stmt = select(
        *group,
        func.count(),
        func.count(case((c.rating == 1, 1))),
        func.count(case((c.rating == -1, 1))),
        func.count(case((c.status.in_(FAILED), 1))),
        func.count(case((c.fallback.is_(True), 1))),
        func.coalesce(func.sum(c.tokens_in), 0),
        func.coalesce(func.sum(c.tokens_out), 0),
        func.count(c.tokens_in),
        func.count(c.tokens_out),
        *medians,
        func.min(c.created_at) if "created_at" in c else null(),
        func.count(c.format_valid),
        func.count(case((c.format_valid.is_(False), 1))),
    ).group_by(*group)
    middles = {} if postgres else _sqlite_medians(rows, keys)
    found = {}
    for row in db.session.execute(stmt):
        key, values = tuple(row[: len(keys)]), row[len(keys) :]
        (replies, up, down, failed, fallbacks, t_in, t_out, n_in, n_out, ttft, total, first) = (
            values[:12]
        )
        checked, invalid = values[12:]
        if not postgres:
            ttft, total = middles.get(key, (None, None))
        found[key] = Tally(
            replies=replies,
            thumbs_up=up,
            thumbs_down=down,
            failed=failed,
            fallbacks=fallbacks,
            tokens_in=int(t_in),
            tokens_out=int(t_out),
            with_tokens_in=n_in,
            with_tokens_out=n_out,
            median_ttft_ms=None if ttft is None else float(ttft),
            median_total_ms=None if total is None else float(total),
            first_at=first,
            format_checked=checked,
            format_invalid=invalid,
        )
    return found


def version_metrics(
    project: Project,
    window: str,
    *,
    now: datetime | None = None,
    source: str = DEFAULT_SOURCE,
) -> Metrics:
    """The metrics of every version of ``project`` with replies in ``window`` (production and
    the candidate always), production first; ``source``: of those conversations only
    (``SOURCES``). The caller has checked ownership."""
    now = now or utcnow()
    span = WINDOWS[window]
    since = now - span if span is not None else None
    versions = {
        v.id: v
        for v in db.session.scalars(
            select(PromptVersion).where(PromptVersion.project_id == project.id)
        )
    }
    totals = {}
    if versions:
        rows = _replies(project.id, list(versions), since, source=source)
        totals = {key[0]: tally for key, tally in _tallies(rows, ["version_id"]).items()}
    first = min((t.first_at for t in totals.values() if t.first_at), default=None)
    seconds = bucket_seconds(window, first, now)
    start = since or first
    if start is None:  # "all" and no reply ever: no buckets
        indexes = range(0)
    else:
        indexes = range(bucket_index(start, seconds), bucket_index(now, seconds) + 1)
    by_bucket: dict[int, dict[int, Tally]] = {}
    if totals:
        rows = _replies(project.id, list(totals), since, bucket=seconds, source=source)
        for (version_id, index), tally in _tallies(rows, ["version_id", "bucket"]).items():
            by_bucket.setdefault(version_id, {})[int(index)] = tally

    def order(version: PromptVersion) -> tuple:
        return (version.id != project.active_prompt_id, version.id != project.candidate_prompt_id,
                -version.version)  # fmt: skip

    shown = [
        v
        for v in versions.values()
        if v.id in totals or v.id in (project.active_prompt_id, project.candidate_prompt_id)
    ]
    result = []
    for version in sorted(shown, key=order):
        model = catalog.resolve(version.model)
        result.append(
            VersionMetrics(
                version=version,
                is_active=version.id == project.active_prompt_id,
                is_candidate=version.id == project.candidate_prompt_id,
                figures=figures(totals.get(version.id, EMPTY), model),
                series=series_of(by_bucket.get(version.id, {}), indexes, model),
            )
        )
    return Metrics(
        window=window,
        source=source,
        since=since,
        bucket_seconds=seconds,
        buckets=[bucket_start(i, seconds) for i in indexes],
        versions=result,
    )
