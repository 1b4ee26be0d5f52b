from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

from app.prompts.versions import NOTE_MAX


class PromptForm(FlaskForm):
    content = TextAreaField("System prompt", render_kw={"rows": 12, "required": True})
    note = StringField(
        "Note (optional)",
        render_kw={"maxlength": NOTE_MAX, "placeholder": "e.g. tone: more formal"},
    )
