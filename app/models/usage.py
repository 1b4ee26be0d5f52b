"""Spending on language models: rows per user, UTC day, project and model (and ``shard``),
adding up the calls, tokens and estimated cost charged to them (``app/usage.py`` writes and
reads them).

``shard`` spreads one user's charges over up to ``usage.SHARDS`` rows of the same day, project
and model: each charge adds to the row of a random shard, so concurrent replies of one user
(an API client with many streams) do not all wait for one row's lock as they are stored
(docs/benchmarks.md §16). Every reader sums over all of them.

A ledger rather than a sum over ``messages``: the budget check reads at most a month of a
user's rows through the primary key (its leading columns are the user and the day), however
long their history; deleting a conversation or a project does not give its spend back (hence no
foreign key on ``project_id``); and calls that store no message (conversation titles, later
evaluation runs and API keys) are charged to the same place.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class UsageDay(Base):
    __tablename__ = "usage_days"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # UTC
    # No foreign key: the spend outlives the project, still counting against its owner.
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(120), primary_key=True)  # the MODELS name
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tokens_in: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # USD at the MODELS price when the call was charged (a later price change keeps it).
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
