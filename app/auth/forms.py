"""Auth forms: presentation and parsing only. The rules and their messages live in ``services``
(one source for the pages and the API); only "repeat password" is a form-only concern."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import EqualTo


class RegisterForm(FlaskForm):
    email = EmailField(
        "Email", render_kw={"required": True, "autocomplete": "email", "maxlength": 254}
    )
    name = StringField("Display name (optional)", render_kw={"maxlength": 80})
    password = PasswordField(
        "Password", render_kw={"required": True, "autocomplete": "new-password", "minlength": 8}
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[EqualTo("password", message="The passwords differ.")],
        render_kw={"required": True, "autocomplete": "new-password"},
    )


class LoginForm(FlaskForm):
    email = EmailField("Email", render_kw={"required": True, "autocomplete": "email"})
    password = PasswordField(
        "Password", render_kw={"required": True, "autocomplete": "current-password"}
    )
    remember = BooleanField("Keep me logged in for 30 days")
