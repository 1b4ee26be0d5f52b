"""``canonical_email``: one spelling per account, used by registration, login and the
per-account login limit (tests/test_rate_limits.py, tests/test_auth_api.py use it end to end)."""

import pytest

from app.errors import ValidationFailed
from app.identity import canonical_email, canonical_email_or_none


@pytest.mark.parametrize(
    ("spelling", "identity"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada@EXAMPLE.com\t", "ada@example.com"),
        ("ａda@example.com", "ada@example.com"),  # fullwidth letters
        ("ada@ｅｘａｍｐｌｅ.com", "ada@example.com"),
        ("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ada@example.com"),  # fullwidth @ and dot too
        ("\u3000ada@example.com\u3000", "ada@example.com"),  # ideographic spaces
        ("ada@xn--bcher-kva.example", "ada@bücher.example"),  # punycode → Unicode
        ("ada@XN--BCHER-KVA.example", "ada@bücher.example"),
        ("ada@BÜCHER.example", "ada@bücher.example"),
        ("ada@bu\u0308cher.example", "ada@bücher.example"),  # decomposed ü
        ("Straße@example.com", "straße@example.com"),  # lower(), not casefold(): ß stays
        ("ÅSA@example.com", "åsa@example.com"),
    ],
)
def test_spellings_of_one_address_have_one_identity(spelling, identity):
    assert canonical_email(spelling) == identity
    assert canonical_email(identity) == identity  # stable: canonical forms stay as they are


@pytest.mark.parametrize("raw", [None, "", "   ", "not an email", "ada@", "@example.com"])
def test_what_is_not_an_email_has_no_identity(raw):
    with pytest.raises(ValidationFailed) as exc:
        canonical_email(raw)
    assert "email" in exc.value.fields
    assert canonical_email_or_none(raw) is None
