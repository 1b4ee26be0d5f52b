"""All models, imported here so Alembic and ``db.create_all`` see every table."""

from app.models.base import Base
from app.models.project import Project
from app.models.user import User

__all__ = ["Base", "Project", "User"]
