"""Project form: presentation and parsing only; the rules (and their messages) are in services."""

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

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
