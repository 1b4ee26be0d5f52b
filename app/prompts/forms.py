"""Prompt tab forms: presentation and parsing only; the rules and their messages live in
``services`` and ``versions`` (one source for the pages and the API)."""

from flask_wtf import FlaskForm
from wtforms import FloatField, IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Optional

from app.prompts.versions import NOTE_MAX


class PromptForm(FlaskForm):
    """A new version: text, note and model settings. The two buttons say where it goes.
    Ranges and the model allowlist are checked by the service (field errors come back here)."""

    content = TextAreaField("System prompt", render_kw={"rows": 12, "required": True})
    note = StringField(
        "Note (optional)",
        render_kw={"maxlength": NOTE_MAX, "placeholder": "e.g. tone: more formal"},
    )
    model = SelectField("Model", choices=[], validate_choice=False)
    temperature = FloatField(
        "Temperature (optional)",
        validators=[Optional()],
        render_kw={"inputmode": "decimal", "placeholder": "default", "step": "0.1"},
    )
    max_output_tokens = IntegerField(
        "Max output tokens", validators=[Optional()], render_kw={"inputmode": "numeric"}
    )
    save_live = SubmitField("Save and make live")
    save_candidate = SubmitField("Save as candidate")


class CanaryForm(FlaskForm):
    percent = IntegerField(
        "Share of new conversations (%)",
        validators=[InputRequired(message="Give a share from 0 to 100.")],
        render_kw={"min": 0, "max": 100, "inputmode": "numeric"},
    )
