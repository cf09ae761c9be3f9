"""RFC 7009 token revocation: ``POST /oauth/revoke``.

The client authenticates as an API client (HTTP Basic, RFC 6749 section
2.3.1, or ``client_id``/``client_secret`` in the form) and posts the
``token`` to revoke. An access token is revoked alone; a refresh token
revokes its family (the session it belongs to). ``token_type_hint`` is
accepted and otherwise ignored (section 2.1: our tokens say what they are).
A token that is unknown, malformed, expired or already revoked still
answers 200 (section 2.2): the client's goal, a dead token, is met.

A token issued to another API client is refused with ``invalid_grant``
(RFC 6749 section 5.2). End-user tokens carry no client and may be revoked
by any authenticated client: holding one already lets its bearer sign it out.
"""

from __future__ import annotations

import base64
import urllib.parse

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import InvalidCredentials, IPNotAuthorized, StoreUnavailable
from ..extension import finish_error
from ..service import MAX_CLIENT_ID_LENGTH, MAX_CLIENT_SECRET_LENGTH, LogoutService
from ._request import MAX_BODY_BYTES, body_too_large

bp = Blueprint("flask_logout_oauth", __name__)


def oauth_error(status: int, error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    return finish_error(response)


@bp.before_request
def _limit_body() -> Response | None:
    if body_too_large():
        return oauth_error(413, "invalid_request", f"the request body must be at most {MAX_BODY_BYTES} bytes")
    return None


def _client_credentials() -> tuple[str, str] | Response:
    header = request.headers.get("Authorization", "")
    form_id, form_secret = request.form.get("client_id"), request.form.get("client_secret")
    if header:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return oauth_error(401, "invalid_client", "use HTTP Basic client authentication")
        if form_secret is not None:
            return oauth_error(400, "invalid_request", "use only one client authentication method")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input alike
            return oauth_error(401, "invalid_client", "malformed Basic credentials")
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return oauth_error(401, "invalid_client", "malformed Basic credentials")
        # RFC 6749 section 2.3.1: both parts are form-urlencoded first.
        return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
    if form_id and form_secret:
        return form_id, form_secret
    return oauth_error(401, "invalid_client", "client authentication required")


@bp.post("/oauth/revoke")
def revoke() -> Response:
    service: LogoutService = current_app.extensions["flask_logout"].service
    credentials = _client_credentials()
    if isinstance(credentials, Response):
        return credentials
    if len(credentials[0]) > MAX_CLIENT_ID_LENGTH or len(credentials[1]) > MAX_CLIENT_SECRET_LENGTH:
        return oauth_error(
            400,
            "invalid_request",
            f"client_id and client_secret are at most {MAX_CLIENT_ID_LENGTH} and {MAX_CLIENT_SECRET_LENGTH} characters",
        )
    try:
        client = service.authenticate_client(*credentials, ip=service.request_ip(request.environ))
    except (InvalidCredentials, IPNotAuthorized):
        return oauth_error(401, "invalid_client", "client authentication failed")
    except StoreUnavailable:
        return oauth_error(503, "temporarily_unavailable", "token store unavailable")
    token = request.form.get("token")
    if not token:
        return oauth_error(400, "invalid_request", "the token parameter is required")
    try:
        outcome = service.revoke_presented(token, client_id=client.client_id)
    except StoreUnavailable:
        return oauth_error(503, "temporarily_unavailable", "token store unavailable")
    if outcome == "foreign":
        return oauth_error(400, "invalid_grant", "the token was issued to another client")
    response = Response(status=200)
    response.headers["Cache-Control"] = "no-store"
    return response
