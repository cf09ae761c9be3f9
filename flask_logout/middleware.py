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

Browser sessions (``cookies=True``, ``LOGOUT_COOKIE_AUTH``): a request
without ``Authorization`` is authenticated by the session cookie (``DS``);
a lapsed one is renewed with the refresh cookie (``DSR``) and the answer
carries both new cookies; when both are dead the answer deletes them; and a
method other than GET, HEAD, OPTIONS or TRACE must come from the site's own
origin or ``LOGOUT_TRUSTED_ORIGINS`` (403 otherwise), since the browser sends
cookies whoever made the page. A request with ``Authorization`` is judged by
its header alone.

Security notes: the client address is ``REMOTE_ADDR`` unless the service is
configured with trusted proxies (see :mod:`flask_logout.proxies`); tokens are
never logged; if the store cannot be read the request is refused (503), never
let through.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.http import parse_cookie

from .cookies import SAFE_METHODS, clear_cookie_headers, cookie_value_start, same_origin, session_cookie_headers
from .cors import refusal_headers
from .errors import (
    CrossOriginRequest,
    InvalidToken,
    LogoutError,
    MissingAuthorization,
    TokenExpired,
    TokenRevoked,
    rotated_by_another_request,
)
from .service import ENVIRON_TOKEN, HOT_TAIL, LogoutService
from .tokens import VerifiedToken

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("flask_logout")

ENVIRON_CLAIMS = "flask_logout.claims"

#: Renders an error as ``(status line, headers, body)``.
ErrorRenderer = Callable[[LogoutError], "tuple[str, list[tuple[str, str]], bytes]"]
#: Answers a refused request itself: ``(environ, start_response, error) -> body``.
RefusalHandler = Callable[["WSGIEnvironment", "StartResponse", LogoutError], Iterable[bytes]]

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
#: ``Cookie`` headers whose parse is kept (see :func:`_cookie_jar`).
_COOKIE_JARS_KEPT = 4096
_cookie_jars: dict[str, dict[str, str]] = {}


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
    :param on_refusal: answers a refused request instead of ``render_error``;
        the Flask extension passes one that answers through Flask's own
        response cycle (error handlers, ``after_request``, Flask-CORS).
    :param cookies: also accept the session cookie (browser sessions) when a
        request has no ``Authorization`` header: silent refresh with the
        refresh cookie, dead cookies cleared, and an origin check on
        state-changing methods. Defaults to ``LOGOUT_COOKIE_AUTH``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        service: LogoutService,
        protected_paths: Iterable[str] | None = None,
        *,
        exempt_methods: Iterable[str] | None = None,
        render_error: ErrorRenderer = render_client_api_error,
        on_refusal: RefusalHandler | None = None,
        cookies: bool | None = None,
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
        self.on_refusal = on_refusal
        self.cookies = service.config.cookie_auth if cookies is None else cookies
        self._authenticate = service._authenticate
        self._hot_get = service._hot_get
        self._replica = service.replica
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
        header = environ.get("HTTP_AUTHORIZATION")
        hot = self._hot_get(header[-HOT_TAIL:]) if header else None
        # LogoutService._authenticate's hot path, inline (a call frame is a
        # tenth of its cost): this header checked before (the entry is filed
        # under the header's tail), nothing revoked or changed since, replica
        # fresh, unexpired, no whitelist to check. Anything else, the service
        # decides.
        if (
            hot is not None
            and hot[5] == header
            and hot[2] == self._replica.epoch
            and hot[3] is None
            and time.monotonic() <= self._replica.fresh_until
            and time.time() < hot[1]
        ):
            verified = hot[0]
        elif self.cookies and not (header or "").strip():
            cookie_verified = hot_cookie_session(self.service, environ)
            if cookie_verified is None:
                return self._cookie_session(environ, start_response, path)
            verified = cookie_verified
        else:
            try:
                verified = self._authenticate(header or "", None, environ)
            except LogoutError as error:
                return self._refuse(environ, start_response, error, path)
        environ[ENVIRON_TOKEN] = verified
        environ[ENVIRON_CLAIMS] = verified.claims
        return self.app(environ, start_response)

    def _refuse(
        self, environ: WSGIEnvironment, start_response: StartResponse, error: LogoutError, path: str
    ) -> Iterable[bytes]:
        logger.info("flask_logout: refused %s %s: %s", environ.get("REQUEST_METHOD"), path, error.detail)
        if self.on_refusal is not None:
            return self.on_refusal(environ, start_response, error)
        status, headers, body = self.render_error(error)
        start_response(status, headers + refusal_headers(environ, self.service.config))
        return [body]

    def _cookie_session(self, environ: WSGIEnvironment, start_response: StartResponse, path: str) -> Iterable[bytes]:
        """A protected request without ``Authorization`` in cookie mode (``LOGOUT_COOKIE_AUTH``)."""
        set_cookies: list[tuple[str, str]] = []
        try:
            verified = browser_session(self.service, environ, set_cookies)
        except LogoutError as error:
            return self._refuse(environ, _adding(start_response, set_cookies), error, path)
        environ[ENVIRON_TOKEN] = verified
        environ[ENVIRON_CLAIMS] = verified.claims
        return self.app(environ, _adding(start_response, set_cookies) if set_cookies else start_response)


def browser_session(
    service: LogoutService, environ: WSGIEnvironment | Mapping[str, Any], set_cookies: list[tuple[str, str]]
) -> VerifiedToken:
    """A browser session: the session cookie, else a silent refresh with the refresh cookie.

    Shared by the middleware's cookie mode and ``@cookie_required``. Appends
    to ``set_cookies`` the ``Set-Cookie`` headers the answer must carry: both
    new cookies after a refresh, or their deletion when both are dead (so the
    browser stops sending them); nothing when another request refreshed with
    the same cookie a moment ago (its answer carries the new ones). A
    state-changing method must come from this site's origin (or a trusted
    one): a cookie is sent by the browser whoever made the page (CSRF).
    """
    settings = service.config.cookies
    jar = _cookie_jar(environ.get("HTTP_COOKIE") or "")
    session, refresh = jar.get(settings.session_name), jar.get(settings.refresh_name)
    if not session and not refresh:
        raise MissingAuthorization(detail="no authorization header and no session cookie")
    unsafe = environ.get("REQUEST_METHOD") not in SAFE_METHODS
    if unsafe and not same_origin(environ, service.config.trusted_origins):
        raise CrossOriginRequest(detail="cookie-authenticated request from another origin")
    failure: LogoutError | None = None
    if session:
        try:
            return service.authenticate_token(session, environ)
        except (InvalidToken, TokenExpired) as error:
            failure = error
    if refresh:
        try:
            pair = service.refresh(refresh, ip=service.request_ip(environ))
        except (InvalidToken, TokenExpired) as error:
            if rotated_by_another_request(error):
                raise  # another tab's answer carries the new cookies: keep them
            if not isinstance(failure, TokenRevoked):
                failure = error  # a revocation says most; else the refresh's answer
        else:
            set_cookies += session_cookie_headers(service.config, pair.access_token, pair.refresh_token)
            return pair.access
    assert failure is not None
    set_cookies += clear_cookie_headers(settings)
    raise failure


def hot_cookie_session(service: LogoutService, environ: WSGIEnvironment | Mapping[str, Any]) -> VerifiedToken | None:
    """The hot path of :func:`browser_session`: its answer when it needs no work, else ``None``.

    A method that changes nothing (a state change goes through the origin
    check), and a session cookie that is a hot token with nothing changed
    since (the test of the bearer hot path). The cookie is read from the
    parse of the ``Cookie`` header kept from before (one look-up); a header
    not seen before (it changes whenever any cookie of the site does) is
    searched for the cookie without parsing it
    (:func:`~flask_logout.cookies.cookie_value_start`: a third of a
    microsecond against ~10 for werkzeug's parse). ``None`` means: call
    :func:`browser_session`. Used by the middleware's cookie mode and by
    ``@cookie_required``.
    """
    header = environ.get("HTTP_COOKIE") or ""
    jar = _cookie_jars.get(header)
    if jar is not None:
        session = jar.get(service.config.cookies.session_name)
        hot = service._hot_token_get(session) if session else None
    else:
        start = cookie_value_start(header, service.config.cookies.session_name)
        if start < 0:
            return None
        end = header.find(";", start)
        hot = service._hot_token_get(header[start:end] if end >= 0 else header[start:])
    replica = service.replica
    if (
        hot is not None
        and hot[2] == replica.epoch
        and hot[3] is None
        and environ.get("REQUEST_METHOD") in SAFE_METHODS
        and time.monotonic() <= replica.fresh_until
        and time.time() < hot[1]
    ):
        return hot[0]
    return None


def _cookie_jar(header: str) -> dict[str, str]:
    """The cookies of a ``Cookie`` header, parsed by werkzeug once per distinct header.

    A browser sends the same header request after request, and parsing it
    costs more than the whole hot path of the token inside (~10 us for a
    session and a refresh cookie). The parse is a pure function of the
    header, so it is kept (bounded: many distinct headers start it over);
    the dict handed out is never changed.
    """
    jar = _cookie_jars.get(header)
    if jar is None:
        jar = {name: value for name, value in parse_cookie(header).items()}
        if len(_cookie_jars) >= _COOKIE_JARS_KEPT:
            _cookie_jars.clear()
        _cookie_jars[header] = jar
    return jar


def _adding(start_response: StartResponse, extra: list[tuple[str, str]]) -> StartResponse:
    """``start_response`` that also sends ``extra`` headers (the session cookies)."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, headers + extra, exc_info)

    return start
