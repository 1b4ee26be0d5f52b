"""Project form: presentation and parsing only; the rules (and their messages) are in services."""

from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import Optional
from wtforms.widgets import HiddenInput

from app.projects.services import DESCRIPTION_MAX, NAME_MAX


class ProjectForm(FlaskForm):
    name = StringField("Name", render_kw={"maxlength": NAME_MAX, "required": True})
    description = TextAreaField(
        "Description (optional)", render_kw={"maxlength": DESCRIPTION_MAX, "rows": 3}
    )


class NewProjectForm(ProjectForm):
    system_prompt = TextAreaField(
        "System prompt (optional)",
        render_kw={"rows": 6, "placeholder": "You are a friendly support agent for …"},
    )


class EditProjectForm(ProjectForm):
    system_prompt = TextAreaField("System prompt", render_kw={"rows": 10})
    # The production version number the form was opened on (0: none), so a form opened before
    # another save cannot silently revert it (projects.services.update_project).
    prompt_base = IntegerField(widget=HiddenInput(), validators=[Optional()])
