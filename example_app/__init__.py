"""A runnable example of flask-logout: ``flask --app example_app run``.

Every setting can be given in the environment as ``FLASK_LOGOUT_...`` (for
example ``FLASK_LOGOUT_DATABASE_URI=postgresql+psycopg://...``). On first
start it creates an SQLite store in the instance folder and seeds:

* API client ``demo-client`` / ``demo-secret``, whitelist 127.0.0.0/8 and ::1/128;
* API client ``locked-client`` / ``locked-secret``, whitelist 203.0.113.0/24;
* ``GET /api/me``, protected by the bearer middleware.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import Flask, jsonify

from flask_logout import LogoutManager, current_token, get_service

DEMO_CLIENTS = (
    ("demo-client", "demo-secret", ("127.0.0.0/8", "::1/128")),
    ("locked-client", "locked-secret", ("203.0.113.0/24",)),
)


def create_app(settings: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config["LOGOUT_PROTECTED_PATHS"] = ["/api"]
    app.config.from_prefixed_env()
    if settings:
        app.config.update(settings)
    if not app.config.get("SECRET_KEY") and not app.config.get("LOGOUT_SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app.instance_path)

    LogoutManager(app)
    _seed(app)

    @app.get("/")
    def index() -> Any:
        return jsonify(
            {
                "name": "flask-logout example",
                "endpoints": ["POST /auth/login", "POST /auth/refresh", "POST /auth/logout", "GET /api/me"],
                "demo_client": {"client_id": "demo-client", "client_secret": "demo-secret"},
            }
        )

    @app.get("/api/me")
    def me() -> Any:
        token = current_token()
        assert token is not None  # the middleware guarantees it under /api
        return jsonify({"success": True, "data": {"client_id": token.cid}})

    return app


def _instance_secret(instance_path: str) -> str:
    """A random signing key kept in the instance folder, shared by every worker."""
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as existing:
            return existing.read().strip()
    with os.fdopen(fd, "w", encoding="ascii") as new:
        key = secrets.token_urlsafe(48)
        new.write(key)
    return key


def _seed(app: Flask) -> None:
    service = get_service(app)
    for client_id, secret, cidrs in DEMO_CLIENTS:
        if service.store.get_client(client_id) is None:
            service.register_client(client_id, secret, cidrs)
