"""The applications compared: bare Flask, flask-logout, Flask-JWT-Extended.

Every app has the same routes, the same ``SECRET_KEY`` and the same view body
(minus what the authentication library hands it), so that what differs between
two of them is what a user of the library pays.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify

SECRET = "benchmark-secret-key-that-is-long-enough-for-hs256"
FAST_HASH = "pbkdf2:sha256:1000"
#: Flask's own ``SECRET_KEY`` (sessions), set alike on every app compared.
FLASK_SECRET = "benchmark-flask-session-key"
#: The User-Agent of the browser-session benchmarks (at sign-in and on every request).
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) benchmark"


def _public_routes(app: Flask) -> None:
    """Routes every compared app has besides ``/api/me``, so routing costs alike."""

    @app.get("/")
    def index() -> Any:
        return "ok"

    @app.get("/api/status")
    def status() -> Any:
        return jsonify({"success": True})


def bare_app() -> Flask:
    """The baseline: the same app and routes, no authentication (the view minus the token)."""
    app = Flask("bare")
    app.config["SECRET_KEY"] = FLASK_SECRET
    _public_routes(app)

    @app.get("/api/me")
    def me() -> Any:
        return jsonify({"success": True, "data": {"client_id": "bench"}})

    return app


def logout_app(database_uri: str | None = None, **settings: Any) -> tuple[Flask, Any]:
    """The same app used the documented way: ``LogoutManager`` with
    ``LOGOUT_PROTECTED_PATHS`` (the middleware) and ``current_token_or_none()`` in the view."""
    from flask_logout import LogoutManager, current_token_or_none, get_service

    if database_uri is None:
        database_uri = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    app = Flask("flask_logout_bench")
    app.config.update(
        {
            "SECRET_KEY": FLASK_SECRET,
            "LOGOUT_SECRET_KEY": SECRET,
            "LOGOUT_DATABASE_URI": database_uri,
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
            "LOGOUT_PROTECTED_PATHS": ["/api"],
            "LOGOUT_TOKEN_CACHE_SIZE": 200_000,
            **settings,
        }
    )
    LogoutManager(app)
    _public_routes(app)

    @app.get("/api/me")
    def me() -> Any:
        # Works with and without the middleware, so that the same app, called
        # beneath the middleware (app.wsgi_app.__self__.app), can be timed too.
        token = current_token_or_none()
        return jsonify({"success": True, "data": {"client_id": token.cid if token else "bench"}})

    service = get_service(app)
    service.register_client("bench", "bench-secret")
    return app, service


def fje_memory_app() -> tuple[Flask, Any]:
    """Flask-JWT-Extended with the documented in-memory (set) blocklist."""
    from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required

    app = Flask("fje_memory")
    app.config.update(SECRET_KEY=FLASK_SECRET, JWT_SECRET_KEY=SECRET, JWT_ACCESS_TOKEN_EXPIRES=timedelta(hours=1))
    jwt = JWTManager(app)
    _public_routes(app)
    blocklist: set[str] = set()

    @jwt.token_in_blocklist_loader
    def check(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return payload["jti"] in blocklist

    @app.get("/api/me")
    @jwt_required()
    def me() -> Any:
        return jsonify({"success": True, "data": {"client_id": get_jwt_identity()}})

    with app.app_context():
        token = create_access_token(identity="bench")
    return app, token


def fje_sqlalchemy_app(rows: int = 100_000) -> tuple[Flask, Any]:
    """Flask-JWT-Extended with its documented SQLAlchemy blocklist, SQLite, ``rows`` revoked tokens."""
    import uuid

    from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required
    from flask_sqlalchemy import SQLAlchemy

    path = os.path.join(tempfile.mkdtemp(), "fje.sqlite3")
    app = Flask("fje_sqlalchemy")
    app.config.update(
        SECRET_KEY=FLASK_SECRET,
        JWT_SECRET_KEY=SECRET,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(hours=1),
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}",
    )
    db = SQLAlchemy(app)
    jwt = JWTManager(app)
    _public_routes(app)

    class TokenBlocklist(db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        jti = db.Column(db.String(36), nullable=False, index=True)
        created_at = db.Column(db.Integer, nullable=False)

    @jwt.token_in_blocklist_loader
    def check(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return db.session.query(TokenBlocklist.id).filter_by(jti=payload["jti"]).scalar() is not None

    @app.get("/api/me")
    @jwt_required()
    def me() -> Any:
        return jsonify({"success": True, "data": {"client_id": get_jwt_identity()}})

    with app.app_context():
        db.create_all()
        db.session.execute(
            TokenBlocklist.__table__.insert(), [{"jti": str(uuid.uuid4()), "created_at": 0} for _ in range(rows)]
        )
        db.session.commit()
        token = create_access_token(identity="bench")
    return app, token


# -- browser sessions: cookies and Flask-Login --------------------------------


def _page(app: Flask, *decorators: Any) -> None:
    """``/page``: the same small JSON page on every browser-session app."""

    def page() -> Any:
        return jsonify({"success": True, "data": {"page": "account"}})

    view: Any = page
    for decorator in reversed(decorators):
        view = decorator(view)
    app.add_url_rule("/page", "page", view)


def bare_page_app() -> Flask:
    """The browser-session baseline: the bare app with ``/page``, no authentication."""
    app = bare_app()
    _page(app)
    return app


def cookie_middleware_app() -> tuple[Flask, Any]:
    """``LOGOUT_COOKIE_AUTH``: the middleware reads the session cookie on the protected paths."""
    app, service = logout_app(LOGOUT_COOKIE_AUTH=True, LOGOUT_PROTECTED_PATHS=["/api", "/page"])
    _page(app)
    return app, service


def cookie_required_app() -> tuple[Flask, Any]:
    """``@cookie_required`` on the page, the documented way for a few cookie-authenticated views."""
    from flask_logout import cookie_required

    app, service = logout_app(LOGOUT_PROTECTED_PATHS=[])
    _page(app, cookie_required)
    return app, service


def flask_login_app(with_sessions: bool) -> tuple[Flask, str]:
    """A Flask-Login app (``@login_required`` page), with or without ``LoginSessions``,
    and the Flask session cookie of a user signed in through its own ``/login``."""
    from flask_login import LoginManager, UserMixin, login_required, login_user

    class User(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    app = Flask("flask_login_sessions" if with_sessions else "flask_login")
    app.config.update(SECRET_KEY=FLASK_SECRET)
    if with_sessions:
        from flask_logout import LogoutManager
        from flask_logout.login import LoginSessions

        app.config.update(
            LOGOUT_SECRET_KEY=SECRET,
            LOGOUT_DATABASE_URI=f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3",
            LOGOUT_CLIENT_SECRET_HASH=FAST_HASH,
        )
    login_manager = LoginManager(app)
    login_manager.user_loader(User)
    if with_sessions:
        LogoutManager(app)
        LoginSessions(app)
    _public_routes(app)
    _page(app, login_required)

    @app.post("/login")
    def login() -> Any:
        login_user(User("bench"))
        return "ok"

    # The browser signs in and comes back with the same User-Agent (Flask-Login's
    # session protection hashes it with the address: another one would mark the
    # session not fresh and re-save it on every request, which a browser does not cause).
    answer = app.test_client().post("/login", headers={"User-Agent": BROWSER})
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("session="))
    return app, cookie.split(";", 1)[0]
