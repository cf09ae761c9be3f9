"""The client-API dialect: ``POST /auth/login``, ``/auth/refresh``, ``/auth/logout``.

API clients (machine credentials with an optional CIDR whitelist) sign in
with ``client_id`` and ``client_secret``. Logout revokes *every* access and
refresh token of the client, not just the one presented, by bumping the
client's generation: one row, whatever the number of tokens.

Answers are ``{"success": true, "data": ...}``; errors are
``{"error": {"name", "code", "message"}}`` with the exact messages of the API
document.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import BadRequest, LogoutError, PayloadTooLarge
from ..extension import finish_error
from ..middleware import render_client_api_error
from ..service import MAX_CLIENT_ID_LENGTH, MAX_CLIENT_SECRET_LENGTH, LogoutService, TokenPair
from ._request import MAX_BODY_BYTES, body_too_large, is_text, json_body

bp = Blueprint("flask_logout_client_api", __name__)

LOGOUT_MESSAGE = "Successfully logged out"


def _service() -> LogoutService:
    return current_app.extensions["flask_logout"].service  # type: ignore[no-any-return]


def error_response(error: LogoutError) -> Response:
    """The middleware's answer, as a Flask response: one envelope, one set of headers."""
    status, headers, body = render_client_api_error(error)
    return Response(body, status=int(status.split(" ", 1)[0]), headers=headers)


@bp.before_request
def _limit_body() -> None:
    if body_too_large():
        raise PayloadTooLarge(f"Request body must be at most {MAX_BODY_BYTES} bytes")


@bp.errorhandler(LogoutError)
def _logout_error(error: LogoutError) -> Response:
    return finish_error(error_response(error), error)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    # e.g. 413 or 415 raised by werkzeug inside a view: keep the envelope.
    status = error.code or 500
    wrapped = LogoutError(error.description or error.name)
    wrapped.status = status
    return finish_error(error_response(wrapped), wrapped)


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type says."""
    data = json_body()
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def string_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise BadRequest(f"Missing required field: {name}")
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Field {name} must be a non-empty string")
    if not is_text(value):
        raise BadRequest(f"Field {name} must be valid text (UTF-8, no NUL)")
    return value


def _tokens(pair: TokenPair) -> Response:
    response = jsonify(
        {
            "success": True,
            "data": {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "token_type": "Bearer",
                "expires_in": pair.expires_in,
            },
        }
    )
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 section 5.1
    return response


@bp.post("/auth/login")
def login() -> Response:
    data = json_object()
    client_id = string_field(data, "client_id")
    secret = string_field(data, "client_secret")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise BadRequest(f"Field client_id must be at most {MAX_CLIENT_ID_LENGTH} characters")
    if len(secret) > MAX_CLIENT_SECRET_LENGTH:
        raise BadRequest(f"Field client_secret must be at most {MAX_CLIENT_SECRET_LENGTH} characters")
    service = _service()
    return _tokens(service.login_client(client_id, secret, ip=service.request_ip(request.environ)))


@bp.post("/auth/refresh")
def refresh() -> Response:
    refresh_token = string_field(json_object(), "refresh_token")
    service = _service()
    return _tokens(service.refresh(refresh_token, ip=service.request_ip(request.environ)))


@bp.post("/auth/logout")
def logout() -> Response:
    service = _service()
    token = service.authenticate(request.environ)
    service.logout_all(token)
    return jsonify({"success": True, "data": {"message": LOGOUT_MESSAGE}})
