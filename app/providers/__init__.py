"""LLM provider adapters (OpenAI Responses, OpenRouter, offline demo) and the fallback chain.

Nothing in this package imports Flask: adapters know httpx and their wire format only.
"""
