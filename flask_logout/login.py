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
* each request checks that reference before Flask-Login loads the user: a
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
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, after_this_request, current_app, g, request, session
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.exc import SQLAlchemyError

from .errors import StoreUnavailable, TokenRevoked
from .extension import get_service
from .helpers import _cv_request
from .replica import Replica
from .service import LogoutService, _Bounded
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


@dataclass(frozen=True, slots=True)
class SessionRef:
    """What the Flask session keeps of its store session: the refresh token's
    id, the family, the generation it was issued under, and its expiry."""

    jti: str
    fid: str
    gen: int
    exp: int

    def dump(self) -> str:
        return f"{self.jti}.{self.fid}.{self.gen}.{self.exp}"

    @classmethod
    def load(cls, value: Any) -> SessionRef | None:
        if not isinstance(value, str):
            return None
        parts = value.split(".")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]))


class LoginSessions:
    """Bind Flask-Login's sessions to the store. Create it after ``LogoutManager``."""

    def __init__(self, app: Flask | None = None) -> None:
        #: Session reference -> monotonic time its store check is trusted until.
        self._checked: _Bounded[float] = _Bounded(1)
        #: The hot path: Flask session reference -> (user id, expiry + leeway,
        #: replica epoch when found alive, store check trusted until, replica).
        self._alive: _Bounded[tuple[str, int, int, float, Replica]] = _Bounded(1)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        from flask_login import user_logged_in, user_logged_out

        service = get_service(app)
        self._checked = _Bounded(service.config.token_cache_size or 1)
        self._alive = _Bounded(service.config.token_cache_size)
        app.extensions[_STATE] = self
        user_logged_in.connect(self._logged_in, app)
        user_logged_out.connect(self._logged_out, app)
        # First, before the application's own before_request functions: as
        # the first URL value preprocessor, which Flask calls directly (a
        # before_request function goes through ensure_sync and
        # inspect.iscoroutinefunction on every request, which costs more
        # than the check's hot path).
        app.url_value_preprocessors.setdefault(None, []).insert(0, self._check_request)

    # -- signals ------------------------------------------------------------

    def _logged_in(self, app: Flask, user: Any = None, **_: Any) -> None:
        service = get_service(app)
        previous = SessionRef.load(session.get(SESSION_KEY))
        if previous is not None:
            service.revoke_family(previous.fid)  # signing in again in this browser replaces its session
        user_id = str(session["_user_id"])
        pair = service.issue_tokens(
            user_id,
            user_agent=request.user_agent.string or None,
            ip=service.request_ip(request.environ),
        )
        ref = SessionRef(pair.refresh.jti, pair.refresh.fid, pair.refresh.gen, pair.refresh.exp)
        session[SESSION_KEY] = ref.dump()
        if session.get("_remember") == "set":
            value = _serializer(app).dumps([user_id, ref.dump()])

            @after_this_request
            def _remember(response: Response) -> Response:
                _set_companion(app, response, value)
                return response

    def _logged_out(self, app: Flask, user: Any = None, **_: Any) -> None:
        ref = SessionRef.load(session.pop(SESSION_KEY, None))
        if ref is not None:
            get_service(app).revoke_family(ref.fid)
        if _companion_name(app) in request.cookies:
            _forget_companion(app)

    # -- the request path ---------------------------------------------------

    def _check_request(self, _endpoint: str | None = None, _values: dict[str, Any] | None = None) -> None:
        """Drop a Flask-Login session whose store session has ended (before any view runs)."""
        context = _cv_request.get(None) if _cv_request is not None else None
        if context is not None:
            # The hot path: this session was found alive here before, and
            # nothing was revoked since (the replica's epoch), the replica is
            # fresh, the session unexpired and its last store check recent.
            # Flask's request context read directly: its proxies cost more.
            state = context.session
            user_id = state.get("_user_id")
            if user_id is not None:
                hot = self._alive.get(state.get(SESSION_KEY))  # type: ignore[arg-type]
                if hot is not None and hot[0] == user_id:
                    replica = hot[4]
                    if (
                        hot[2] == replica.epoch
                        and time.monotonic() <= min(replica.fresh_until, hot[3])
                        and time.time() < hot[1]
                    ):
                        return
        self._check_request_fully()

    def _check_request_fully(self) -> None:
        app = current_app
        user_id = session.get("_user_id")
        if user_id is not None:
            raw = session.get(SESSION_KEY)
            ref = SessionRef.load(raw)
            epoch = get_service().replica.epoch  # before the checks: a change after it makes the entry stale
            reason = self._dead(ref, str(user_id))
            if reason is not None:
                self._sign_out_here(app, reason)
            elif ref is not None and isinstance(raw, str) and isinstance(user_id, str):
                self._remember_alive(raw, user_id, ref, epoch)
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
            ref = SessionRef.load(companion[1])
            reason = self._dead(ref, remembered) or ""
            if not reason:
                session[SESSION_KEY] = companion[1]
                return
        self._sign_out_here(app, reason)

    def _dead(self, ref: SessionRef | None, user_id: str) -> str | None:
        """``None`` if ``ref`` is a live session of ``user_id``, else why not."""
        if ref is None:
            return "invalid"  # signed in before LoginSessions, or by hand: not bound to the store
        service = get_service()
        replica = service.replica
        if not replica.running:
            replica.ensure_running()
        if time.monotonic() - replica.last_ok > replica.max_staleness and not replica.catch_up():
            raise StoreUnavailable(detail="revocation replica is stale")
        principal = principal_key(user_id, None)
        if ref.fid in replica.families or ref.gen < replica.min_generation.get(principal, 0):
            return "revoked"
        if ref.exp + service.config.leeway <= now():
            return "expired"
        until = self._checked.get(ref.jti)
        if until is not None and until > time.monotonic():
            return None
        return self._ask_store(service, ref, principal)

    def _remember_alive(self, raw: str, user_id: str, ref: SessionRef, epoch: int) -> None:
        """Keep what the hot path needs of a session just found alive."""
        service = get_service()
        until = self._checked.get(ref.jti)
        if until is not None:
            self._alive.put(raw, (user_id, ref.exp + service.config.leeway, epoch, until, service.replica))

    def _ask_store(self, service: LogoutService, ref: SessionRef, principal: str) -> str | None:
        started = time.monotonic()
        try:
            state = service.store.lookup(ref.jti)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(detail=exc.__class__.__name__) from None
        if (
            state is None
            or state.revoked
            or state.subject != principal
            or state.family != ref.fid
            or state.generation != ref.gen
        ):
            return "revoked"
        self._checked.put(ref.jti, started + max(service.store.event_ttl - _MARGIN, 1))
        return None

    def _sign_out_here(self, app: Flask, reason: str) -> None:
        for key in (*_FLASK_LOGIN_KEYS, SESSION_KEY):
            session.pop(key, None)
        remember_name = app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
        if remember_name in request.cookies:
            session["_remember"] = "clear"  # Flask-Login deletes the cookie and will not read it
        if _companion_name(app) in request.cookies:
            _forget_companion(app)
        setattr(g, _REASON, reason)


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
    ref = SessionRef.load(session.get(SESSION_KEY))
    return ref.fid if ref is not None else None


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
