"""LLM provider adapters (OpenAI Responses, OpenRouter chat completions, an offline demo) and
the fallback chain.

Nothing in this package imports Flask: adapters know httpx, httpx-sse and their wire format only
(docs/providers.md). ``chain.py`` is the one place that decides retry and fallback; the app
builds one ``httpx.Client`` per process with ``make_http_client`` and one chain with
``build_chain``.
"""
