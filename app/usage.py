"""Spending on language models: the one ledger every provider call is charged to
(``usage_days``, ``app/models/usage.py``), and the per-user budgets read from it.

**Charging.** A call costs its tokens × the price of its model in ``MODELS`` (``catalog``):
the allowlist *name* the request was built for (the version's model or the conversation's
override), not the provider's wire id, at the price when it is charged. The tokens are those
the provider reported. A call that reports none although the provider took it (a reply stopped
or cut short, a provider that sends no usage) is charged an estimate, one token per
``CHARS_PER_TOKEN`` characters sent and received, because the provider bills it all the same.
A call refused before any text arrived costs nothing, and so does the offline demo model. A
listed model without a price adds its tokens and $0; a name the list no longer has is charged
at the dearest listed prices. ``charge_for`` builds one call's charge;
``record`` adds it to the ledger (an upsert, without committing): the caller writes it in the
transaction of what it pays for, so a chat reply is charged exactly once, with its final store
(``app/chat/replies.py``).

**Budgets.** ``USER_BUDGET_USD_DAY`` and ``USER_BUDGET_USD_MONTH`` cap a user's spend per UTC
day and calendar month (0: no cap). Once a period's spend has reached its cap, a call is
refused before anything is stored or sent: ``BudgetExceeded``, a 429 with ``Retry-After`` until
the period resets, and the period, cap, spend and reset time in the error's ``budget`` member.
The spend is what has been charged: turns still being generated are not in it yet, so a user
can overshoot by the cost of the turns they have in flight (each bounded by
``CHAT_INPUT_MAX_CHARS`` and ``LLM_MAX_OUTPUT_TOKENS``, their number by ``RATELIMIT_CHAT``).

**Cost of the check.** Nothing is cached, so nothing is stale: each check reads the user's rows
of the month through the primary key (user, day, …), at most days × projects × models rows.
On the chat path it is not even a round trip of its own: ``spend_columns`` are scalar subqueries
(built once per process, their values bound from ``spend_params``) that the turn reads together
with its project (``get_project_with``), and ``enforce`` decides. Other callers use
``require_budget``. With both caps at 0 nothing is read.

Later callers (API keys, evaluation runs) charge through ``charge_for`` + ``record`` and check
through ``require_budget`` (or ``spend_columns`` + ``enforce``), so there is one accounting.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, ScalarSelect, Update, bindparam, case, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app import catalog
from app.catalog import ModelChoice
from app.errors import BudgetExceeded
from app.extensions import db
from app.models import Conversation, Message, UsageDay
from app.models.base import utcnow

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text; estimates only
# Rows one user's charges of a day, project and model are spread over (``UsageDay.shard``), so
# that concurrent replies of one user rarely wait for the same row's lock.
SHARDS = 16
_ADDED = ("calls", "tokens_in", "tokens_out", "cost_usd")


# --- charging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    """What one call adds to the ledger."""

    user_id: int
    project_id: int
    model: str  # the MODELS name
    tokens_in: int
    tokens_out: int
    cost_usd: float
    day: date  # UTC
    shard: int = 0  # which of the ``SHARDS`` rows it adds to (any: readers sum them all)

    def to_json(self) -> dict[str, Any]:
        """For the reply spool (a reply stored later is charged when it is stored)."""
        return {**asdict(self), "day": self.day.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Charge | None:
        if not data:
            return None
        return cls(**{**data, "day": date.fromisoformat(data["day"])})


def estimate_tokens(chars: int) -> int:
    return -(-max(chars, 0) // CHARS_PER_TOKEN)


def charge_for(
    *,
    user_id: int,
    project_id: int,
    model: ModelChoice,
    tokens_in: int | None,
    tokens_out: int | None,
    sent_chars: int = 0,
    received_chars: int = 0,
) -> Charge:
    """One call's charge: the tokens the provider reported; where it reported none (None),
    estimated from the characters sent and received."""
    if tokens_in is None:
        tokens_in = estimate_tokens(sent_chars)
    if tokens_out is None:
        tokens_out = estimate_tokens(received_chars)
    cost = _priced(model).cost(tokens_in, tokens_out) or 0.0  # no price: tokens only
    shard = random.randrange(SHARDS)  # noqa: S311 (spreads row locks; nothing secret)
    return Charge(
        user_id, project_id, model.name, tokens_in, tokens_out, cost, utcnow().date(), shard
    )


def _priced(model: ModelChoice) -> ModelChoice:
    """``model`` with the prices it is charged at. A listed model without a price is the
    operator's choice: its tokens cost $0. A name ``MODELS`` no longer lists (a version saved
    before the model was removed still uses it) costs what the dearest listed model costs:
    removing a model from the list must not make it free."""
    if model.input_per_million is not None and model.output_per_million is not None:
        return model
    if catalog.is_listed(model.name):
        return model
    listed = catalog.choices()
    return replace(
        model,
        input_per_million=max(c.input_per_million or 0.0 for c in listed),
        output_per_million=max(c.output_per_million or 0.0 for c in listed),
    )


_UPSERTS: dict[str, Any] = {}
_INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def _upsert():
    """``INSERT … ON CONFLICT DO UPDATE`` adding to the row's counts, built once per dialect:
    concurrent charges to one row (several workers) add up instead of colliding."""
    dialect = db.engine.dialect.name
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        table = UsageDay.__table__
        insert = _INSERTS[dialect](table)
        stmt = _UPSERTS[dialect] = insert.on_conflict_do_update(
            index_elements=list(table.primary_key.columns),
            set_={name: table.c[name] + insert.excluded[name] for name in _ADDED},
        )
    return stmt


def record(charge: Charge) -> None:
    """Add ``charge`` to the ledger, in the caller's transaction (the caller commits)."""
    db.session.execute(_upsert(), {**vars(charge), "calls": 1})


def record_after(guard: Update, params: dict[str, Any], charge: Charge) -> None:
    """Run ``guard``, an ``UPDATE … RETURNING`` that changes its row at most once (the final
    store of a reply), and add ``charge`` only if it changed one: so what it pays for is charged
    exactly once however often it is written. In the caller's transaction. PostgreSQL does both
    in one statement (the ``UPDATE`` as a data-modifying CTE whose row feeds the upsert), so the
    charge costs the chat no round trip; SQLite runs the two in turn."""
    if db.engine.dialect.name != "postgresql":
        if db.session.execute(guard, params).first() is not None:
            record(charge)
        return
    stmt = _CHARGED_AFTER.get(guard)
    if stmt is None:
        table = UsageDay.__table__
        names = [column.key for column in table.columns]
        changed = guard.cte("changed")
        source = select(
            *(bindparam(f"charge_{name}", type_=table.c[name].type) for name in names)
        ).select_from(changed)
        insert = postgresql_insert(table).from_select(names, source)
        stmt = _CHARGED_AFTER[guard] = insert.on_conflict_do_update(
            index_elements=list(table.primary_key.columns),
            set_={name: table.c[name] + insert.excluded[name] for name in _ADDED},
        ).add_cte(changed)
    charged = {f"charge_{key}": value for key, value in vars(charge).items()}
    db.session.execute(stmt, {**params, **charged, "charge_calls": 1})


_CHARGED_AFTER: dict[Update, Any] = {}


# --- budgets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    name: str  # "day" | "month"
    start: date  # the first UTC day it counts
    resets_at: datetime  # when the next one starts
    limit_usd: float | None  # None: no cap


def periods(now: datetime | None = None) -> tuple[Period, Period]:
    """Today and this month (UTC), with their caps."""
    today = (now or utcnow()).astimezone(UTC).date()
    month = today.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    config = current_app.config
    day_cap, month_cap = config["USER_BUDGET_USD_DAY"], config["USER_BUDGET_USD_MONTH"]
    return (
        Period("day", today, _midnight(today + timedelta(days=1)), day_cap or None),
        Period("month", month, _midnight(next_month), month_cap or None),
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


# --- token budgets: an API key's or a share link's, per calendar month (UTC) -----------------


def month_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start of this calendar month (UTC) and of the next, as ``periods`` counts them."""
    _, month = periods(now)
    return _midnight(month.start), month.resets_at


def reply_tokens() -> ColumnElement[int]:
    """The tokens (in + out) of the messages selected, 0 for none."""
    both = func.coalesce(Message.tokens_in, 0) + func.coalesce(Message.tokens_out, 0)
    return func.coalesce(func.sum(both), 0)


def tokens_this_month(conversations: ColumnElement[bool]) -> int:
    """Tokens of this month's replies in the conversations ``conversations`` selects
    (``Conversation.api_key_id == 7``: a key's; ``Conversation.share_link_id == 3``: a link's)."""
    start, _ = month_bounds()
    used = db.session.scalar(
        select(reply_tokens())
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(conversations, Message.created_at >= start)
    )
    return int(used or 0)


def _capped() -> list[Period]:
    return [period for period in periods() if period.limit_usd]


_SPEND_COLUMNS: dict[tuple[str, ...], tuple[ScalarSelect, ...]] = {}


def spend_columns() -> tuple[ScalarSelect, ...]:
    """The spend in each capped period, as scalar subqueries for another query to read (none
    when nothing is capped), with their values in ``spend_params``; pass what it read to
    ``enforce``. Built once per set of capped periods, so the query that reads them can be
    built once too (``get_project_with``)."""
    names = tuple(period.name for period in _capped())
    columns = _SPEND_COLUMNS.get(names)
    if columns is None:
        columns = _SPEND_COLUMNS[names] = tuple(_spent_since(name) for name in names)
    return columns


def _spent_since(name: str) -> ScalarSelect:
    return (
        select(func.coalesce(func.sum(UsageDay.cost_usd), 0.0))
        .where(
            UsageDay.user_id == bindparam("spend_user_id"),
            UsageDay.day >= bindparam(f"spend_{name}_start"),
        )
        .scalar_subquery()
    )


def spend_params(user_id: int) -> dict[str, Any]:
    """The values ``spend_columns`` need: whose spend, since when."""
    day, month = periods()
    return {
        "spend_user_id": user_id,
        "spend_day_start": day.start,
        "spend_month_start": month.start,
    }


def enforce(spent: Sequence[float]) -> None:
    """Raise ``BudgetExceeded`` if a capped period's spend (as read by ``spend_columns``, in
    the same order) has reached its cap; when both have, the month's (it lasts longer)."""
    over = [
        (period, value)
        for period, value in zip(_capped(), spent, strict=True)
        if value >= period.limit_usd
    ]
    if over:
        raise _exceeded(*max(over, key=lambda found: found[0].resets_at))


def require_budget(user_id: int) -> None:
    """``enforce`` with a query of its own: for callers that read nothing else first."""
    columns = spend_columns()
    if columns:
        enforce(db.session.execute(select(*columns), spend_params(user_id)).one())


def _exceeded(period: Period, spent: float) -> BudgetExceeded:
    wait = max(1, math.ceil((period.resets_at - utcnow()).total_seconds()))
    which = "today's" if period.name == "day" else "this month's"
    when = "at 00:00 UTC" if period.name == "day" else f"on {_date(period.resets_at)}"
    message = (
        f"You have used {which} model budget ({usd(spent)} of {usd(period.limit_usd)}). "
        f"It resets {when}, {_in(wait)}; nothing was sent to the model."
    )
    details = {
        "budget": {
            "period": period.name,
            "limit_usd": period.limit_usd,
            "spent_usd": spent,
            "resets_at": period.resets_at.isoformat(),
        }
    }
    return BudgetExceeded(message, headers={"Retry-After": str(wait)}, extra=details)


def usd(amount: float) -> str:
    """Dollars for people: cents, or for less than a cent up to six decimals ($0.00012)."""
    if amount >= 0.01 or amount == 0:
        return f"${amount:,.2f}"
    return "$" + f"{amount:.6f}".rstrip("0").rstrip(".")


def _date(moment: datetime) -> str:
    return f"{moment.day} {moment:%B} at 00:00 UTC"


def _in(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    if minutes >= 48 * 60:
        return f"in {minutes // (24 * 60)} days"
    if minutes >= 60:
        return f"in {minutes // 60} h {minutes % 60} min"
    return f"in {minutes} min"


# --- what the user sees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodUsage:
    period: str
    spent_usd: float
    limit_usd: float | None
    resets_at: datetime

    @property
    def remaining_usd(self) -> float | None:
        return None if self.limit_usd is None else max(0.0, self.limit_usd - self.spent_usd)

    @property
    def exceeded(self) -> bool:
        return self.limit_usd is not None and self.spent_usd >= self.limit_usd


def summary(user_id: int) -> tuple[PeriodUsage, PeriodUsage]:
    """Today's and this month's spend with their caps (one query over the month's rows)."""
    day, month = periods()
    cost = UsageDay.cost_usd
    today = func.coalesce(func.sum(case((UsageDay.day >= day.start, cost), else_=0.0)), 0.0)
    row = db.session.execute(
        select(today, func.coalesce(func.sum(cost), 0.0)).where(
            UsageDay.user_id == user_id, UsageDay.day >= month.start
        )
    ).one()
    return tuple(
        PeriodUsage(p.name, float(spent), p.limit_usd, p.resets_at)
        for p, spent in zip((day, month), row, strict=True)
    )
