"""Prompt tab forms: presentation and parsing only; the rules and their messages live in
``services`` and ``versions`` (one source for the pages and the API)."""

import json

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    FloatField,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Optional

from app import templating
from app.prompts.versions import NOTE_MAX

BLANK_ROWS = 1  # empty variable rows the editor offers (its script adds more as names appear)


class VariableRow(Form):
    """One declared template variable (docs/templates.md). The default is typed as text and
    parsed by ``declarations`` for its type; the service checks the result."""

    name = StringField("Name", render_kw={"maxlength": 64, "autocomplete": "off"})
    type = SelectField("Type", choices=list(templating.TYPES), validate_choice=False)
    default = StringField(
        "Default", render_kw={"placeholder": "none", "title": "Lists: comma-separated"}
    )
    description = StringField("Description", render_kw={"maxlength": templating.DESCRIPTION_MAX})
    required = BooleanField("Required", default=True)


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
    variables = FieldList(
        FormField(VariableRow), min_entries=BLANK_ROWS, max_entries=templating.MAX_VARIABLES + 5
    )
    output_format = SelectField(
        "Output format",
        choices=[
            SelectChoice("text", "Text"),
            SelectChoice("json_object", "JSON object"),
            SelectChoice("json_schema", "JSON matching a schema (strict)"),
        ],
        validate_choice=False,
    )
    output_schema = TextAreaField(
        "JSON Schema",
        render_kw={"rows": 8, "spellcheck": "false", "class": "code-input"},
    )
    save_live = SubmitField("Save and make live")
    save_candidate = SubmitField("Save as candidate")


class CanaryForm(FlaskForm):
    percent = IntegerField(
        "Share of new conversations (%)",
        validators=[InputRequired(message="Give a share from 0 to 100.")],
        render_kw={"min": 0, "max": 100, "inputmode": "numeric"},
    )


def parse_default(kind: str, text: str | None) -> object:
    """A default typed in the editor, as its type's value when it reads as one (else the text
    as it is, for the service to refuse with its message)."""
    text = (text or "").strip()
    if not text:
        return None
    if kind == "number":
        try:
            return json.loads(text) if text.lstrip("-").replace(".", "", 1).isdigit() else text
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "yes": True, "false": False, "no": False}.get(text.lower(), text)
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def declarations(form: PromptForm) -> tuple[list[dict], list[int]]:
    """The variables the editor declares (rows without a name are left out), and for each the
    index of its row, to put the service's ``variables[i].field`` errors back on it."""
    found, rows = [], []
    for index, entry in enumerate(form.variables.entries):
        row = entry.form
        name = (row.name.data or "").strip()
        if not name:
            continue
        found.append(
            {
                "name": name,
                "type": row.type.data,
                "default": parse_default(row.type.data, row.default.data),
                "description": (row.description.data or "").strip() or None,
                "required": bool(row.required.data),
            }
        )
        rows.append(index)
    return found, rows


def editor_rows(variables: list[dict]) -> list[dict]:
    """A version's declarations as the editor's rows (defaults as text), plus blank rows."""
    rows = []
    for v in variables:
        default = v.get("default")
        if isinstance(default, list):
            default = ", ".join(str(item) for item in default)
        elif isinstance(default, bool):
            default = "true" if default else "false"
        rows.append({**v, "default": "" if default is None else str(default)})
    return rows + [{"required": True}] * BLANK_ROWS


class LabelForm(FlaskForm):
    """A new label, or (``move``) another version for an existing one. The name rules live in
    ``labels``."""

    name = StringField(
        "Label",
        render_kw={"maxlength": 40, "placeholder": "e.g. staging", "autocomplete": "off"},
    )
    version = IntegerField(
        "Version",
        validators=[InputRequired(message="Choose a version.")],
        render_kw={"min": 1, "inputmode": "numeric"},
    )
