"""The one spelling of an account's email: what is stored, looked up and rate-limited.

Every place that turns an email into an account identity goes through ``canonical_email``:
registration (``users.email`` holds this form under a unique constraint), login, and the
per-account login limit. Two spellings that reach the same account therefore also share one
limit: a different spelling can never buy an attacker a fresh count.

The canonical form, in order:

1. Unicode NFKC, then surrounding whitespace stripped: compatibility forms fold into their
   plain letters (fullwidth ``ａlice＠example．com`` is ``alice@example.com``), so look-alikes
   typed from another keyboard are one account, not a second one.
2. ``email_validator`` (no DNS): syntax, and the domain through IDNA (UTS #46), so
   ``xn--bcher-kva.example``, ``BÜCHER.example`` and ``bücher.example`` agree; the domain is
   kept in its Unicode form, as registration has always stored it.
3. Lower-case (``str.lower``, not ``casefold``): what registration has always stored, so existing
   rows keep matching. ``casefold`` would also fold ``ß`` into ``ss`` and change stored emails.
4. NFKC once more, so the form is stable: applying ``canonical_email`` to it changes nothing.

No request, no database: a pure function, tested on lists of spellings.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from app.errors import ValidationFailed


def canonical_email(raw: str | None) -> str:
    """The account identity of ``raw``, or ``ValidationFailed`` (field ``email``)."""
    email = unicodedata.normalize("NFKC", raw or "").strip()
    if not email:
        raise ValidationFailed(fields={"email": "Enter your email address."})
    try:
        checked = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(fields={"email": str(exc)}) from exc
    return unicodedata.normalize("NFKC", checked.normalized.lower())


def canonical_email_or_none(raw: str | None) -> str | None:
    """``canonical_email``, or None when ``raw`` is not an email (it names no account)."""
    try:
        return canonical_email(raw)
    except ValidationFailed:
        return None
