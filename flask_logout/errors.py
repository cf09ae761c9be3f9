"""One exception per way a request can fail.

The core raises these; each dialect maps them to its own envelope. The
``message`` of the authentication errors is the exact wording of the API
documents. ``detail`` says which check failed, for logs only: it never reaches
a client (a caller learns that a token is bad, not why), and it never contains
the token itself.
"""

from __future__ import annotations

from typing import Any


class LogoutError(Exception):
    """Base class of every error flask-logout raises at request time."""

    status: int = 500
    message: str = "Internal error"

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        self.detail = detail


class AuthError(LogoutError):
    """The request is not authenticated (401) or not allowed (403)."""

    status = 401


class MissingAuthorization(AuthError):
    message = "Authorization header required"


class InvalidToken(AuthError):
    """Bad scheme, bad signature, wrong type, unknown to the store, or revoked."""

    message = "Invalid token"


class WrongTokenType(InvalidToken):
    """A refresh token where an access token belongs, or the reverse."""


class UnknownToken(InvalidToken):
    """Correctly signed, but never issued by this store."""


class TokenRevoked(InvalidToken):
    """Issued, then revoked: by logout, logout-all, rotation or family revocation."""

    #: The store's record and the decoded token, for reuse detection.
    state: Any = None
    token: Any = None


class ReuseDetected(TokenRevoked):
    """A refresh token that was already rotated came back after the grace
    window: it was copied. Its whole family has been revoked."""


class TokenExpired(AuthError):
    message = "Token expired"


class InvalidCredentials(AuthError):
    message = "Invalid client credentials"


class CrossOriginRequest(AuthError):
    """A cookie-authenticated request from another origin (CSRF defence)."""

    status = 403
    message = "Cross-origin request refused"


class IPNotAuthorized(AuthError):
    status = 403
    message = "IP address not authorized"


class BadRequest(LogoutError):
    """Malformed JSON, a missing field or a field of the wrong type."""

    status = 400
    message = "Bad request"


class PayloadTooLarge(LogoutError):
    """A request body over the library's limit (16 KB); nothing was read past it."""

    status = 413
    message = "Request body too large"


class StoreUnavailable(LogoutError):
    """The token store could not be read or written: fail closed, never succeed."""

    status = 503
    message = "Token store unavailable, try again later"


def rotated_by_another_request(error: LogoutError) -> bool:
    """A refresh token refused only because another request (a second tab)
    refreshed with it a moment ago: its session lives on, and that request's
    answer carries the new cookies, so these must not be cleared."""
    if not isinstance(error, TokenRevoked) or isinstance(error, ReuseDetected):
        return False
    state = error.state
    return state is not None and state.replaced_by is not None and not state.family_revoked
