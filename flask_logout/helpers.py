"""Functions and decorators Flask views use.

``@token_required`` guards a view with a bearer access token (API clients,
SPAs); ``@cookie_required`` guards a page or a browser-facing endpoint with
the session cookies the library sets at sign-in (``DS``, refreshed silently
with ``DSR``). Both work on ``async def`` views, both have an optional mode,
and both *raise* their refusals (subclasses of
:class:`~flask_logout.errors.LogoutError`), so Flask's error handlers,
``after_request`` functions and extensions such as Flask-CORS see them. The
extension answers them in the client-API envelope unless the application
registered its own handler (``@app.errorhandler(TokenRevoked)``,
``@app.errorhandler(401)`` or :meth:`LogoutManager.error_handler`).

Inside a guarded view, :func:`current_token` returns the verified token (never
``None``, so typed code needs no check), :func:`get_identity` its subject
and :func:`get_claims` its claims; :data:`current_user` is the user dict the
manager's ``user_loader`` returns for it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from flask import Response, after_this_request, g, request
from werkzeug.local import LocalProxy

from .errors import (
    InvalidToken,
    LogoutError,
    MissingAuthorization,
    TokenExpired,
    TokenRevoked,
)
from .extension import EXTENSION_KEY, get_manager, get_service
from .middleware import ENVIRON_CLAIMS, browser_session, hot_cookie_session
from .service import ENVIRON_TOKEN, bearer_token
from .tokens import VerifiedToken

F = TypeVar("F", bound=Callable[..., Any])

#: The message of a cookie-guarded view reached without a session cookie.
SIGN_IN_REQUIRED = "Sign-in required"

_SIGNED_OUT = "_flask_logout_signed_out"
_USER = "_flask_logout_user"

try:  # Flask's request-context variable: reading it directly skips the proxy
    from flask.globals import _cv_request as _cv_request  # shared with login.py
except ImportError:  # pragma: no cover (a Flask without it: the proxy below)
    _cv_request = None  # type: ignore[assignment]


def _environ() -> Any:
    """This request's WSGI environ. ``request.environ`` through Flask's proxy
    costs about as much as the middleware's whole hot path (~1.3 us); the
    context variable it reads is one call away."""
    context = _cv_request.get(None) if _cv_request is not None else None
    return context.request.environ if context is not None else request.environ


def current_token() -> VerifiedToken:
    """The token verified for this request by the middleware or a decorator.

    Raises ``RuntimeError`` in a request that has none (a view that is not
    guarded, or an optional one called without a token): use
    :func:`current_token_or_none` there.
    """
    token = current_token_or_none()
    if token is None:
        raise RuntimeError(
            "no verified token in this request: guard the view with @token_required or @cookie_required "
            "(or LOGOUT_PROTECTED_PATHS), or call current_token_or_none()"
        )
    return token


def current_token_or_none() -> VerifiedToken | None:
    """The verified token of this request, or ``None`` (optional authentication)."""
    context = _cv_request.get(None) if _cv_request is not None else None  # _environ(), inline
    token: VerifiedToken | None = (context.request.environ if context is not None else request.environ).get(
        ENVIRON_TOKEN
    )
    return token


def get_identity() -> str:
    """The subject of this request's token: the user id, or an API client's id."""
    return current_token().sub


def get_claims() -> dict[str, Any]:
    """Every claim of this request's token, custom claims included."""
    return current_token().claims


def signed_out_reason() -> str | None:
    """Why a cookie-guarded request found its session dead, if it did.

    ``"revoked"`` (signed out elsewhere, or every session ended),
    ``"expired"`` or ``"invalid"``; ``None`` when the session lives or there
    was none. The cookies are cleared in the same answer.
    """
    return cast("str | None", g.get(_SIGNED_OUT))


def get_current_user() -> dict[str, Any] | None:
    """The signed-in user of this request (see :data:`current_user`), as a plain value."""
    return _load_current_user()


def _load_current_user() -> dict[str, Any] | None:
    if _USER in g:
        return cast("dict[str, Any] | None", g.get(_USER))
    token = current_token_or_none()
    user: dict[str, Any] | None = None
    if token is not None and token.cid is None:
        loader = get_manager().load_user
        user = loader(token.sub) if loader is not None else {"userId": token.sub}
    setattr(g, _USER, user)
    return user


#: The signed-in user of this request, as the manager's ``user_loader``
#: returns it (``{"userId": ...}`` without one); ``None`` when the request
#: has no user token (no token, or an API client's). A proxy, for templates;
#: :func:`get_current_user` returns the value itself (to serialise it, say).
current_user: dict[str, Any] | None = cast("dict[str, Any] | None", LocalProxy(_load_current_user))


def _guard(check: Callable[[bool], None], optional: bool, view: F) -> F:
    """``view`` behind ``check(optional)`` (called directly: a closure around it costs a frame per request)."""
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            check(optional)
            return await view(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(optional)
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _check_bearer(optional: bool) -> None:
    environ = _environ()
    if environ.get(ENVIRON_TOKEN) is not None:
        return  # the middleware verified it already
    if optional and not environ.get("HTTP_AUTHORIZATION", "").strip():
        return
    verified = get_service().authenticate(environ)
    environ[ENVIRON_TOKEN] = verified
    environ[ENVIRON_CLAIMS] = verified.claims


@overload
def token_required(view: F, /) -> F: ...
@overload
def token_required(*, optional: bool = False) -> Callable[[F], F]: ...
def token_required(view: F | None = None, /, *, optional: bool = False) -> F | Callable[[F], F]:
    """Require a live access token (``Authorization: Bearer``) on one view.

    The same checks as the middleware. Use it bare (``@token_required``) or
    as ``@token_required(optional=True)``: then a request without an
    ``Authorization`` header reaches the view with no token
    (:func:`current_token_or_none` is ``None``), while a bad token is still
    refused. Works on ``def`` and ``async def`` views.
    """
    if view is None:
        return lambda inner: _guard(_check_bearer, optional, inner)
    return _guard(_check_bearer, optional, view)


def token_optional(view: F) -> F:
    """``@token_required(optional=True)``."""
    return _guard(_check_bearer, True, view)


def _check_cookie(optional: bool) -> None:
    context = _cv_request.get(None) if _cv_request is not None else None
    # The request context read directly: Flask's proxies cost more than the hot path.
    environ = context.request.environ if context is not None else request.environ
    if environ.get(ENVIRON_TOKEN) is not None:
        return
    state = context.app.extensions.get(EXTENSION_KEY) if context is not None else None
    service = state.service if state is not None else get_service()  # get_service: its error if not set up
    if not environ.get("HTTP_AUTHORIZATION"):
        hot = hot_cookie_session(service, environ)
        if hot is not None:
            environ[ENVIRON_TOKEN] = hot
            environ[ENVIRON_CLAIMS] = hot.claims
            return
    if environ.get("HTTP_AUTHORIZATION", "").strip():
        # An API client calling a cookie-guarded endpoint: its bearer decides (no CSRF risk).
        bearer = service.authenticate_token(bearer_token(environ["HTTP_AUTHORIZATION"]), environ)
        environ[ENVIRON_TOKEN] = bearer
        environ[ENVIRON_CLAIMS] = bearer.claims
        return
    cookies = service.config.cookies
    if not request.cookies.get(cookies.session_name) and not request.cookies.get(cookies.refresh_name):
        if optional:
            return
        raise MissingAuthorization(SIGN_IN_REQUIRED, detail="no session cookie")
    set_cookies: list[tuple[str, str]] = []
    try:
        verified = browser_session(service, environ, set_cookies)  # the middleware's cookie mode, shared
    except (InvalidToken, TokenExpired) as error:
        _send_on_answer(set_cookies)  # the cookies' deletion, unless another tab just renewed them
        return _refused(optional, error)
    _send_on_answer(set_cookies)  # the renewed cookies, after a silent refresh
    environ[ENVIRON_TOKEN] = verified
    environ[ENVIRON_CLAIMS] = verified.claims


def _refused(optional: bool, error: LogoutError) -> None:
    reason = (
        "revoked" if isinstance(error, TokenRevoked) else "expired" if isinstance(error, TokenExpired) else "invalid"
    )
    setattr(g, _SIGNED_OUT, reason)
    if not optional:
        raise error


def _send_on_answer(headers: list[tuple[str, str]]) -> None:
    """Add ``headers`` (``Set-Cookie``) to this request's answer."""
    if not headers:
        return

    @after_this_request
    def _send(response: Response) -> Response:
        for name, value in headers:
            response.headers.add(name, value)
        return response


@overload
def cookie_required(view: F, /) -> F: ...
@overload
def cookie_required(*, optional: bool = False) -> Callable[[F], F]: ...
def cookie_required(view: F | None = None, /, *, optional: bool = False) -> F | Callable[[F], F]:
    """Require a live browser session (the ``DS`` and ``DSR`` cookies) on one view.

    * the session cookie is verified like a bearer token (the hot path: no
      query for a token this process has seen);
    * when it has lapsed, the refresh cookie renews the session silently and
      the answer carries both new cookies;
    * when both are dead (signed out elsewhere, every session ended), the
      answer clears them, :func:`signed_out_reason` says why, and the view is
      refused (401) or, with ``optional=True``, runs signed out;
    * a request with any method but GET, HEAD, OPTIONS or TRACE must come
      from the site's own origin or ``LOGOUT_TRUSTED_ORIGINS`` (``Origin``,
      else ``Referer``), or it is refused with 403 ``Cross-origin request
      refused`` before anything else (CSRF defence);
    * a request with an ``Authorization`` header is checked as a bearer
      token instead (API clients need no cookie and no origin check).

    Works on ``def`` and ``async def`` views.
    """
    if view is None:
        return lambda inner: _guard(_check_cookie, optional, inner)
    return _guard(_check_cookie, optional, view)
