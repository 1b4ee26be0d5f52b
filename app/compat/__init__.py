"""The OpenAI-compatible endpoints (``/v1``): a project answers as a model to any OpenAI client,
with its serving version, canary, fallback and files. Above chat, keys and prompts; nothing
imports it but ``blueprints``."""
