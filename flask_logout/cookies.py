"""Setting and clearing the session and refresh cookies.

A browser deletes a cookie only when the deleting ``Set-Cookie`` names the
same cookie: same name, ``Path`` and ``Domain`` (and, for ``__Host-`` and
``Secure`` cookies, the same ``Secure``). So the functions that set and the
functions that clear both take their attributes from one
:class:`~flask_logout.config.CookieSettings`, and clearing sends
``Max-Age=0`` with an expiry in the past for old clients.

Both cookies are ``HttpOnly``: page scripts never need to read a token, and
an injected script then cannot steal one. ``SameSite=Lax`` keeps them off
cross-site POSTs; sign-out additionally checks the request's origin (see
:func:`same_origin`), which also covers same-site but cross-origin pages.

Usable from Flask views (``set_auth_cookies(response, ...)``) and from plain
WSGI apps (``auth_cookie_headers(...)`` / ``clear_cookie_headers(...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from werkzeug.http import dump_cookie

from .config import CookieSettings, LogoutConfig

CLEAR_SITE_DATA = '"cookies", "storage"'


class _HasHeaders(Protocol):
    headers: Any


def _samesite(settings: CookieSettings) -> Literal["Strict", "Lax", "None"]:
    return settings.samesite  # type: ignore[return-value]


def _cookie(settings: CookieSettings, name: str, value: str, max_age: int, domain: str | None) -> str:
    return dump_cookie(
        name,
        value,
        max_age=max_age,
        expires=0 if max_age == 0 else None,
        path=settings.path,
        domain=domain,
        secure=settings.secure,
        httponly=True,
        samesite=_samesite(settings),
        partitioned=settings.partitioned,
    )


def auth_cookie_headers(
    settings: CookieSettings,
    session_token: str,
    refresh_token: str,
    *,
    session_max_age: int,
    refresh_max_age: int,
) -> list[tuple[str, str]]:
    """``Set-Cookie`` headers that store both tokens in the browser."""
    return [
        (
            "Set-Cookie",
            _cookie(settings, settings.session_name, session_token, session_max_age, settings.session_domain),
        ),
        ("Set-Cookie", _cookie(settings, settings.refresh_name, refresh_token, refresh_max_age, settings.domain)),
    ]


def clear_cookie_headers(settings: CookieSettings) -> list[tuple[str, str]]:
    """Headers that make the browser drop both cookies (and, if configured, site storage)."""
    headers = [
        ("Set-Cookie", _cookie(settings, settings.session_name, "", 0, settings.session_domain)),
        ("Set-Cookie", _cookie(settings, settings.refresh_name, "", 0, settings.domain)),
    ]
    if settings.clear_site_data:
        headers.append(("Clear-Site-Data", CLEAR_SITE_DATA))
    return headers


def set_auth_cookies(
    response: _HasHeaders,
    settings: CookieSettings,
    session_token: str,
    refresh_token: str,
    *,
    session_max_age: int,
    refresh_max_age: int,
) -> None:
    """Add the cookie-setting headers to a werkzeug/Flask response."""
    for name, value in auth_cookie_headers(
        settings, session_token, refresh_token, session_max_age=session_max_age, refresh_max_age=refresh_max_age
    ):
        response.headers.add(name, value)


def session_cookie_headers(config: LogoutConfig, session_token: str, refresh_token: str) -> list[tuple[str, str]]:
    """:func:`auth_cookie_headers` for a session of this configuration: each
    cookie lives as long as its token (``LOGOUT_ACCESS_TOKEN_TTL``,
    ``LOGOUT_REFRESH_TOKEN_TTL``)."""
    return auth_cookie_headers(
        config.cookies,
        session_token,
        refresh_token,
        session_max_age=config.access_ttl,
        refresh_max_age=config.refresh_ttl,
    )


def set_session_cookies(response: _HasHeaders, config: LogoutConfig, session_token: str, refresh_token: str) -> None:
    """:func:`set_auth_cookies` for a session of this configuration (see :func:`session_cookie_headers`)."""
    for name, value in session_cookie_headers(config, session_token, refresh_token):
        response.headers.add(name, value)


def clear_auth_cookies(response: _HasHeaders, settings: CookieSettings) -> None:
    """Add the cookie-clearing headers to a werkzeug/Flask response."""
    for name, value in clear_cookie_headers(settings):
        response.headers.add(name, value)


#: Methods that change nothing (RFC 9110 section 9.2.1): no CSRF check for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def request_origin(environ: Mapping[str, Any]) -> str:
    """The origin this request was addressed to (``scheme://host[:port]``)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    default_port = ":443" if scheme == "https" else ":80"
    if host.endswith(default_port):
        host = host[: -len(default_port)]
    return f"{scheme}://{host}".lower()


def same_origin(environ: Mapping[str, Any], trusted_origins: frozenset[str] = frozenset()) -> bool:
    """Whether a cookie-authenticated request comes from a page we trust.

    Browsers send ``Origin`` on every cross-origin request and on same-origin
    POSTs; ``Referer`` is the fallback for old ones. A request carrying
    neither is refused: a state-changing request authenticated by an ambient
    cookie must show where it came from.
    """
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        referer = environ.get("HTTP_REFERER")
        if not referer or origin == "null":
            return False
        parts = referer.split("/", 3)
        if len(parts) < 3:
            return False
        origin = f"{parts[0]}//{parts[2]}"
    origin = origin.lower()
    return origin == request_origin(environ) or origin in trusted_origins


def from_foreign_page(environ: Mapping[str, Any], trusted_origins: frozenset[str] = frozenset()) -> bool:
    """Whether a request shows that a page on another origin sent it.

    For requests that carry their credentials in the body and set the
    cookies (a sign-in): a browser sends ``Origin`` on every POST, so a form
    or script on another origin (or an opaque one, ``Origin: null``) is
    caught, while an SDK or server, which sends neither ``Origin`` nor
    ``Referer``, passes. Unlike :func:`same_origin`, showing no origin at
    all is not refused: without an ambient credential there is nothing a
    page could forge without its browser sending ``Origin``.
    """
    if environ.get("HTTP_ORIGIN") is None and environ.get("HTTP_REFERER") is None:
        return False
    return not same_origin(environ, trusted_origins)


def cookie_value_start(header: str, name: str) -> int:
    """Where the value of the first cookie ``name`` in a ``Cookie`` header starts; -1 if unsure.

    The request path's way to find the session cookie without parsing the
    header: werkzeug's ``parse_cookie`` costs ~10 us for a browser's header,
    and a memo keyed by the header costs hashing it (~5 instructions a
    character, and a header changes whenever any cookie of the site does).

    The answer must be the cookie werkzeug would read (the first of that
    name), or -1, never another one: the caller then parses the header. So
    this reads only the shape browsers send (RFC 6265: ``a=1; b=2``). With
    no ``"`` in the header, werkzeug's parse is segment by segment between
    semicolons, a segment's key starting after optional blanks; every
    occurrence of ``name`` is either clearly inside a value or another key
    (``DSR`` for ``DS``), a key at a segment's start (``;``, ``; `` or the
    header's start) followed by ``=`` (the answer), or anything else, where
    this answers -1 (blanks around the key or the ``=``, a key without a
    value, a quote anywhere). The value ends at the next ``;``; the caller
    compares it with a token it knows, so a value werkzeug would trim or skip
    (blanks inside) never matches one.
    """
    if '"' in header:
        return -1
    size = len(name)
    at = header.find(name)
    while at >= 0:
        end = at + size
        before = header[at - 1] if at else ";"
        if before == ";" or (before == " " and header[at - 2 : at - 1] == ";"):
            follows = header[end : end + 1]
            if follows == "=":
                return end + 1
            if follows in ("", ";", " ", "\t"):
                return -1  # the key without a value, or blanks around the '=': let the parser say
        elif before in (" ", "\t"):
            return -1  # perhaps a key after unusual blanks
        at = header.find(name, end)
    return -1
