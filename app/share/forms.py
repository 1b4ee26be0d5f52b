"""The share page's forms: presentation and parsing only; the rules are in services."""

from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, TextAreaField
from wtforms.validators import NumberRange, Optional


class ShareLinkForm(FlaskForm):
    expires_in_days = IntegerField(
        "Expires after (days, optional)", validators=[Optional(), NumberRange(1, 3650)]
    )
    passcode = PasswordField(
        "Passcode (optional)", render_kw={"autocomplete": "new-password", "maxlength": 72}
    )
    allowed_origins = TextAreaField(
        "Sites that may embed it (optional)",
        render_kw={"rows": 2, "placeholder": "https://example.com https://docs.example.com"},
    )
    monthly_tokens = IntegerField(
        "Tokens a month for all visitors (optional)", validators=[Optional(), NumberRange(min=1)]
    )


class UnlockForm(FlaskForm):
    class Meta:
        csrf = False  # the visitor token instead (``visitors.check_token``)

    passcode = PasswordField(
        "Passcode", render_kw={"autocomplete": "current-password", "required": True}
    )
