"""``LogoutManager``: the Flask extension object.

Supports both ``LogoutManager(app)`` and ``manager.init_app(app)`` for
application factories. ``init_app`` reads and validates every ``LOGOUT_*``
setting once, builds the store and the service, creates the store's tables,
registers the blueprints of the configured dialects and, when
``LOGOUT_PROTECTED_PATHS`` is set, wraps ``app.wsgi_app`` in the
:class:`~flask_logout.middleware.BearerMiddleware`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .config import load_config
from .middleware import BearerMiddleware
from .service import LogoutService
from .store import SQLStore, make_engine

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

EXTENSION_KEY = "flask_logout"

#: ``(login_id, password) -> user dict or None``; see :meth:`LogoutManager.credentials_loader`.
CredentialsLoader = Callable[[str, str], "dict[str, Any] | None"]
#: ``user_id -> user dict or None``; see :meth:`LogoutManager.user_loader`.
UserLoader = Callable[[str], "dict[str, Any] | None"]


@dataclass
class _State:
    """What one application holds in ``app.extensions["flask_logout"]``."""

    manager: LogoutManager
    service: LogoutService


class LogoutManager:
    """Make logging out real for a Flask application.

    :param app: the application, or ``None`` to call :meth:`init_app` later.
    :param db: the application's Flask-SQLAlchemy instance; the store's tables
        join its metadata and engine. Without it the store uses its own
        engine on ``LOGOUT_DATABASE_URI`` (SQLite in the instance folder by
        default).
    """

    def __init__(self, app: Flask | None = None, *, db: SQLAlchemy | None = None) -> None:
        self.db = db
        self._app: Flask | None = None
        self.check_credentials: CredentialsLoader | None = None
        self.load_user: UserLoader | None = None
        if app is not None:
            self.init_app(app)

    def credentials_loader(self, callback: CredentialsLoader) -> CredentialsLoader:
        """Register the function that checks a user's login id and password.

        It returns a user dict with at least ``"userId"`` (other keys, such as
        ``"email"`` or ``"name"``, are passed on to the client), or ``None``
        when the credentials are wrong. Compare passwords with
        ``werkzeug.security.check_password_hash``, never with ``==``.
        """
        self.check_credentials = callback
        return callback

    def user_loader(self, callback: UserLoader) -> UserLoader:
        """Register the function that returns a user dict by id (for refresh
        answers); ``None`` means the user is gone: every refresh path
        (``/v1/auth/refresh``, ``/session/token/refresh``, ``/auth/refresh``)
        then refuses the user's refresh token and revokes its session. API
        client tokens are not passed to it (they are checked by their client
        record)."""
        self.load_user = callback
        return callback

    def _user_exists(self, user_id: str) -> bool:
        """Whether the user_loader still knows ``user_id`` (True without a user_loader)."""
        return self.load_user is None or self.load_user(user_id) is not None

    def init_app(self, app: Flask, *, db: SQLAlchemy | None = None) -> None:
        db = db if db is not None else self.db
        default_uri = "sqlite:///" + os.path.join(app.instance_path, "flask_logout.sqlite3")
        config = load_config(app.config, default_database_uri=default_uri)
        if db is not None:
            store = _store_on(app, db)
        else:
            assert config.database_uri is not None
            if config.database_uri == default_uri:
                os.makedirs(app.instance_path, exist_ok=True)
            store = SQLStore(make_engine(config.database_uri, timeout=config.store_timeout))
        if config.create_tables:
            store.create_all()
        service = LogoutService(config, store)
        service.user_exists = self._user_exists  # every refresh asks the user_loader
        app.extensions[EXTENSION_KEY] = _State(self, service)
        if "client" in config.dialects:
            from .dialects.client_api import bp as client_bp

            app.register_blueprint(client_bp)
        if "descope" in config.dialects:
            from .dialects.descope import bp as descope_bp

            app.register_blueprint(descope_bp)
        if "session" in config.dialects:
            from .dialects.session import bp as session_bp

            app.register_blueprint(session_bp)
        if "oauth" in config.dialects:
            from .dialects.oauth import bp as oauth_bp

            app.register_blueprint(oauth_bp)
        from .cli import logout_cli

        if "logout" not in app.cli.commands:
            app.cli.add_command(logout_cli)
        if config.health_path:
            from .health import flask_view

            app.add_url_rule(config.health_path, "flask_logout_health", flask_view(service))
        if config.protected_paths:
            app.wsgi_app = BearerMiddleware(app.wsgi_app, service)  # type: ignore[method-assign]
        from .cors import enable as enable_cors

        enable_cors(app, config)  # LOGOUT_CORS_ORIGINS: the descope endpoints and the protected paths
        if self._app is None:
            self._app = app

    @property
    def service(self) -> LogoutService:
        """The service of the current application (or of the only one)."""
        return get_service(current_app if _has_app_context() else self._app)


def get_service(app: Any = None) -> LogoutService:
    """The :class:`LogoutService` of ``app`` (default: the current app)."""
    return _state(app).service


def get_manager(app: Any = None) -> LogoutManager:
    """The :class:`LogoutManager` initialised on ``app`` (default: the current app)."""
    return _state(app).manager


def _state(app: Any) -> _State:
    target = app if app is not None else current_app
    try:
        state: _State = target.extensions[EXTENSION_KEY]
    except (KeyError, AttributeError):
        raise RuntimeError("flask_logout is not initialised on this app: call LogoutManager(app)") from None
    return state


def _has_app_context() -> bool:
    from flask import has_app_context

    return has_app_context()


def _store_on(app: Flask, db: SQLAlchemy) -> SQLStore:
    if "sqlalchemy" not in app.extensions or app.extensions["sqlalchemy"] is not db:
        raise RuntimeError("flask_logout: call db.init_app(app) before LogoutManager(app, db=db)")
    with app.app_context():
        engine = db.engine
    return SQLStore(engine, db.metadata)
