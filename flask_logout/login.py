"""Flask-Login sessions that really end.

Flask-Login keeps who is signed in inside the Flask session, which by default
is a signed cookie: ``logout_user()`` empties the browser's copy, but a copy
of the cookie taken before (or the remember-me cookie) still signs in
afterwards, and nothing can end the sessions of a user on other devices.
:class:`LoginSessions` binds every Flask-Login session to a session of the
store::

    from flask_login import LoginManager
    from flask_logout import LogoutManager
    from flask_logout.login import LoginSessions

    login_manager = LoginManager(app)
    LogoutManager(app)
    LoginSessions(app)

* each ``login_user()`` opens a session (a token family) in the store and
  keeps a reference to it in the Flask session, and, with ``remember=True``,
  in a companion cookie bound to the remember-me cookie;
* each request that asks who is signed in (``current_user``,
  ``@login_required``) checks that reference before Flask-Login loads the user: a
  few dictionary look-ups against this process's replica of the
  revocations (plus one indexed query per session and process every
  ``LOGOUT_ACCESS_TOKEN_TTL``); a dead one signs the request out (the
  session keys are dropped and the remember-me cookie is cleared);
* ``logout_user()`` revokes the session in the store, so a copied cookie is
  refused after it, in every process;
* :func:`logout_everywhere` (or ``service.revoke_user(user_id)``, e.g. on a
  password change) ends every session of a user in one write.

A session lasts at most ``LOGOUT_REFRESH_TOKEN_TTL`` (30 days by default),
remember-me included: after it the user signs in again.
Works with Flask's cookie session and with server-side sessions (Flask-Session).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, after_this_request, current_app, g, request, session
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import SQLAlchemyError

from .errors import StoreUnavailable, TokenRevoked
from .extension import get_service
from .helpers import _cv_request
from .replica import Replica
from .service import LogoutService, _Bounded
from .store import TokenState
from .tokens import now, principal_key

#: The Flask session key that holds the store session's reference.
SESSION_KEY = "_logout_session"
_STATE = "flask_logout_login"
_REASON = "_flask_logout_login_signed_out"
#: Flask-Login's session keys, dropped when the store session is dead.
_FLASK_LOGIN_KEYS = ("_user_id", "_fresh", "_id", "_remember_seconds")
#: Seconds a check against the store is trusted for, short of the replica's
#: memory of revocations (``event_ttl``): a revocation after the check stays
#: in the replica at least that long.
_MARGIN = 60
#: The longest reference accepted (the store's token id column).
_MAX_REFERENCE = 64


#: What the check keeps of a store session found alive, by its reference:
#: (monotonic time the store's answer is trusted until, subject, family,
#: generation, expiry).
_Known = tuple[float, str, str, int, int]


def session_reference(value: Any) -> str | None:
    """The store session reference kept in a Flask session: the id (``jti``)
    of the session's refresh token, or ``None`` if ``value`` is not one.

    Only the id: the family, generation and expiry are read from the store
    (once per session and process, as the check does anyway), so the
    Flask session grows by one short string (a cookie session pays for
    every character on every request).
    """
    if isinstance(value, str) and 0 < len(value) <= _MAX_REFERENCE:
        return value
    return None


class LoginSessions:
    """Bind Flask-Login's sessions to the store. Create it after ``LoginManager`` and ``LogoutManager``."""

    def __init__(self, app: Flask | None = None) -> None:
        #: Session reference -> what the store said of it (see ``_Known``).
        self._checked: _Bounded[_Known] = _Bounded(1)
        #: The hot path: Flask session reference -> (user id, expiry + leeway,
        #: replica epoch when found alive, store check trusted until, replica).
        self._alive: _Bounded[tuple[str, float, int, float, Replica]] = _Bounded(1)
        self._alive_get = self._alive._items.get  # the dict is never replaced
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        from flask_login import user_accessed, user_logged_in, user_logged_out

        service = get_service(app)
        self._checked = _Bounded(service.config.token_cache_size or 1)
        self._alive = _Bounded(service.config.token_cache_size)
        self._alive_get = self._alive._items.get  # the dict is never replaced
        app.extensions[_STATE] = self
        user_logged_in.connect(self._logged_in, app)
        user_logged_out.connect(self._logged_out, app)
        # The check runs when Flask-Login loads the request's user, before it
        # reads the session, so exactly the requests that ask who is signed
        # in pay for it. Where it can, it runs in front of the LoginManager's
        # loading method (one call per request); otherwise on Flask-Login's
        # public user_accessed signal, sent at the same point, which blinker
        # dispatches through inspect.iscoroutinefunction (about 2.5 us, three
        # times the check). A hook on every request costs more too: a URL
        # value preprocessor is called with request.endpoint and
        # request.view_args read through proxies, a before_request function
        # through ensure_sync. See docs/decisions.md.
        manager = getattr(app, "login_manager", None)
        if manager is not None and callable(getattr(manager, "_load_user", None)):
            _check_before_loading(manager)
        else:
            user_accessed.connect(self._check_request, app)

    # -- signals ------------------------------------------------------------

    def _logged_in(self, app: Flask, user: Any = None, **_: Any) -> None:
        service = get_service(app)
        previous = session_reference(session.get(SESSION_KEY))
        if previous is not None:
            family = self._family_of(service, previous)
            if family is not None:
                service.revoke_family(family)  # signing in again in this browser replaces its session
        user_id = str(session["_user_id"])
        pair = service.issue_tokens(
            user_id,
            user_agent=request.user_agent.string or None,
            ip=service.request_ip(request.environ),
        )
        refresh = pair.refresh
        reference = refresh.jti
        until = time.monotonic() + _trusted_for(service)
        self._checked.put(reference, (until, principal_key(user_id, None), refresh.fid, refresh.gen, refresh.exp))
        session[SESSION_KEY] = reference
        if session.get("_remember") == "set":
            value = _serializer(app).dumps([user_id, reference])

            @after_this_request
            def _remember(response: Response) -> Response:
                _set_companion(app, response, value)
                return response

    def _logged_out(self, app: Flask, user: Any = None, **_: Any) -> None:
        reference = session_reference(session.pop(SESSION_KEY, None))
        if reference is not None:
            service = get_service(app)
            family = self._family_of(service, reference)
            if family is not None:
                service.revoke_family(family)
        if _companion_name(app) in request.cookies:
            _forget_companion(app)

    # -- the request path ---------------------------------------------------

    def _check_request(self, _sender: Any = None) -> None:
        """Drop a Flask-Login session whose store session has ended, before Flask-Login reads it."""
        context = _cv_request.get(None) if _cv_request is not None else None
        if context is None or not self._hot(context.session):
            self._check_request_fully()

    def _hot(self, state: Any) -> bool:
        """Whether ``state`` (the Flask session) holds a session found alive
        here before, with nothing revoked since (the replica's epoch), the
        replica fresh, the session unexpired and its store check recent.

        Reads the session object directly: Flask's proxies cost more than this.
        """
        user_id = state.get("_user_id")
        reference = state.get(SESSION_KEY)
        if user_id is None or reference.__class__ is not str:
            return False
        hot = self._alive.get(reference)
        if hot is None or hot[0] != user_id:
            return False
        replica = hot[4]
        clock = time.monotonic()
        return hot[2] == replica.epoch and clock <= hot[3] and clock <= replica.fresh_until and time.time() < hot[1]

    def _check_request_fully(self) -> None:
        app = current_app
        user_id = session.get("_user_id")
        if user_id is not None:
            raw = session.get(SESSION_KEY)
            reference = session_reference(raw)
            epoch = get_service().replica.epoch  # before the checks: a change after it makes the entry stale
            reason = self._dead(reference, str(user_id))
            if reason is not None:
                self._sign_out_here(app, reason)
            elif reference is not None and isinstance(user_id, str):
                self._remember_alive(reference, user_id, epoch)
            return
        remember_name = app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
        if remember_name not in request.cookies or session.get("_remember") == "clear":
            return
        # Flask-Login will sign in from the remember-me cookie: only if its
        # companion names a live session of the same user.
        from flask_login.utils import decode_cookie

        remembered = decode_cookie(request.cookies[remember_name])
        companion = _read_companion(app)
        reason = "invalid"
        if companion is not None and remembered is not None and companion[0] == remembered:
            reason = self._dead(session_reference(companion[1]), remembered) or ""
            if not reason:
                session[SESSION_KEY] = companion[1]
                return
        self._sign_out_here(app, reason)

    def _dead(self, reference: str | None, user_id: str) -> str | None:
        """``None`` if ``reference`` names a live session of ``user_id``, else why not."""
        if reference is None:
            return "invalid"  # signed in before LoginSessions, or by hand: not bound to the store
        service = get_service()
        replica = service.replica
        if not replica.running:
            replica.ensure_running()
        if time.monotonic() - replica.last_ok > replica.max_staleness and not replica.catch_up():
            raise StoreUnavailable(detail="revocation replica is stale")
        known = self._checked.get(reference)
        if known is None or known[0] <= time.monotonic():
            known = self._ask_store(service, reference)
            if known is None:
                return "revoked"
        _, subject, family, generation, expires = known
        principal = principal_key(user_id, None)
        if subject != principal:
            return "revoked"  # another user's session: refused like a revoked one
        if family in replica.families or generation < replica.min_generation.get(principal, 0):
            return "revoked"
        if expires + service.config.leeway <= now():
            return "expired"
        return None

    def _remember_alive(self, reference: str, user_id: str, epoch: int) -> None:
        """Keep what the hot path needs of a session just found alive."""
        known = self._checked.get(reference)
        if known is not None:
            service = get_service()
            expires = float(known[4] + service.config.leeway)  # a float: compared with time.time() on every request
            self._alive.put(reference, (user_id, expires, epoch, known[0], service.replica))

    def _ask_store(self, service: LogoutService, reference: str) -> _Known | None:
        """The store's answer for ``reference``, kept if the session lives; ``None`` if it does not."""
        started = time.monotonic()
        state = self._lookup(service, reference)
        if state is None or state.revoked:
            return None
        known = (started + _trusted_for(service), state.subject, state.family, state.generation, state.expires_at)
        self._checked.put(reference, known)
        return known

    def _family_of(self, service: LogoutService, reference: str) -> str | None:
        """The store session (family) ``reference`` belongs to (a family never changes)."""
        known = self._checked.get(reference)
        if known is not None:
            return known[2]
        state = self._lookup(service, reference)
        return state.family if state is not None else None

    @staticmethod
    def _lookup(service: LogoutService, reference: str) -> TokenState | None:
        try:
            return service.store.lookup(reference)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(detail=exc.__class__.__name__) from None

    def _sign_out_here(self, app: Flask, reason: str) -> None:
        for key in (*_FLASK_LOGIN_KEYS, SESSION_KEY):
            session.pop(key, None)
        remember_name = app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
        if remember_name in request.cookies:
            session["_remember"] = "clear"  # Flask-Login deletes the cookie and will not read it
        if _companion_name(app) in request.cookies:
            _forget_companion(app)
        setattr(g, _REASON, reason)


def _trusted_for(service: LogoutService) -> float:
    """Seconds a store check is trusted for: a revocation after it stays in the replica at least that long."""
    return float(max(service.store.event_ttl - _MARGIN, 1))


def _check_before_loading(manager: Any) -> None:
    """Run the application's :class:`LoginSessions` check in front of ``manager._load_user``.

    Flask-Login calls that method once per request, from ``current_user``,
    before it reads the session. The wrapper is set once per manager and
    finds the check by the request's application, so one ``LoginManager``
    may serve applications with and without ``LoginSessions``. The hot
    path is tested here, inline: a call frame is a sizeable part of it.
    """
    load_user = manager._load_user
    if getattr(load_user, "_flask_logout_checked", False):
        return

    def _load_user() -> Any:
        context = _cv_request.get(None) if _cv_request is not None else None
        if context is None:
            sessions = current_app.extensions.get(_STATE)
            if sessions is not None:
                sessions._check_request_fully()
            return load_user()
        sessions = context.app.extensions.get(_STATE)
        if sessions is not None:
            # LoginSessions._hot, inline (see there).
            state = context.session
            reference = state.get(SESSION_KEY)
            hot = sessions._alive_get(reference) if reference.__class__ is str else None
            if hot is None or hot[0] != state.get("_user_id") or hot[2] != hot[4].epoch:
                sessions._check_request_fully()
            else:
                clock = time.monotonic()
                if clock > hot[3] or clock > hot[4].fresh_until or time.time() >= hot[1]:
                    sessions._check_request_fully()
        return load_user()

    _load_user._flask_logout_checked = True  # type: ignore[attr-defined]
    manager._load_user = _load_user


def signed_out_reason() -> str | None:
    """Why this request's Flask-Login session was found dead: ``"revoked"``
    (signed out elsewhere, or every session of the user ended), ``"expired"``
    or ``"invalid"``; ``None`` if it was not."""
    reason = g.get(_REASON)
    return str(reason) if reason else None


def logout_everywhere() -> None:
    """End every session of the signed-in user (every browser, every process), then sign out here.

    One write (the user's generation), whatever the number of sessions:
    ``service.revoke_user(user_id)``. Call that directly on a password
    change, then ``login_user(user)`` to give this browser a fresh session.
    """
    from flask_login import logout_user

    user_id = session.get("_user_id")
    if user_id is None:
        raise TokenRevoked(detail="no signed-in user")
    get_service().revoke_user(str(user_id))
    logout_user()


def session_family() -> str | None:
    """The store session (family id) of this request's Flask-Login session, if bound.

    Compare it with ``SessionInfo.family`` from ``service.live_sessions(user_id)``
    to mark "this browser" in a list of sessions.
    """
    reference = session_reference(session.get(SESSION_KEY))
    sessions: LoginSessions | None = current_app.extensions.get(_STATE)
    if reference is None or sessions is None:
        return None
    return sessions._family_of(get_service(), reference)


# -- the remember-me companion cookie ------------------------------------------


def _companion_name(app: Flask) -> str:
    return str(app.config.get("REMEMBER_COOKIE_NAME", "remember_token")) + "_session"


def _serializer(app: Flask) -> URLSafeSerializer:
    return URLSafeSerializer(app.secret_key or "", salt="flask-logout remember session")


def _read_companion(app: Flask) -> tuple[str, str] | None:
    raw = request.cookies.get(_companion_name(app))
    if not raw:
        return None
    try:
        value = _serializer(app).loads(raw)
    except BadSignature:
        return None
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    return None


def _set_companion(app: Flask, response: Response, value: str) -> None:
    from datetime import timedelta

    config = app.config
    duration = config.get("REMEMBER_COOKIE_DURATION", timedelta(days=365))
    seconds = int(duration.total_seconds()) if isinstance(duration, timedelta) else int(duration)
    response.set_cookie(
        _companion_name(app),
        value,
        max_age=seconds,
        domain=config.get("REMEMBER_COOKIE_DOMAIN"),
        path=config.get("REMEMBER_COOKIE_PATH", "/"),
        secure=bool(config.get("REMEMBER_COOKIE_SECURE", False)),
        httponly=True,
        samesite=config.get("REMEMBER_COOKIE_SAMESITE"),
    )


def _forget_companion(app: Flask) -> None:
    @after_this_request
    def _delete(response: Response) -> Response:
        response.delete_cookie(
            _companion_name(app),
            domain=app.config.get("REMEMBER_COOKIE_DOMAIN"),
            path=app.config.get("REMEMBER_COOKIE_PATH", "/"),
        )
        return response
