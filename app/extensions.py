"""Flask extensions, created unbound here and bound in ``create_app`` with ``init_app``.

Flask-Migrate is the exception: importing it loads Alembic and Mako (about 11 MB per process),
which only the ``flask db`` commands use, so ``create_app`` builds it only when
``DB_MIGRATE_COMMANDS`` is on (the default; the gunicorn workers turn it off)."""

from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from app.models.base import Base

db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
MIGRATE_OPTIONS = {"render_as_batch": True, "compare_type": True}
