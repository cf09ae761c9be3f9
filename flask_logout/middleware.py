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

Which requests are protected: a protected path is matched against every
spelling a WSGI server or router may turn into it, and the request is
protected if *any* of them falls under a protected prefix (fail closed).
The spellings considered are:

- ``PATH_INFO`` as given (werkzeug's router matches ``/api/../x`` literally);
- ``PATH_INFO`` normalised: a missing leading ``/`` added (werkzeug's
  dev server passes ``GET api/me`` on as ``api/me``, and its router routes
  it to ``/api/me``), runs of ``/`` collapsed (``//api/me``, which gunicorn
  passes on as is and werkzeug's router strips), dot segments resolved
  (``/x/../api/me``, ``/./api``);
- the same after percent-decoding, repeatedly (``%2f``, ``%2e``, ``%252f``);
- the raw request target, ``RAW_URI`` (gunicorn, werkzeug) or
  ``REQUEST_URI`` (werkzeug, uWSGI, mod_wsgi), without its query,
  without ``scheme://host`` in the absolute form, percent-decoded and
  normalised, and with ``SCRIPT_NAME`` removed when it starts with it.

Protected paths are relative to the application's mount point, as
``PATH_INFO`` is. Matching is case-sensitive, as werkzeug's router is.
A clean path (starting with ``/``, without ``//``, ``%`` or ``/.``, and a
raw target that is the same path or equally clean) has no other spelling:
one prefix test, as before; only the others take the slow path. The answer
for a clean path whose raw target is itself (plus a query) is remembered
(up to 1024 paths), so the next such request costs one dictionary look-up.

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
from urllib.parse import unquote

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


#: Percent-decoding rounds tried on a path (``%25252f`` is three).
_DECODE_ROUNDS = 4
#: Most clean paths whose answer a middleware remembers.
_CLEAN_PATHS_KEPT = 1024


def _is_clean(path: str) -> bool:
    """A path that no server or router spells differently: the fast path."""
    return path[:1] == "/" and "//" not in path and "%" not in path and "/." not in path


def _raw_is_clean(raw: str) -> bool:
    query = raw.find("?")
    return _is_clean(raw if query < 0 else raw[:query])


def normalise_path(path: str) -> str:
    """``path`` with a leading ``/``, runs of ``/`` collapsed and dot segments resolved.

    ``"api//me"`` -> ``"/api/me"``; ``"/x/../api/./me/"`` -> ``"/api/me/"``;
    ``".."`` never climbs above the root (RFC 3986 section 5.2.4).
    """
    segments: list[str] = []
    parts = path.split("/")
    for part in parts:
        if part == "..":
            if segments:
                segments.pop()
        elif part and part != ".":
            segments.append(part)
    trailing = parts[-1] in ("", ".", "..") and bool(segments)
    return "/" + "/".join(segments) + ("/" if trailing else "")


def _decodings(path: str) -> list[str]:
    """``path`` and its percent-decodings (latin-1, like ``PATH_INFO``), until nothing changes."""
    found = [path]
    for _ in range(_DECODE_ROUNDS):
        if "%" not in path:
            break
        decoded = unquote(path, encoding="latin-1")
        if decoded == path:
            break
        found.append(decoded)
        path = decoded
    return found


def _raw_target_path(raw: str) -> str:
    """The path of a raw request target: no query, no fragment, no ``scheme://host``."""
    for mark in ("?", "#"):
        index = raw.find(mark)
        if index >= 0:
            raw = raw[:index]
    if not raw.startswith("/") and "://" in raw:
        rest = raw.split("://", 1)[1]
        slash = rest.find("/")
        raw = rest[slash:] if slash >= 0 else "/"
    return raw


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
        # PATH_INFO carries the request's bytes as latin-1 (PEP 3333): match a
        # non-ASCII path in that form, and as given.
        spelled = dict.fromkeys(list(paths) + [p.encode("utf-8").decode("latin-1") for p in paths])
        self._exact = frozenset(p.rstrip("/") or "/" for p in spelled)
        self._prefixes = tuple(dict.fromkeys(p.rstrip("/") + "/" for p in spelled))
        methods = exempt_methods if exempt_methods is not None else service.config.exempt_methods
        self.exempt_methods = frozenset(m.upper() for m in methods)
        self.render_error = render_error
        #: Clean ``PATH_INFO`` -> protected, for paths seen before (bounded).
        #: Only answers of the clean-path test are entered, and an entry is
        #: used only when the raw target is the path itself (plus a query),
        #: which is when that test applies; anything else is decided afresh.
        self._clean_paths: dict[str, bool] = {}

    def _matches(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)

    def protects(self, path: str, raw_uri: str | None = None, script_name: str = "") -> bool:
        """Whether a request for ``path`` (a ``PATH_INFO``) must carry a token.

        ``raw_uri`` is the raw request target (``RAW_URI`` or
        ``REQUEST_URI``) and ``script_name`` the ``SCRIPT_NAME``, when known.
        True if any spelling of the request falls under a protected path
        (see the module's documentation).
        """
        path = path or "/"
        if _is_clean(path) and (raw_uri is None or raw_uri == path or _raw_is_clean(raw_uri)):
            return path in self._exact or path.startswith(self._prefixes)
        return self._any_spelling_protected(path, raw_uri, script_name)

    def _decide(self, path: str, raw: str | None, environ: WSGIEnvironment) -> bool:
        """Whether this request is protected; remembers the answer for a clean path."""
        if path[0] == "/" and "//" not in path and "%" not in path and "/." not in path:
            # A clean path whose raw target is itself (plus a query), or is clean too.
            if raw is None or raw == path or (raw.startswith(path) and raw[len(path)] == "?"):
                protected = path in self._exact or path.startswith(self._prefixes)
                clean = self._clean_paths
                if len(clean) >= _CLEAN_PATHS_KEPT:
                    clean.clear()  # many distinct paths: start over rather than grow
                clean[path] = protected
                return protected
            if _raw_is_clean(raw):
                return path in self._exact or path.startswith(self._prefixes)
        return self._any_spelling_protected(path, raw, environ.get("SCRIPT_NAME") or "")

    def _any_spelling_protected(self, path: str, raw_uri: str | None, script_name: str) -> bool:
        matches = self._matches
        for spelling in _decodings(path):
            if matches(spelling) or matches(normalise_path(spelling)):
                return True
        if not raw_uri:
            return False
        mount = normalise_path(unquote(script_name, encoding="latin-1")).rstrip("/") if script_name else ""
        for spelling in _decodings(_raw_target_path(raw_uri)):
            normal = normalise_path(spelling)
            if mount and (normal == mount or normal.startswith(mount + "/")):
                normal = normal[len(mount) :] or "/"
            if matches(normal):
                return True
        return False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        # A clean path seen before, whose raw target is itself (plus a
        # query): one look-up. Anything else is decided by _decide.
        protected = self._clean_paths.get(path)
        if protected is None or not (
            raw is None or raw == path or (raw[: len(path)] == path and raw[len(path)] == "?")
        ):
            protected = self._decide(path, raw, environ)
        if not protected or environ.get("REQUEST_METHOD") in self.exempt_methods:
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
