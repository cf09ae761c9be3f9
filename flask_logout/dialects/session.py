"""The session-token dialect: ``POST /session/token``, ``/session/token/refresh``, ``DELETE /session/token``.

Each sign-in starts a token family (its root token). Refresh rotates the
refresh token within the family; a rotated token presented again after the
grace window revokes the family (reuse detection). Sign-out needs no
``Authorization`` header: the refresh token in the body is the credential,
and it revokes every refresh and access token of its family in one write,
leaving the user's other sessions alone.

For a session that came through an OpenID provider, sign-out answers the
provider's end-session URL in ``data`` (OIDC RP-Initiated Logout 1.0); the
provider's back-channel logout tokens arrive at
``POST /oidc/backchannel-logout/<provider>`` (Back-Channel Logout 1.0).

Answers are ``{"data", "code", "msg"}`` with ``code`` 0; failures carry a
non-zero ``code`` from :data:`ERRORS`, a human ``msg``, ``error`` (the
internal detail, only when the app runs in debug mode) and a
``correlation_id`` that is also sent as ``X-Correlation-ID`` and written to
the log line of the failure.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import (
    InvalidToken,
    IPNotAuthorized,
    LogoutError,
    ReuseDetected,
    StoreUnavailable,
    TokenExpired,
    TokenRevoked,
)
from ..extension import finish_error, get_manager
from ..oidc import LogoutTokenError, ProviderUnavailable
from ..service import LogoutService, TokenPair
from ..store import SsoLogin
from ._request import MAX_BODY_BYTES, body_too_large, is_text, json_body

logger = logging.getLogger("flask_logout")

bp = Blueprint("flask_logout_session", __name__)

CORRELATION_HEADER = "X-Correlation-ID"


@dataclass(frozen=True)
class SessionError:
    """One row of the documented error table."""

    code: int
    status: int
    msg: str


#: The documented error table: name -> code, HTTP status, message.
ERRORS: dict[str, SessionError] = {
    "bad_body": SessionError(40001, 400, "Request body must be a JSON object"),
    "missing_refresh_token": SessionError(40002, 400, "refresh_token is required"),
    "bad_refresh_token_type": SessionError(40003, 400, "refresh_token must be a string"),
    "bad_credentials_fields": SessionError(40004, 400, "email and password must be non-empty strings"),
    "bad_credentials": SessionError(40020, 401, "Wrong email or password"),
    "ip_not_authorized": SessionError(40301, 403, "IP address not authorized"),
    "body_too_large": SessionError(41301, 413, f"Request body must be at most {MAX_BODY_BYTES} bytes"),
    "invalid_refresh_token": SessionError(40030, 401, "Invalid refresh token"),
    "expired_refresh_token": SessionError(40031, 401, "Refresh token expired, please sign in again"),
    "revoked_refresh_token": SessionError(40032, 401, "Refresh token revoked, please sign in again"),
    "reused_refresh_token": SessionError(40033, 401, "Refresh token reuse detected, the session has been signed out"),
    "signin_disabled": SessionError(50101, 501, "Sign-in is not configured on this server"),
    "store_down": SessionError(50301, 503, "Token store unavailable, try again later"),
}


class SessionFailure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.error = ERRORS[kind]
        self.detail = detail


def failure_response(failure: SessionFailure) -> Response:
    correlation_id = str(uuid.uuid4())
    logger.warning(
        "flask_logout: %s %s failed: code=%s correlation_id=%s detail=%s",
        request.method,
        request.path,
        failure.error.code,
        correlation_id,
        failure.detail or "-",
    )
    response = jsonify(
        {
            "data": None,
            "code": failure.error.code,
            "msg": failure.error.msg,
            "error": (failure.detail or failure.error.msg) if current_app.debug else None,
            "correlation_id": correlation_id,
        }
    )
    response.status_code = failure.error.status
    response.headers[CORRELATION_HEADER] = correlation_id
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _limit_body() -> Response | None:
    if not body_too_large():
        return None
    if request.path.startswith("/oidc/backchannel-logout/"):  # answers in its own (OAuth) envelope
        return _backchannel_error(413, "invalid_request", f"the request body must be at most {MAX_BODY_BYTES} bytes")
    raise SessionFailure("body_too_large")


@bp.errorhandler(SessionFailure)
def _failure(failure: SessionFailure) -> Response:
    return finish_error(failure_response(failure))


@bp.errorhandler(LogoutError)
def _core_error(error: LogoutError) -> Response:
    return finish_error(failure_response(translate(error)), error)


def translate(error: LogoutError) -> SessionFailure:
    """Map a core error to the session error table."""
    if isinstance(error, ReuseDetected):
        return SessionFailure("reused_refresh_token", error.detail)
    if isinstance(error, TokenRevoked):
        return SessionFailure("revoked_refresh_token", error.detail)
    if isinstance(error, TokenExpired):
        return SessionFailure("expired_refresh_token", error.detail)
    if isinstance(error, InvalidToken):
        return SessionFailure("invalid_refresh_token", error.detail)
    if isinstance(error, StoreUnavailable):
        return SessionFailure("store_down", error.detail)
    if isinstance(error, IPNotAuthorized):
        return SessionFailure("ip_not_authorized", error.detail)
    return SessionFailure("invalid_refresh_token", error.detail or error.message)


def success(data: Any) -> Response:
    response = jsonify({"data": data, "code": 0, "msg": ""})
    response.headers["Cache-Control"] = "no-store"
    return response


def _service() -> LogoutService:
    return current_app.extensions["flask_logout"].service  # type: ignore[no-any-return]


def _json_object() -> dict[str, Any]:
    data = json_body()
    if not isinstance(data, dict):
        raise SessionFailure("bad_body")
    return data


def _refresh_token() -> str:
    data = _json_object()
    if "refresh_token" not in data or data["refresh_token"] is None:
        raise SessionFailure("missing_refresh_token")
    token = data["refresh_token"]
    if not isinstance(token, str):
        raise SessionFailure("bad_refresh_token_type")
    return token


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def token_object(pair: TokenPair) -> dict[str, str]:
    """The ``token`` object of sign-in and refresh answers."""
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "access_expires": _rfc3339(pair.access.exp),
        "refresh_expires": _rfc3339(pair.refresh.exp),
    }


@bp.post("/session/token")
def sign_in() -> Response:
    data = _json_object()
    email, password = data.get("email"), data.get("password")
    if not is_text(email) or not is_text(password):
        raise SessionFailure("bad_credentials_fields")
    check = get_manager().check_credentials
    if check is None:
        raise SessionFailure("signin_disabled", "no credentials_loader is registered")
    user = check(email, password)
    user_id = user.get("userId") if isinstance(user, dict) else None
    if user is None or not isinstance(user_id, str) or not user_id:
        raise SessionFailure("bad_credentials")
    public = dict(user)
    sso = public.pop("sso", None)
    if sso is not None and not isinstance(sso, SsoLogin):
        raise TypeError("the credentials loader's 'sso' entry must be a flask_logout.SsoLogin")
    pair = _service().issue_tokens(user_id, sso=sso)
    return success({"user": public, "token": token_object(pair)})


@bp.post("/session/token/refresh")
def refresh() -> Response:
    service = _service()
    pair = service.refresh(_refresh_token(), ip=service.request_ip(request.environ))
    return success(token_object(pair))


@bp.delete("/session/token")
def sign_out() -> Response:
    service = _service()
    _, sso = service.end_session(_refresh_token(), ip=service.request_ip(request.environ))
    return success(_end_session_url(service, sso) if sso is not None else None)


def _end_session_url(service: LogoutService, sso: SsoLogin) -> str | None:
    """The provider's sign-out URL. The session here is already revoked; if
    the provider cannot be reached the answer is still success, with no URL."""
    provider = service.providers.get(sso.provider)
    if provider is None:
        logger.error("flask_logout: session from unknown OpenID provider %r signed out locally only", sso.provider)
        return None
    try:
        return provider.end_session_url(
            sso.id_token, service.config.post_logout_redirect_uri, secrets.token_urlsafe(16), base_url=request.host_url
        )
    except ProviderUnavailable as exc:
        logger.error("flask_logout: provider %s unavailable, signed out locally only: %s", sso.provider, exc)
        return None


@bp.post("/oidc/backchannel-logout/<provider_name>")
def backchannel_logout(provider_name: str) -> Response:
    """OIDC Back-Channel Logout 1.0 receiver: 200 once the sessions are revoked, else 400."""
    service = _service()
    provider = service.providers.get(provider_name)
    if provider is None:
        return _backchannel_error(400, "invalid_request", "unknown provider")
    token = request.form.get("logout_token")
    if not token:
        return _backchannel_error(400, "invalid_request", "logout_token is required")
    try:
        claims = provider.validate_logout_token(token)
    except LogoutTokenError as exc:
        logger.warning("flask_logout: back-channel logout from %s refused: %s", provider_name, exc)
        return _backchannel_error(400, "invalid_request", str(exc))
    except ProviderUnavailable as exc:
        logger.error("flask_logout: back-channel logout from %s: provider keys unavailable: %s", provider_name, exc)
        return _backchannel_error(503, "temporarily_unavailable", "provider keys unavailable")
    expires = int(claims["iat"]) + provider.settings.logout_token_max_age + 120
    try:
        ended = service.revoke_provider_sessions(
            provider_name,
            sid=claims.get("sid"),
            sub=claims.get("sub"),
            once=(f"{provider.settings.issuer}|{claims['jti']}", expires),
        )
    except StoreUnavailable:
        return _backchannel_error(503, "temporarily_unavailable", "token store unavailable")
    if ended is None:
        return _backchannel_error(400, "invalid_request", "logout token replayed")
    logger.info("flask_logout: back-channel logout from %s ended %d session(s)", provider_name, ended)
    response = Response(status=200)
    response.headers["Cache-Control"] = "no-store"
    return response


def _backchannel_error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
