"""The Descope dialect: ``POST /v1/auth/logout``, ``/v1/auth/logoutall`` and what its SDKs need.

Clients authenticate with ``Authorization: Bearer <ProjectID>:<RefreshJWT>``;
browsers may instead send the refresh cookie, in which case the request must
come from our own origin (or a trusted one). A successful sign-out answers the
full JWT-response shape with every token and user field empty and the cookie
fields set so that the client drops its cookies, and sends ``Set-Cookie``
headers that delete them.

Besides sign-out, the endpoints the official SDKs call to be usable at all:
password sign-in (checked by the application's credentials loader, and
optionally rate limited per IP), refresh and try-refresh, ``me`` with the
user's tenants and sign-in history, and the JWKS at ``GET /v2/keys/<ProjectID>``.
Any other path under ``/v1/`` or ``/v2/`` answers a 404 in Descope's envelope.

Errors are ``{"errorCode", "errorDescription", "errorMessage"}`` with the
codes of :data:`ERRORS`: Descope's published codes where one has the meaning,
else codes of our own in the ``E9xxxxx`` range, which Descope does not use.
Only a store that is really down answers 503: the SDKs retry 503 and 520-530
answers.
"""

from __future__ import annotations

import copy
import hmac
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..cookies import clear_auth_cookies, from_foreign_page, same_origin, set_session_cookies
from ..errors import (
    CrossOriginRequest,
    InvalidToken,
    LogoutError,
    ReuseDetected,
    StoreUnavailable,
    TokenExpired,
    TokenRevoked,
)
from ..extension import finish_error, get_manager
from ..service import LogoutService, TokenPair
from ..tokens import REFRESH, VerifiedToken
from ._request import MAX_BODY_BYTES, body_too_large, is_text, json_body

logger = logging.getLogger("flask_logout")

bp = Blueprint("flask_logout_descope", __name__)

CURRENT_SESSION = "currentSession"
ALL_SESSIONS = "allSessions"
LOGOUT_TYPES = (CURRENT_SESSION, ALL_SESSIONS)


@dataclass(frozen=True)
class DescopeError:
    """One row of the documented error table."""

    code: str
    status: int
    description: str


#: The documented error table (docs/descope.md): name -> code, HTTP status, description.
#: Descope's published codes (its Go SDK's ``descope/errors.go``, its Node SDK's
#: ``lib/errors.ts``) are used with their published meaning; every other
#: condition has a code of ours in ``E9xxxxx``, a range Descope does not use.
ERRORS: dict[str, DescopeError] = {
    # Descope's own codes.
    "bad_body": DescopeError("E011001", 400, "Bad request"),
    "missing_field": DescopeError("E011002", 400, "Missing arguments"),
    "invalid_field": DescopeError("E011004", 400, "Invalid arguments"),
    "revoked_token": DescopeError("E064001", 401, "Token expired by logout"),
    "rate_limited": DescopeError("E130429", 429, "Rate limit exceeded"),
    # Ours.
    "missing_auth": DescopeError("E901001", 401, "Missing authorization"),
    "malformed_auth": DescopeError("E901002", 401, "Malformed authorization"),
    "project_mismatch": DescopeError("E901003", 401, "Project mismatch"),
    "invalid_token": DescopeError("E901004", 401, "Invalid refresh token"),
    "expired_token": DescopeError("E901005", 401, "Refresh token expired"),
    "rotated_token": DescopeError("E901006", 401, "Refresh token rotated out"),
    "cross_origin": DescopeError("E901007", 403, "Cross-origin request refused"),
    "bad_credentials": DescopeError("E902001", 401, "Invalid credentials"),
    "unknown_project": DescopeError("E904001", 404, "Unknown project"),
    "not_found": DescopeError("E904004", 404, "Not found"),
    "method_not_allowed": DescopeError("E904005", 405, "Method not allowed"),
    "signin_disabled": DescopeError("E905001", 501, "Sign-in not configured"),
    "store_down": DescopeError("E905003", 503, "Service unavailable"),
}


class DescopeFailure(Exception):
    """Raised by the dialect's views; rendered with the Descope envelope."""

    def __init__(self, kind: str, message: str, *, retry_after: int | None = None, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.error = ERRORS[kind]
        self.message = message
        self.retry_after = retry_after
        self.allow = allow


def error_response(failure: DescopeFailure) -> Response:
    response = jsonify(
        {
            "errorCode": failure.error.code,
            "errorDescription": failure.error.description,
            "errorMessage": failure.message,
        }
    )
    response.status_code = failure.error.status
    response.headers["Cache-Control"] = "no-store"
    if failure.retry_after is not None:
        response.headers["Retry-After"] = str(failure.retry_after)
    if failure.allow:
        response.headers["Allow"] = ", ".join(failure.allow)  # RFC 9110 section 15.5.6
    return response


@bp.before_request
def _limit_body() -> None:
    if body_too_large():
        raise DescopeFailure("bad_body", f"The request body must be at most {MAX_BODY_BYTES} bytes")


@bp.errorhandler(DescopeFailure)
def _failure(failure: DescopeFailure) -> Response:
    return finish_error(error_response(failure))


@bp.errorhandler(LogoutError)
def _core_error(error: LogoutError) -> Response:
    return finish_error(error_response(translate(error)), error)


def translate(error: LogoutError) -> DescopeFailure:
    """Map a core error to the Descope error table."""
    if isinstance(error, TokenRevoked):
        state = getattr(error, "state", None)
        if (
            not isinstance(error, ReuseDetected)
            and state is not None
            and state.replaced_by is not None
            and not state.family_revoked
            and state.generation == state.current_generation
        ):
            # Replaced by a refresh; its session goes on with the new token.
            return DescopeFailure("rotated_token", "This refresh token was replaced by a refresh; use the new one")
        return DescopeFailure("revoked_token", "The session was signed out; sign in again")
    if isinstance(error, TokenExpired):
        return DescopeFailure("expired_token", "The refresh token has expired; sign in again")
    if isinstance(error, InvalidToken):
        return DescopeFailure("invalid_token", "The refresh token is not valid")
    if isinstance(error, CrossOriginRequest):
        return DescopeFailure("cross_origin", "Cookie-authenticated requests must come from this site's origin")
    if isinstance(error, StoreUnavailable):
        return DescopeFailure("store_down", error.message)
    return DescopeFailure("invalid_token", error.message)


# -- response shape ----------------------------------------------------------

EMPTY_USER: dict[str, Any] = {
    "loginIds": [],
    "userId": "",
    "name": "",
    "email": "",
    "phone": "",
    "verifiedEmail": False,
    "verifiedPhone": False,
    "roleNames": [],
    "userTenants": [],
    "status": "",
    "externalIds": [],
    "picture": "",
    "test": False,
    "customAttributes": {},
    "createdTime": 0,
    "TOTP": False,
    "SAML": False,
    "OAuth": {},
    "webauthn": False,
    "password": False,
    "ssoAppIds": [],
    "givenName": "",
    "middleName": "",
    "familyName": "",
    "editable": False,
    "SCIM": False,
    "push": False,
    "permissions": [],
    "OIDC": False,
    "consentExpiration": 0,
}

EMPTY_IDP_RESPONSE: dict[str, Any] = {
    "samlResponse": "",
    "samlGeneratedUser": "",
    "samlGeneratedRoles": "",
    "oidcResponse": "",
    "oidcGeneratedUser": "",
    "oidcGeneratedRoles": "",
    "idpGroups": [],
    "idpSAMLAttributes": False,
    "idpOIDCClaims": {},
}


def jwt_response(
    service: LogoutService, pair: TokenPair | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JWT-response body: filled from ``pair`` and ``user``, or all empty for a sign-out."""
    cookies = service.config.cookies
    body: dict[str, Any] = {
        "sessionJwt": "",
        "refreshJwt": "",
        "cookieDomain": cookies.domain or "",
        "cookiePath": cookies.path,
        "cookieMaxAge": 0,
        "cookieExpiration": 0,
        "user": copy.deepcopy(EMPTY_USER),
        "firstSeen": False,
        "idpResponse": copy.deepcopy(EMPTY_IDP_RESPONSE),
        "sessionExpiration": 0,
        "externalToken": "",
        "claims": {},
        "tenantSSOID": "",
        "trustedDeviceJwt": "",
        "nextRefreshSeconds": 0,
        "cookieName": cookies.refresh_name,
        "sessionCookieName": cookies.session_name,
        "sessionCookieDomain": cookies.session_domain or "",
    }
    if pair is not None:
        body.update(
            {
                "sessionJwt": pair.access_token,
                "refreshJwt": pair.refresh_token,
                "cookieMaxAge": service.config.refresh_ttl,
                "cookieExpiration": pair.refresh.exp,
                "sessionExpiration": pair.access.exp,
                "nextRefreshSeconds": service.config.access_ttl,
                "claims": dict(pair.access.claims),
            }
        )
    if user is not None:
        body["user"].update({k: v for k, v in user.items() if k in EMPTY_USER})
    return body


def _tokens_response(service: LogoutService, pair: TokenPair, user: dict[str, Any]) -> Response:
    response = jsonify(jwt_response(service, pair, user))
    response.headers["Cache-Control"] = "no-store"
    set_session_cookies(response, service.config, pair.access_token, pair.refresh_token)
    return response


def _signed_out_response(service: LogoutService) -> Response:
    response = jsonify(jwt_response(service))
    response.headers["Cache-Control"] = "no-store"
    clear_auth_cookies(response, service.config.cookies)
    return response


# -- request parsing ---------------------------------------------------------


def _service() -> LogoutService:
    return current_app.extensions["flask_logout"].service  # type: ignore[no-any-return]


def _project_id(service: LogoutService) -> str:
    project_id = service.config.descope_project_id
    assert project_id is not None  # enforced at start-up
    return project_id


def _check_project(service: LogoutService, presented: str) -> None:
    if not hmac.compare_digest(presented.encode(), _project_id(service).encode()):
        raise DescopeFailure("project_mismatch", "The project id does not match this project")


def _bearer_parts(service: LogoutService) -> tuple[str, str] | None:
    """``(project_id, token)`` from ``Authorization: Bearer <pid>[:<token>[:<key>]]``, or ``None``.

    An SDK created with an auth management key appends it as a third part
    (``@descope/node-sdk``, ``lib/index.ts``); this server has no management
    keys, so it is ignored: the refresh JWT is the credential.
    """
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise DescopeFailure("malformed_auth", "Expected Authorization: Bearer <ProjectID>:<RefreshJWT>")
    fields = parts[1].split(":")
    if len(fields) > 3:
        raise DescopeFailure("malformed_auth", "Expected Authorization: Bearer <ProjectID>:<RefreshJWT>")
    _check_project(service, fields[0])
    return fields[0], fields[1] if len(fields) > 1 else ""


def refresh_token_from_request(service: LogoutService, *, state_changing: bool = True) -> str:
    """The refresh JWT from the bearer, or else from the refresh cookie (same origin only).

    ``state_changing=False`` (reads: ``me``, tenants, history) lets a cookie
    through without ``Origin``: a browser sends none on a same-origin GET, and
    another origin's page cannot read the answer unless CORS allows its origin.
    """
    parts = _bearer_parts(service)
    if parts is not None and parts[1]:
        return parts[1]
    cookie = request.cookies.get(service.config.cookies.refresh_name)
    if cookie:
        environ = request.environ
        foreign = (
            not same_origin(environ, service.config.trusted_origins)
            if state_changing
            else from_foreign_page(environ, service.config.trusted_origins)
        )
        if foreign:
            raise DescopeFailure("cross_origin", "Cookie-authenticated requests must come from this site's origin")
        return cookie
    raise DescopeFailure(
        "missing_auth", "Expected Authorization: Bearer <ProjectID>:<RefreshJWT> or the refresh cookie"
    )


def _body() -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}`` (the body is optional)."""
    if not request.get_data(cache=True):
        return {}
    data = json_body()
    if not isinstance(data, dict):
        raise DescopeFailure("bad_body", "The request body must be a JSON object")
    return data


def _logout_type(data: dict[str, Any]) -> str:
    value = data.get("logoutType")
    accepted = ", ".join(f'"{t}"' for t in LOGOUT_TYPES)
    if value is None:
        return CURRENT_SESSION
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DescopeFailure("invalid_field", f"logoutType must be a list of strings; accepted values: {accepted}")
    unknown = [v for v in value if v not in LOGOUT_TYPES]
    if unknown:
        raise DescopeFailure("invalid_field", f"Unknown logoutType value {unknown[0]!r}; accepted values: {accepted}")
    return ALL_SESSIONS if ALL_SESSIONS in value else CURRENT_SESSION


def _verified_refresh(service: LogoutService) -> VerifiedToken:
    token = refresh_token_from_request(service)
    # A rotated-out token still signs out; a client's whitelist is checked first.
    verified, _ = service.verify_for_signout(token, ip=service.request_ip(request.environ))
    return verified


# -- views -------------------------------------------------------------------


@bp.post("/v1/auth/logout")
def logout() -> Response:
    service = _service()
    data = _body()  # a malformed body is refused before anything is revoked
    scope = _logout_type(data)
    verified = _verified_refresh(service)
    if scope == ALL_SESSIONS:
        service.logout_all(verified)
    else:
        service.revoke_family(verified.fid)
    return _signed_out_response(service)


@bp.post("/v1/auth/logoutall")
def logout_all() -> Response:
    service = _service()
    _body()
    service.logout_all(_verified_refresh(service))
    return _signed_out_response(service)


def _refreshed(service: LogoutService, token: str) -> Response:
    ip = service.request_ip(request.environ)
    if service.config.descope_refresh_rotation:
        pair = service.refresh(token, ip=ip)
    else:
        pair = service.refresh_access(token, ip=ip)  # Descope's default: the refresh JWT stays
    user = _load_user(pair.access.sub)
    if user is None:
        service.revoke_family(pair.access.fid)
        raise DescopeFailure("invalid_token", "The user of this session no longer exists")
    return _tokens_response(service, pair, user)


@bp.post("/v1/auth/refresh")
def refresh() -> Response:
    service = _service()
    _body()
    return _refreshed(service, refresh_token_from_request(service))


@bp.post("/v1/auth/try-refresh")
def try_refresh() -> Response:
    """Refresh if there is a live session; else 200 with ``{}`` (the SDKs call it on page load)."""
    service = _service()
    _body()
    try:
        token = refresh_token_from_request(service)
        return _refreshed(service, token)
    except DescopeFailure as failure:
        if failure.error.status != 401 or failure.error.code == ERRORS["project_mismatch"].code:
            raise
    except LogoutError as error:
        if isinstance(error, StoreUnavailable) or error.status != 401:
            raise
    response = jsonify({})
    response.headers["Cache-Control"] = "no-store"
    return response


def _session_user(service: LogoutService) -> tuple[VerifiedToken, dict[str, Any]]:
    """The refresh token's session (live, not rotated out) and its user, for ``me`` and friends."""
    token = refresh_token_from_request(service, state_changing=False)
    verified, state = service.verify(token, expected_type=REFRESH)
    service.check_ip(state, service.request_ip(request.environ))
    user = _load_user(verified.sub)
    if user is None:
        raise DescopeFailure("invalid_token", "The user of this session no longer exists")
    return verified, user


@bp.get("/v1/auth/me")
def me() -> Response:
    service = _service()
    _, user = _session_user(service)
    body = copy.deepcopy(EMPTY_USER)
    body.update({k: v for k, v in user.items() if k in EMPTY_USER})
    return _no_store(jsonify(body))


@bp.route("/v1/auth/me/tenants", methods=["GET", "POST"])
def my_tenants() -> Response:
    """The SDKs post ``{"dct": bool}`` or ``{"ids": [...]}``; flask-logout has no tenants."""
    service = _service()
    if request.method == "POST":
        _body()
    _session_user(service)
    return _no_store(jsonify({"tenants": []}))


@bp.get("/v1/auth/me/history")
def my_history() -> Response:
    """The user's live sign-ins, oldest first, in the shape of Descope's history entries."""
    service = _service()
    verified, _ = _session_user(service)
    entries = [
        {"userId": verified.sub, "loginTime": int(s.created_at), "city": "", "country": "", "ip": ""}
        for s in service.live_sessions(verified.sub)
    ]
    return _no_store(jsonify(entries))


@bp.route("/v1/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@bp.route("/v2/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(rest: str) -> Response:
    """Every other path (and method) of the API: Descope's envelope, never an HTML page.

    A path that exists with other methods answers 405 with ``Allow``, as
    Flask itself would; any other path 404.
    """
    allow = _methods_served()
    if allow:
        raise DescopeFailure("method_not_allowed", f"{request.path} does not take {request.method}", allow=allow)
    raise DescopeFailure("not_found", f"No {request.method} endpoint at {request.path}")


_API_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_CATCH_ALL = f"{bp.name}.not_found"


def _methods_served() -> tuple[str, ...]:
    """The methods a real view (not the catch-all) serves on this request's path."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    served = []
    for method in _API_METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != _CATCH_ALL:
            served.append(method)
    return tuple(served)


@bp.after_request
def _honest_allow(response: Response) -> Response:
    """Flask's automatic ``OPTIONS`` answer would list the catch-all's methods
    too: ``Allow`` names only what the path really serves (RFC 9110 section 10.2.1)."""
    if request.method == "OPTIONS" and "Allow" in response.headers:
        served = _methods_served()
        if not served:
            return _failure(DescopeFailure("not_found", f"No endpoint at {request.path}"))
        implicit = ("HEAD", "OPTIONS") if "GET" in served else ("OPTIONS",)
        response.headers["Allow"] = ", ".join(served + implicit)
    return response


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/v1/auth/password/signin")
def password_signin() -> Response:
    service = _service()
    # Sign-in sets the session cookies, so a page on another origin must not
    # be able to sign the visitor's browser into the attacker's account
    # (login CSRF): no foreign Origin, and a JSON body that says so, which no
    # HTML form can send (a cross-origin fetch would need a CORS preflight).
    if from_foreign_page(request.environ, service.config.trusted_origins):
        raise DescopeFailure("cross_origin", "Sign-in requests must come from this site's origin")
    if not request.is_json:
        raise DescopeFailure("bad_body", "The request body must be JSON (Content-Type: application/json)")
    if request.headers.get("Authorization"):
        _bearer_parts(service)  # the SDKs send Bearer <ProjectID>; it must match
    data = _body()
    login_id, password = data.get("loginId"), data.get("password")
    if login_id is None or password is None or login_id == "" or password == "":
        raise DescopeFailure("missing_field", "loginId and password are required")
    if not is_text(login_id) or not is_text(password):
        raise DescopeFailure("invalid_field", "loginId and password must be strings")
    _rate_limit(service)
    check = get_manager().check_credentials
    if check is None:
        logger.error("flask_logout: password sign-in called but no credentials_loader is registered")
        raise DescopeFailure("signin_disabled", "Password sign-in is not configured on this server")
    user = check(login_id, password)
    user_id = user.get("userId") if isinstance(user, dict) else None
    if user is None or not isinstance(user_id, str) or not user_id:
        raise DescopeFailure("bad_credentials", "The login id or password is wrong")
    user = {"loginIds": [login_id], **user}
    pair = service.issue_tokens(
        user_id, user_agent=request.user_agent.string or None, ip=service.request_ip(request.environ)
    )
    return _tokens_response(service, pair, user)


@bp.get("/v2/keys/<project_id>")
def keys(project_id: str) -> Response:
    service = _service()
    if not hmac.compare_digest(project_id.encode(), _project_id(service).encode()):
        raise DescopeFailure("unknown_project", "No keys are published for this project id")
    response = jsonify(service.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _load_user(user_id: str) -> dict[str, Any] | None:
    loader = get_manager().load_user
    if loader is None:
        return {"userId": user_id}
    return loader(user_id)


# -- rate limiting (LOGOUT_SIGNIN_RATE_LIMIT) --------------------------------


class SignInLimiter:
    """Per-IP sign-in attempts, counted by the ``limits`` library (Flask-Limiter's engine).

    The storage is ``LOGOUT_RATE_LIMIT_STORAGE_URI``: ``memory://`` counts per
    process, ``redis://...`` across every process and host.
    """

    def __init__(self, limit: str, storage_uri: str) -> None:
        from limits import parse_many
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.limits = parse_many(limit)
        self.strategy = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, key: str) -> int | None:
        """Count one attempt; ``None`` if allowed, else the whole seconds to wait."""
        wait: int | None = None
        for item in self.limits:
            if not self.strategy.hit(item, _LIMIT_SCOPE, key):
                stats = self.strategy.get_window_stats(item, _LIMIT_SCOPE, key)
                seconds = max(1, math.ceil(stats.reset_time - time.time()))
                wait = seconds if wait is None else max(wait, seconds)
        return wait


_LIMIT_SCOPE = "flask-logout-signin"


def _rate_limit(service: LogoutService) -> None:
    limiter = current_app.extensions.get(LIMITER_KEY)
    if limiter is None:
        return
    try:
        wait = limiter.hit(service.request_ip(request.environ) or "unknown")
    except Exception as exc:  # the shared storage is down: do not lock everyone out
        logger.error("flask_logout: sign-in rate limit storage failed: %s", exc.__class__.__name__)
        return
    if wait is not None:
        raise DescopeFailure("rate_limited", f"Too many sign-in attempts; retry in {wait} seconds", retry_after=wait)


LIMITER_KEY = "flask_logout_signin_limiter"


@bp.record_once
def _setup(state: Any) -> None:
    config = state.app.extensions["flask_logout"].service.config
    if config.signin_rate_limit:
        state.app.extensions[LIMITER_KEY] = SignInLimiter(config.signin_rate_limit, config.rate_limit_storage_uri)
