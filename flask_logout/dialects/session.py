"""The session-token dialect: ``POST /session/token``, ``/session/token/refresh``, ``DELETE /session/token``.

Each sign-in starts a token family (its root token). Refresh rotates the
refresh token within the family; a rotated token presented again after the
grace window revokes the family (reuse detection). Sign-out needs no
``Authorization`` header: the refresh token in the body is the credential,
and it revokes every refresh and access token of its family in one write,
leaving the user's other sessions alone. Sign-out is idempotent: any
genuine refresh token of the session answers success, even once the session
has ended. ``DELETE /session/token/all`` (an extension) ends every session
of the token's user.

For a session that came through an OpenID provider, sign-out answers the
provider's end-session URL in ``data`` (OIDC RP-Initiated Logout 1.0); the
provider's back-channel logout tokens arrive at
``POST /oidc/backchannel-logout/<provider>`` (Back-Channel Logout 1.0).

Answers speak Cloudreve v4's protocol (the API document's envelope is
Cloudreve's ``serializer.Response``): ``{"data", "code", "msg"}`` with
``code`` 0; a failure is HTTP 200 (a real status with
``LOGOUT_SESSION_HTTP_STATUS``) with a non-zero ``code`` and ``msg`` from
:data:`ERRORS`, Cloudreve's own codes and messages, ``error`` (the internal
detail, only when the app runs in debug mode) and a ``correlation_id``:
the inbound ``X-Cr-Correlation-Id`` when it is a UUID, else a new one. It is
also sent as ``X-Correlation-ID`` and written to the log line of the failure.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from ..errors import (
    InvalidToken,
    IPNotAuthorized,
    LogoutError,
    StoreUnavailable,
    TokenExpired,
)
from ..extension import finish_error, get_manager
from ..oidc import LogoutTokenError, ProviderUnavailable
from ..service import LogoutService, TokenPair
from ..store import SsoLogin
from ._request import MAX_BODY_BYTES, body_too_large, is_text, json_body

logger = logging.getLogger("flask_logout")

bp = Blueprint("flask_logout_session", __name__)

CORRELATION_HEADER = "X-Correlation-ID"
#: The request header Cloudreve takes a correlation id from (``pkg/request/request.go``).
INBOUND_CORRELATION_HEADER = "X-Cr-Correlation-Id"


@dataclass(frozen=True)
class SessionError:
    """One row of the documented error table."""

    code: int
    status: int
    msg: str


#: The documented error table: name -> code, HTTP status (with
#: ``LOGOUT_SESSION_HTTP_STATUS``; otherwise every failure is HTTP 200),
#: message. Codes and messages are Cloudreve v4's (``pkg/serializer/error.go``,
#: ``service/user/login.go``, ``routers/controllers/main.go``): its front end
#: signs the user out locally on 40020 and 401 only, so 40020 means "this
#: credential is dead" and nothing else does.
ERRORS: dict[str, SessionError] = {
    # Cloudreve's ParamErr (CodeParamErr), with the messages of its JSON binding.
    "bad_json": SessionError(40001, 400, "Parameter error"),
    "bad_field_type": SessionError(40001, 400, "JSON marshall error"),
    "missing_refresh_token": SessionError(40001, 400, "RefreshToken cannot be empty"),
    "missing_email": SessionError(40001, 400, "Email cannot be empty"),
    "missing_password": SessionError(40001, 400, "Password cannot be empty"),
    "body_too_large": SessionError(40001, 413, f"Request body must be at most {MAX_BODY_BYTES} bytes"),
    # CodeInvalidPassword: not 40020, which would sign the current session out in the front end.
    "bad_credentials": SessionError(40080, 401, "Incorrect password or email address"),
    # CodeCredentialInvalid: the refresh token is dead (invalid, expired, revoked, reused, user gone).
    "refresh_failed": SessionError(40020, 401, "Failed to issue token pair"),
    "signout_failed": SessionError(40020, 401, "Failed to parse token"),
    # CodeNoPermissionErr: the token lives, but not from this address; the front end keeps it.
    "ip_not_authorized": SessionError(403, 403, "IP address not authorized"),
    # CodeFeatureNotEnabled.
    "signin_disabled": SessionError(40019, 501, "This feature is not enabled"),
    # CodeDBError: transient; the front end keeps the user and may retry.
    "store_down": SessionError(50001, 503, "Database operation failed."),
}


class SessionFailure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.error = ERRORS[kind]
        self.detail = detail


def correlation_id() -> str:
    """The request's inbound ``X-Cr-Correlation-Id`` if it is a UUID (not the nil UUID), else a new one.

    Cloudreve's ``middleware.InitializeHandling`` does the same; the value is
    answered in its canonical form only, so a header cannot put other text
    into the answer or the log.
    """
    raw = request.headers.get(INBOUND_CORRELATION_HEADER, "")
    if 0 < len(raw) <= 64:
        try:
            inbound = uuid.UUID(raw)
        except ValueError:
            inbound = None
        if inbound is not None and inbound.int:
            return str(inbound)
    return str(uuid.uuid4())


def failure_response(failure: SessionFailure) -> Response:
    cid = correlation_id()
    logger.warning(
        "flask_logout: %s %s failed: code=%s correlation_id=%s detail=%s",
        request.method,
        request.path,
        failure.error.code,
        cid,
        failure.detail or "-",
    )
    body: dict[str, Any] = {"data": None, "code": failure.error.code, "msg": failure.error.msg}
    if current_app.debug:  # Cloudreve: only outside gin's release mode
        body["error"] = failure.detail or failure.error.msg
    body["correlation_id"] = cid
    response = jsonify(body)
    response.status_code = failure.error.status if _service().config.session_http_status else 200
    response.headers[CORRELATION_HEADER] = cid
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _limit_body() -> Response | None:
    if not body_too_large():
        return None
    if request.endpoint == "flask_logout_session.backchannel_logout":  # answers in its own (OAuth) envelope
        return _backchannel_error(413, "invalid_request", f"the request body must be at most {MAX_BODY_BYTES} bytes")
    raise SessionFailure("body_too_large")


@bp.errorhandler(SessionFailure)
def _failure(failure: SessionFailure) -> Response:
    return finish_error(failure_response(failure))


@bp.errorhandler(LogoutError)
def _core_error(error: LogoutError) -> Response:
    return finish_error(failure_response(translate(error)), error)


def translate(error: LogoutError) -> SessionFailure:
    """Map a core error to the session error table (refresh; sign-out maps its own)."""
    if isinstance(error, StoreUnavailable):
        return SessionFailure("store_down", error.detail)
    if isinstance(error, IPNotAuthorized):
        return SessionFailure("ip_not_authorized", error.detail)
    # Invalid, expired, revoked, reused, or its user gone or re-credentialed:
    # one answer, as in Cloudreve (the detail is logged and shown in debug).
    return SessionFailure("refresh_failed", error.detail or error.message)


def success(data: Any) -> Response:
    response = jsonify({"data": data, "code": 0, "msg": ""})
    response.headers["Cache-Control"] = "no-store"
    return response


def _service() -> LogoutService:
    return current_app.extensions["flask_logout"].service  # type: ignore[no-any-return]


def _json_object() -> dict[str, Any]:
    data = json_body()
    if data is None:
        raise SessionFailure("bad_json")  # empty, or not JSON
    if not isinstance(data, dict):
        raise SessionFailure("bad_field_type")  # JSON, but not an object
    return data


def _strings(data: dict[str, Any], *fields: tuple[str, str]) -> list[str]:
    """The named string fields, checked in Cloudreve's order: types first, then presence."""
    for field, _ in fields:
        if data.get(field) is not None and not isinstance(data[field], str):
            raise SessionFailure("bad_field_type")
    values = []
    for field, missing in fields:
        value = data.get(field)
        if not value:
            raise SessionFailure(missing)
        if not is_text(value):
            raise SessionFailure("bad_json", f"{field} is not valid text")
        values.append(value)
    return values


def _refresh_token() -> str:
    return _strings(_json_object(), ("refresh_token", "missing_refresh_token"))[0]


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
    email, password = _strings(_json_object(), ("email", "missing_email"), ("password", "missing_password"))
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
    service = _service()
    pair = service.issue_tokens(
        user_id, sso=sso, user_agent=request.user_agent.string or None, ip=service.request_ip(request.environ)
    )
    return success({"user": public, "token": token_object(pair)})


@bp.post("/session/token/refresh")
def refresh() -> Response:
    service = _service()
    pair = service.refresh(_refresh_token(), ip=service.request_ip(request.environ))
    return success(token_object(pair))


@bp.delete("/session/token")
def sign_out() -> Response:
    """Idempotent: a genuine refresh token of the session signs out, even once the session ended."""
    service = _service()
    token = _refresh_token()
    try:
        _, sso = service.end_session(token, ip=service.request_ip(request.environ), idempotent=True)
    except InvalidToken as exc:  # not a token we issued: forged, malformed, unknown, an access token
        raise SessionFailure("signout_failed", exc.detail) from None
    return success(_end_session_url(service, sso) if sso is not None else None)


@bp.delete("/session/token/all")
def sign_out_everywhere() -> Response:
    """Extension (Cloudreve has none): end every session of the token's user.

    Needs a token of a live session (a rotated-out one will do): ending the
    user's other sessions is more than ending one's own, so a token whose
    session already ended cannot do it (40020, and the front end signs out).
    """
    service = _service()
    token = _refresh_token()
    try:
        verified, _ = service.verify_for_signout(token, ip=service.request_ip(request.environ))
    except (InvalidToken, TokenExpired) as exc:
        raise SessionFailure("signout_failed", exc.detail) from None
    service.logout_all(verified)
    try:
        sso = service.store.family_sso(verified.fid)
    except SQLAlchemyError:
        sso = None  # every session is already ended; only the provider URL is lost
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
