"""``BearerMiddleware``: bearer-token enforcement for any WSGI application.

Use it in front of a WSGI application (Flask, or any other callable) to make
every request under some path prefixes carry a live access token::

    service = LogoutService.from_settings({"LOGOUT_SECRET_KEY": key})
    app = BearerMiddleware(app, service, protected_paths=["/api"])

For each protected request it answers, in this order: 401 ``Authorization
header required``, 401 ``Invalid token`` (bad scheme, bad signature, wrong
token type, unknown or revoked token), 401 ``Token expired``, 403 ``IP address
not authorized``, each in the client-API error envelope unless another
renderer is given. A request that passes reaches the application with the
verified token in ``environ["flask_logout.token"]`` (a
:class:`~flask_logout.tokens.VerifiedToken`) and its claims in
``environ["flask_logout.claims"]``.

Security notes: the client address is ``REMOTE_ADDR`` unless the service is
configured with trusted proxies (see :mod:`flask_logout.proxies`); tokens are
never logged; if the store cannot be read the request is refused (503), never
let through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .errors import LogoutError
from .service import ENVIRON_TOKEN, LogoutService

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("flask_logout")

ENVIRON_CLAIMS = "flask_logout.claims"

#: Renders an error as ``(status line, headers, body)``.
ErrorRenderer = Callable[[LogoutError], "tuple[str, list[tuple[str, str]], bytes]"]

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    413: "Payload Too Large",
    503: "Service Unavailable",
}
_NAMES = {
    400: ("BadRequestError", "BAD_REQUEST"),
    401: ("UnauthorizedError", "UNAUTHORIZED"),
    403: ("ForbiddenError", "FORBIDDEN"),
    413: ("PayloadTooLargeError", "PAYLOAD_TOO_LARGE"),
    503: ("ServiceUnavailableError", "SERVICE_UNAVAILABLE"),
}


def client_api_error_body(error: LogoutError) -> dict[str, Any]:
    """The client-API envelope: ``{"error": {"name", "code", "message"}}``."""
    name, code = _NAMES.get(error.status, ("InternalServerError", "INTERNAL_SERVER_ERROR"))
    return {"error": {"name": name, "code": code, "message": error.message}}


def render_client_api_error(error: LogoutError) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps(client_api_error_body(error), separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    if error.status == 401:
        # RFC 6750 section 3: tell the client which scheme is expected.
        headers.append(("WWW-Authenticate", 'Bearer realm="api"'))
    return f"{error.status} {_REASONS.get(error.status, 'Error')}", headers, body


class BearerMiddleware:
    """Require a live bearer access token on some paths of a WSGI app.

    :param app: the WSGI application to protect.
    :param service: the :class:`~flask_logout.service.LogoutService` that
        verifies tokens and knows revocations and client whitelists.
    :param protected_paths: path prefixes to guard; ``"/api"`` guards
        ``/api`` and ``/api/...`` but not ``/apix``. Defaults to the service's
        ``LOGOUT_PROTECTED_PATHS``. ``["/"]`` guards everything.
    :param exempt_methods: methods let through unauthenticated; defaults to
        ``LOGOUT_EXEMPT_METHODS`` (``OPTIONS``, for CORS pre-flight).
    :param render_error: turns an error into status, headers and body;
        defaults to the client-API envelope.
    """

    def __init__(
        self,
        app: WSGIApplication,
        service: LogoutService,
        protected_paths: Iterable[str] | None = None,
        *,
        exempt_methods: Iterable[str] | None = None,
        render_error: ErrorRenderer = render_client_api_error,
    ) -> None:
        self.app = app
        self.service = service
        paths = tuple(protected_paths) if protected_paths is not None else service.config.protected_paths
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"protected path {path!r} must start with '/'")
        self._exact = frozenset(p.rstrip("/") or "/" for p in paths)
        self._prefixes = tuple(p.rstrip("/") + "/" for p in paths)
        methods = exempt_methods if exempt_methods is not None else service.config.exempt_methods
        self.exempt_methods = frozenset(m.upper() for m in methods)
        self.render_error = render_error

    def protects(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if not self.protects(path) or environ.get("REQUEST_METHOD") in self.exempt_methods:
            return self.app(environ, start_response)
        try:
            verified = self.service.authenticate(environ)
        except LogoutError as error:
            logger.info("flask_logout: refused %s %s: %s", environ.get("REQUEST_METHOD"), path, error.detail)
            status, headers, body = self.render_error(error)
            start_response(status, headers)
            return [body]
        environ[ENVIRON_TOKEN] = verified
        environ[ENVIRON_CLAIMS] = verified.claims
        return self.app(environ, start_response)
