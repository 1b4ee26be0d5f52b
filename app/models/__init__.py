"""All models, imported here so Alembic and ``db.create_all`` see every table."""

from app.models.base import Base
from app.models.chat import (
    Arm,
    Choice,
    Comparison,
    Conversation,
    Message,
    MessageStatus,
    Role,
    TitleState,
)
from app.models.file import StoredFile, SyncStatus, TextStatus
from app.models.project import Project
from app.models.prompt import PromptLabel, PromptVersion
from app.models.session import UserSession
from app.models.usage import UsageDay
from app.models.user import User

__all__ = [
    "Arm",
    "Base",
    "Choice",
    "Comparison",
    "Conversation",
    "Message",
    "MessageStatus",
    "Project",
    "PromptLabel",
    "PromptVersion",
    "Role",
    "StoredFile",
    "SyncStatus",
    "TextStatus",
    "TitleState",
    "UsageDay",
    "User",
    "UserSession",
]
