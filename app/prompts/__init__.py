"""Versioned system prompts per project: history, one active version, rollback, diff."""
