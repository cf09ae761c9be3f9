"""WSGI apps for gunicorn, configured from the environment by benchmarks/throughput.py.

``gunicorn 'benchmarks.wsgi_apps:bare()'`` and so on; each worker builds its own.
"""

from __future__ import annotations

import os
from typing import Any

from .apps import bare_app, fje_memory_app, logout_app


def bare() -> Any:
    return bare_app()


def flask_logout() -> Any:
    app, _ = logout_app(os.environ["BENCH_DATABASE_URI"])
    return app


def flask_jwt_extended() -> Any:
    app, _ = fje_memory_app()
    return app
