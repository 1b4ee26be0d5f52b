"""The keys page's form: presentation and parsing only; the rules are in services."""

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional

from app.keys.services import NAME_MAX


class KeyForm(FlaskForm):
    name = StringField(
        "Name", render_kw={"maxlength": NAME_MAX, "required": True, "placeholder": "support widget"}
    )
    scope = SelectField(
        "What it may do",
        choices=[
            SelectChoice("chat", "Chat only: the OpenAI-compatible endpoints (/v1)"),
            SelectChoice("read", "Chat, and read the JSON API"),
            SelectChoice("manage", "Everything the JSON API does, but your keys and password"),
        ],
        default="chat",
    )
    project_id = SelectField("Project", coerce=int, default=0)
    expires_in_days = IntegerField(
        "Expires after (days, optional)", validators=[Optional(), NumberRange(1, 3650)]
    )
    rate_per_minute = IntegerField(
        "Calls a minute (optional)", validators=[Optional(), NumberRange(min=1)]
    )
    monthly_tokens = IntegerField(
        "Tokens a month (optional)", validators=[Optional(), NumberRange(min=1)]
    )
