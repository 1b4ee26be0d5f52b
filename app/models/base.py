"""Declarative base with a naming convention, and a UTC-aware timestamp type.

SQLite drops time zones; ``UTCDateTime`` stores UTC and always hands back aware datetimes, so
the same code compares timestamps on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Ids and other integers the API accepts fit PostgreSQL's ``integer`` (32-bit signed); a larger
# number could never name a row, and would overflow inside the query (SQLite and PostgreSQL).
MAX_DB_INT = 2**31 - 1


def db_int(raw: str | None) -> int | None:
    """A count or id written in ASCII digits that fits an integer column, else None.

    (``str.isdigit`` alone is not enough: it accepts digits ``int`` cannot read, such as "²".)
    """
    if raw and raw.isascii() and raw.isdigit() and int(raw) <= MAX_DB_INT:
        return int(raw)
    return None


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
