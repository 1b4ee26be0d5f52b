"""Compare: one message answered side by side by two prompt versions (or one version under two
models), streamed together, and the user's preference. Above chat and prompts; nothing below
imports it."""
