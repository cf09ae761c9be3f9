"""``LogoutManager``: the Flask extension object.

Supports both ``LogoutManager(app)`` and ``manager.init_app(app)`` for
application factories. ``init_app`` reads and validates every ``LOGOUT_*``
setting once, builds the store and the service, creates the store's tables,
registers the blueprints of the configured dialects and, when
``LOGOUT_PROTECTED_PATHS`` is set, wraps ``app.wsgi_app`` in the
:class:`~flask_logout.middleware.BearerMiddleware` (``app.wsgi_app`` becomes
the middleware's bound ``__call__``; the middleware is
``app.wsgi_app.__self__``).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app

from .config import load_config
from .errors import LogoutError
from .middleware import BearerMiddleware
from .service import LogoutService
from .store import SQLStore, open_store

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

EXTENSION_KEY = "flask_logout"

#: ``(login_id, password) -> user dict or None``; see :meth:`LogoutManager.credentials_loader`.
CredentialsLoader = Callable[[str, str], "dict[str, Any] | None"]
#: ``user_id -> user dict or None``; see :meth:`LogoutManager.user_loader`.
UserLoader = Callable[[str], "dict[str, Any] | None"]
#: ``user_id -> str or None``; see :meth:`LogoutManager.credential_version_loader`.
CredentialVersionLoader = Callable[[str], "str | None"]
#: ``(error, response) -> response or None``; see :meth:`LogoutManager.error_handler`.
ErrorHandler = Callable[[LogoutError, Response], Any]


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
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self.check_credentials: CredentialsLoader | None = None
        self.load_user: UserLoader | None = None
        self.load_credential_version: CredentialVersionLoader | None = None
        self.handle_error: ErrorHandler | None = None
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

    def credential_version_loader(self, callback: CredentialVersionLoader) -> CredentialVersionLoader:
        """Register the function that returns a user's credential version.

        Any string that changes when the user's password (or other
        credential) changes: the password hash itself, its salt, or a
        counter. A keyed hash of it goes into every refresh token issued to
        the user (claim ``cvh``), and every refresh, in every dialect,
        compares it with the current version: a refresh token issued before
        a password change is refused and its session ended, even when the
        password was changed without calling
        :meth:`LogoutService.credentials_changed`. ``None`` means no version
        is known (the user is gone): the refresh is refused. See
        docs/password-change.md.
        """
        self.load_credential_version = callback
        for app in self._apps:
            get_service(app).credential_version = callback
        return callback

    def error_handler(self, callback: ErrorHandler) -> ErrorHandler:
        """Register the function that shapes every refusal flask-logout answers in Flask.

        It is called with the error (a :class:`~flask_logout.errors.LogoutError`
        subclass: its ``status`` and ``message``) and the response the library
        would send (the bearer middleware's, a decorator's, or a dialect's, in
        that dialect's envelope), and returns a replacement (anything a view
        may return) or ``None`` to keep the response. Errors that a dialect
        raises on its own (a malformed body, say) come as a plain
        ``LogoutError`` with the status and message of the dialect's answer.

        ``@app.errorhandler(TokenRevoked)`` (any subclass) and
        ``@app.errorhandler(401)`` also work for the middleware and the
        decorators; a dialect's endpoints answer in their own envelope and
        reach only this hook.
        """
        self.handle_error = callback
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
            store = open_store(config.database_uri, timeout=config.store_timeout, create_tables=config.create_tables)
        if db is not None and config.create_tables:
            store.create_all()
        service = LogoutService(config, store)
        service.user_exists = self._user_exists  # every refresh asks the user_loader
        service.credential_version = self.load_credential_version
        app.extensions[EXTENSION_KEY] = _State(self, service)
        self._apps.add(app)
        prefixes = config.url_prefixes  # LOGOUT_URL_PREFIXES: e.g. {"session": "/api/v4"}
        # Refusals of the middleware and the decorators: through Flask's
        # handlers, after an app's own handler for the class or the status.
        app.register_error_handler(LogoutError, answer_logout_error)
        if "client" in config.dialects:
            from .dialects.client_api import bp as client_bp

            app.register_blueprint(client_bp, url_prefix=prefixes.get("client"))
        if "descope" in config.dialects:
            from .dialects.descope import bp as descope_bp

            app.register_blueprint(descope_bp, url_prefix=prefixes.get("descope"))
        if "session" in config.dialects:
            from .dialects.session import bp as session_bp

            app.register_blueprint(session_bp, url_prefix=prefixes.get("session"))
        if "oauth" in config.dialects:
            from .dialects.oauth import bp as oauth_bp

            app.register_blueprint(oauth_bp, url_prefix=prefixes.get("oauth"))
        from .cli import logout_cli

        if "logout" not in app.cli.commands:
            app.cli.add_command(logout_cli)
        if config.health_path:
            from .health import flask_view

            app.add_url_rule(config.health_path, "flask_logout_health", flask_view(service))
        if config.protected_paths:
            middleware = BearerMiddleware(app.wsgi_app, service, on_refusal=_refusal_through(app))
            # Its bound __call__, not the instance: Flask calls a bound method
            # as one Python function calls another, while calling an instance
            # goes through type.__call__'s slot, an argument tuple and a second
            # run of the interpreter loop (~700 instructions a request, callgrind).
            # The middleware is app.wsgi_app.__self__.
            app.wsgi_app = middleware.__call__  # type: ignore[method-assign]
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


def finish_error(response: Response, error: LogoutError | None = None) -> Response:
    """Give the application's :meth:`LogoutManager.error_handler` its say on a refusal.

    ``error`` is the core error behind ``response``; without one (a
    dialect's own failure) a plain :class:`LogoutError` carries the
    response's status and ``message``.
    """
    state = current_app.extensions.get(EXTENSION_KEY)
    handler = state.manager.handle_error if state is not None else None
    if handler is None:
        return response
    if error is None:
        error = LogoutError(_message_of(response))
        error.status = response.status_code
    result = handler(error, response)
    return response if result is None else current_app.make_response(result)


def _message_of(response: Response) -> str:
    body = response.get_json(silent=True)
    if isinstance(body, dict):
        for key in ("errorMessage", "msg", "error_description", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return LogoutError.message


def answer_logout_error(error: LogoutError) -> Any:
    """The app-wide handler of :class:`LogoutError`: an app's ``errorhandler``
    for the status code, else the client-API envelope through
    :func:`finish_error`. (An app's handler for the class itself, say
    ``TokenRevoked``, is more specific and is chosen by Flask before this.)"""
    from werkzeug.exceptions import default_exceptions

    http_class = default_exceptions.get(error.status)
    if http_class is not None:
        http_error = http_class(description=error.message)
        http_error.flask_logout_error = error  # type: ignore[attr-defined]
        answered = current_app.handle_http_exception(http_error)
        if answered is not http_error:
            return answered
    from .dialects.client_api import error_response

    return finish_error(error_response(error), error)


def _refusal_through(app: Flask) -> Callable[..., Any]:
    """The middleware's refusal, answered by Flask: its error handlers run, then
    ``after_request`` (Flask-CORS), as for any other answer. Only refused
    requests take this path; a verified one goes straight to the app."""

    def refuse(environ: Any, start_response: Any, error: LogoutError) -> Any:
        ctx = app.request_context(environ)
        failure: BaseException | None = None
        try:
            try:
                ctx.push()
                response = app.finalize_request(app.handle_user_exception(error))
            except Exception as exc:
                failure = exc
                response = app.handle_exception(exc)
            return response(environ, start_response)
        finally:
            ctx.pop(failure)

    return refuse


def _has_app_context() -> bool:
    from flask import has_app_context

    return has_app_context()


def _store_on(app: Flask, db: SQLAlchemy) -> SQLStore:
    if "sqlalchemy" not in app.extensions or app.extensions["sqlalchemy"] is not db:
        raise RuntimeError("flask_logout: call db.init_app(app) before LogoutManager(app, db=db)")
    with app.app_context():
        engine = db.engine
    return SQLStore(engine, db.metadata)
