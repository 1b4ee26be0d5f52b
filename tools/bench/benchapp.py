"""The app as gunicorn serves it in the benchmarks: the production factory plus one bare route.

``GET /bench/bare`` returns a constant through the same Flask stack (global ``before_request``
hooks included) with no auth or database work, the floor ``GET /api/projects`` is compared with.
It exists only here, never in the production app.

    gunicorn --config gunicorn.conf.py 'tools.bench.benchapp:create_app()'
"""

from __future__ import annotations

from flask import Flask

from app import create_app as create_production_app


def create_app() -> Flask:
    app = create_production_app()

    @app.get("/bench/bare")
    def bare():
        return "ok"

    return app
