"""Signals (blinker, as Flask uses), so applications can audit and react.

Every signal is sent by the :class:`~flask_logout.service.LogoutService`
that did the work (``sender``), after the change is committed. Connect to
all senders, or to one app's: ``token_issued.connect(fn, sender=get_service(app))``.
Receivers run in the request; keep them quick, and never log the tokens.

* ``token_issued(sender, pair, subject, client_id)``: a sign-in started a session.
* ``token_refreshed(sender, pair, previous_jti)``: a refresh token was rotated
  (``previous_jti`` is ``None`` for a refresh that keeps the refresh token).
* ``logged_out(sender, scope, key)``: tokens were revoked; ``scope`` is
  ``"token"`` (key: jti), ``"family"`` (key: the session id), ``"user"`` or
  ``"client"`` (key: the user or client id).
* ``reuse_detected(sender, token)``: a rotated refresh token came back after
  the grace window; its whole family has been revoked.
* ``backchannel_logout_received(sender, provider, sid, sub, ended)``: an
  OpenID provider's logout token was accepted; ``ended`` sessions were revoked.
* ``health_changed(sender, event, status)``: this process's replica changed
  state; ``event`` is ``"stale"``, ``"fresh"``, ``"push_lost"``,
  ``"push_restored"`` or ``"push_unavailable"`` (LISTEN delivers nothing),
  ``status`` a :class:`~flask_logout.replica.ReplicaStatus`. Sent from a
  background thread, not a request.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

token_issued = _signals.signal("flask-logout.token-issued")
token_refreshed = _signals.signal("flask-logout.token-refreshed")
logged_out = _signals.signal("flask-logout.logged-out")
reuse_detected = _signals.signal("flask-logout.reuse-detected")
backchannel_logout_received = _signals.signal("flask-logout.backchannel-logout-received")
health_changed = _signals.signal("flask-logout.health-changed")

__all__ = [
    "backchannel_logout_received",
    "health_changed",
    "logged_out",
    "reuse_detected",
    "token_issued",
    "token_refreshed",
]
