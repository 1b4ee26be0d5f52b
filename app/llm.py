"""The process-wide provider clients: the chat chain and the OpenAI Files client, sharing one
``httpx.Client``. Shared by every feature that calls a provider (chat, compare, files), so it
sits beside them, above ``app/providers/`` (which knows nothing of Flask).

Built lazily on first use (after a gunicorn fork, never before) from the app config, and kept on
``app.extensions`` so each process has exactly one pooled client.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app

from app import metrics, tracing
from app.providers.chain import ProviderChain, build_chain, make_http_client
from app.providers.openai_files import OpenAIFiles
from app.providers.types import ProviderSettings

_lock = threading.Lock()


def settings_from_config(config) -> ProviderSettings:
    return ProviderSettings(
        openai_api_key=config["OPENAI_API_KEY"],
        openai_base_url=config["OPENAI_BASE_URL"],
        openai_model=config["OPENAI_MODEL"],
        openai_store=config["OPENAI_STORE"],
        openrouter_api_key=config["OPENROUTER_API_KEY"],
        openrouter_base_url=config["OPENROUTER_BASE_URL"],
        openrouter_model=config["OPENROUTER_MODEL"],
        openrouter_referer=config["OPENROUTER_REFERER"],
        openrouter_title=config["OPENROUTER_TITLE"],
        max_output_tokens=config["LLM_MAX_OUTPUT_TOKENS"],
        timeout_seconds=config["LLM_TIMEOUT_SECONDS"],
        connect_timeout_seconds=config["LLM_CONNECT_TIMEOUT_SECONDS"],
        retry_max_wait_seconds=config["LLM_RETRY_MAX_WAIT_SECONDS"],
        offline_delay_ms=config["OFFLINE_TOKEN_DELAY_MS"],
        stream_read_pace_seconds=config["CHAT_STREAM_COALESCE_MS"] / 1000,
    )


def get_chain(app: Flask | None = None) -> ProviderChain:
    app = app or current_app._get_current_object()
    chain = app.extensions.get("llm_chain")
    if chain is None:
        with _lock:
            chain = app.extensions.get("llm_chain")
            if chain is None:
                settings = settings_from_config(app.config)
                client = make_http_client(settings)
                tracing.instrument_client(app, client)
                app.extensions["llm_client"] = client
                chain = app.extensions["llm_chain"] = build_chain(
                    settings, client, observe=metrics.provider_failure
                )
    return chain


def openai_files(app: Flask | None = None) -> OpenAIFiles:
    """The OpenAI Files client, on the same pooled connection as chat."""
    app = app or current_app._get_current_object()
    get_chain(app)
    return OpenAIFiles(settings_from_config(app.config), app.extensions["llm_client"])


def close_client(app: Flask) -> None:
    client = app.extensions.pop("llm_client", None)
    app.extensions.pop("llm_chain", None)
    if client is not None:
        client.close()


def describe(app: Flask) -> str:
    """One line for people: which providers answer chat, in order."""
    config = app.config
    names = [
        name
        for name, key in (("openai", "OPENAI_API_KEY"), ("openrouter", "OPENROUTER_API_KEY"))
        if config.get(key)
    ]
    if not names:
        return (
            "No OPENAI_API_KEY or OPENROUTER_API_KEY is set: chat runs the OFFLINE DEMO MODEL "
            "(canned replies, no network). Put a key in .env to use a real model."
        )
    models = {"openai": config["OPENAI_MODEL"], "openrouter": config["OPENROUTER_MODEL"]}
    chain = " -> ".join(f"{n} ({models[n]})" for n in names)
    return f"Chat providers, in fallback order: {chain}"


def is_offline(app: Flask) -> bool:
    return not (app.config.get("OPENAI_API_KEY") or app.config.get("OPENROUTER_API_KEY"))
