"""Chat: conversations, persisted messages, streamed replies through the provider chain."""
