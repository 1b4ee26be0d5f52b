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
from app.models.key import ApiKey, Scope
from app.models.project import Project, SystemPolicy
from app.models.prompt import PromptLabel, PromptVersion
from app.models.session import UserSession
from app.models.share import ShareLink
from app.models.usage import UsageDay
from app.models.user import User

__all__ = [
    "ApiKey",
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
    "Scope",
    "ShareLink",
    "StoredFile",
    "SyncStatus",
    "SystemPolicy",
    "TextStatus",
    "TitleState",
    "UsageDay",
    "User",
    "UserSession",
]
