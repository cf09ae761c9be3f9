"""Helpers for testing applications that use flask-logout.

Mint tokens in every state an endpoint must handle, and check that it
refuses the bad ones::

    from flask_logout.testing import TokenFactory, assert_refused

    def test_me_refuses_bad_tokens(app):
        tokens = TokenFactory(app)
        client = app.test_client()
        assert client.get("/api/me", headers=tokens.header(tokens.valid("alice"))).status_code == 200
        for bad in (tokens.expired("alice"), tokens.revoked("alice"), tokens.unknown("alice"), tokens.forged("alice")):
            assert_refused(client.get("/api/me", headers=tokens.header(bad)))

With the pytest plugin (installed with the package) the ``logout_tokens``
fixture builds the factory from your ``app`` fixture.
"""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from .extension import get_service
from .service import LogoutService, TokenPair
from .tokens import now

#: The client-API messages of refusals (the middleware's default envelope).
REFUSAL_MESSAGES = frozenset({"Authorization header required", "Invalid token", "Token expired"})


class TokenFactory:
    """Mints real tokens (signed and recorded like any other) in a chosen state."""

    def __init__(self, app_or_service: Any) -> None:
        self.service: LogoutService = (
            app_or_service if isinstance(app_or_service, LogoutService) else get_service(app_or_service)
        )

    def pair(self, subject: str = "test-user", *, client_id: str | None = None) -> TokenPair:
        """A fresh, live access and refresh token pair."""
        return self.service.issue_tokens(subject, client_id=client_id)

    def valid(self, subject: str = "test-user", *, client_id: str | None = None) -> str:
        """A live access token."""
        return self.pair(subject, client_id=client_id).access_token

    def expired(self, subject: str = "test-user", *, client_id: str | None = None) -> str:
        """An access token issued long enough ago to have expired (not revoked)."""
        config = self.service.config
        issued = now() - config.access_ttl - config.leeway - 60
        return self.service.issue_tokens(subject, client_id=client_id, _issued_at=issued).access_token

    def revoked(self, subject: str = "test-user", *, client_id: str | None = None) -> str:
        """An access token whose session was signed out (it has not expired)."""
        pair = self.pair(subject, client_id=client_id)
        self.service.revoke_family(pair.access.fid)
        return pair.access_token

    def unknown(self, subject: str = "test-user", *, client_id: str | None = None) -> str:
        """Correctly signed and well formed, but never issued by the store."""
        issued = now()
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "typ": "access",
            "sub": subject,
            "fid": secrets.token_urlsafe(16),
            "gen": 0,
            "iat": issued,
            "exp": issued + self.service.config.access_ttl,
        }
        if client_id is not None:
            claims["cid"] = client_id
        return self.service.codec.encode(claims)

    def forged(self, subject: str = "test-user", *, client_id: str | None = None) -> str:
        """A token signed with a key this application does not have."""
        claims = dict(self.pair(subject, client_id=client_id).access.claims)
        return jwt.encode(claims, secrets.token_bytes(64), algorithm="HS256")

    @staticmethod
    def header(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def assert_refused(response: Any, status: int = 401, message: str | None = None) -> None:
    """Assert that a test-client response refuses the request.

    Checks the status and, for the default (client-API) envelope, that the
    message is one of the refusals (or exactly ``message``).
    """
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.data[:200]!r}"
    body = response.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        got = body["error"].get("message")
        if message is not None:
            assert got == message, f"expected message {message!r}, got {got!r}"
        elif status == 401:
            assert got in REFUSAL_MESSAGES, f"unexpected refusal message {got!r}"
    elif message is not None:
        raise AssertionError(f"expected message {message!r}, got body {response.data[:200]!r}")
