"""Flask-native use: errors through Flask, async and optional guards, typed
helpers, custom claims, cookie-authenticated views, start-up errors."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from flask import Flask, jsonify, request

from flask_logout import (
    ConfigError,
    LogoutError,
    LogoutManager,
    LogoutService,
    TokenRevoked,
    cookie_required,
    current_token,
    current_token_or_none,
    get_claims,
    get_current_user,
    get_identity,
    get_service,
    signed_out_reason,
    token_optional,
    token_required,
)

from .conftest import FAST_HASH, INVALID, MISSING, SECRET, base_settings, bearer, build_app, move_clock


@pytest.fixture
def flask_app(database_uri: str) -> Any:
    app = build_app(database_uri)

    @app.get("/async/me")
    @token_required
    async def async_me() -> Any:
        return jsonify(sub=get_identity())

    @app.get("/maybe")
    @token_required(optional=True)
    def maybe() -> Any:
        token = current_token_or_none()
        return jsonify(sub=token.sub if token else None)

    @app.get("/async/maybe")
    @token_optional
    async def async_maybe() -> Any:
        token = current_token_or_none()
        return jsonify(sub=token.sub if token else None)

    @app.get("/claims")
    @token_required
    def claims() -> Any:
        return jsonify(role=get_claims().get("role"), sub=current_token().sub)

    @app.get("/unguarded")
    def unguarded() -> Any:
        return jsonify(sub=current_token().sub)

    yield app
    get_service(app).close()


def test_token_required_on_an_async_view(flask_app: Flask, login: Any) -> None:
    client = flask_app.test_client()
    token = client.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
    access = token.get_json()["data"]["access_token"]
    ok = client.get("/async/me", headers=bearer(access))
    assert (ok.status_code, ok.get_json()) == (200, {"sub": "demo-client"})
    missing = client.get("/async/me")
    assert (missing.status_code, missing.get_json()) == (401, MISSING)


def test_optional_authentication(flask_app: Flask) -> None:
    client = flask_app.test_client()
    access = get_service(flask_app).issue_tokens("U-1").access_token
    for path in ("/maybe", "/async/maybe"):
        assert client.get(path).get_json() == {"sub": None}
        assert client.get(path, headers=bearer(access)).get_json() == {"sub": "U-1"}
        bad = client.get(path, headers=bearer("not-a-token"))
        assert (bad.status_code, bad.get_json()) == (401, INVALID)


def test_custom_claims_are_issued_and_survive_a_refresh(flask_app: Flask) -> None:
    service = get_service(flask_app)
    pair = service.issue_tokens("U-1", claims={"role": "admin", "tenant": "t1"})
    client = flask_app.test_client()
    assert client.get("/claims", headers=bearer(pair.access_token)).get_json() == {"role": "admin", "sub": "U-1"}
    refreshed = service.refresh(pair.refresh_token)
    assert (refreshed.access.claims["role"], refreshed.access.claims["tenant"]) == ("admin", "t1")
    with pytest.raises(ValueError, match="reserved claim names cannot be set: exp, sub"):
        service.issue_tokens("U-1", claims={"sub": "someone-else", "exp": 1})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        service.issue_tokens("U-1", claims={"when": object()})


def test_current_token_outside_a_guarded_view_raises(flask_app: Flask) -> None:
    flask_app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="no verified token in this request"):
        flask_app.test_client().get("/unguarded")


def _revoked_access(app: Flask) -> str:
    service = get_service(app)
    pair = service.issue_tokens("U-1")
    service.revoke_user("U-1")
    return pair.access_token


def test_app_errorhandler_by_class_answers_middleware_and_decorator_refusals(flask_app: Flask) -> None:
    @flask_app.errorhandler(TokenRevoked)
    def revoked(error: TokenRevoked) -> Any:
        return jsonify(custom="signed out", status=error.status), 401

    client = flask_app.test_client()
    token = _revoked_access(flask_app)
    for path in ("/api/me", "/claims", "/async/me"):  # the middleware, then the decorators
        answer = client.get(path, headers=bearer(token))
        assert (answer.status_code, answer.get_json()) == (401, {"custom": "signed out", "status": 401})
    missing = client.get("/api/me")  # other errors keep the default envelope
    assert (missing.status_code, missing.get_json()) == (401, MISSING)


def test_app_errorhandler_by_status_code(flask_app: Flask) -> None:
    @flask_app.errorhandler(401)
    def unauthorized(error: Any) -> Any:
        return jsonify(message=error.description, kind=type(error.flask_logout_error).__name__), 401

    answer = flask_app.test_client().get("/api/me")
    assert (answer.status_code, answer.get_json()) == (
        401,
        {"message": "Authorization header required", "kind": "MissingAuthorization"},
    )


def test_middleware_refusals_get_after_request_and_cors_headers(database_uri: str) -> None:
    from flask_cors import CORS

    app = build_app(database_uri)
    CORS(app, origins=["https://app.example.com"])

    @app.after_request
    def mark(response: Any) -> Any:
        response.headers["X-After-Request"] = "yes"
        return response

    try:
        answer = app.test_client().get("/api/me", headers={"Origin": "https://app.example.com"})
        assert (answer.status_code, answer.get_json()) == (401, MISSING)
        assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert answer.headers["X-After-Request"] == "yes"
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    finally:
        get_service(app).close()


def test_manager_error_handler_shapes_every_answer(database_uri: str) -> None:
    app = Flask(__name__)
    app.config.update(base_settings(database_uri))
    manager = LogoutManager(app)
    seen: list[tuple[str, int]] = []

    @manager.error_handler
    def shape(error: LogoutError, response: Any) -> Any:
        seen.append((type(error).__name__, response.status_code))
        return jsonify(problem=error.message), error.status

    @app.get("/api/me")
    def me() -> Any:
        return jsonify(ok=True)

    try:
        client = app.test_client()
        answer = client.get("/api/me")
        assert (answer.status_code, answer.get_json()) == (401, {"problem": "Authorization header required"})
        refresh = client.post("/auth/refresh", json={"refresh_token": "x"})  # a dialect's error
        assert (refresh.status_code, refresh.get_json()) == (401, {"problem": "Invalid token"})
        body = client.post("/auth/login", data="[]")
        assert (body.status_code, body.get_json()) == (400, {"problem": "Request body must be a JSON object"})
        assert seen == [("MissingAuthorization", 401), ("InvalidToken", 401), ("BadRequest", 400)]
    finally:
        get_service(app).close()


# -- cookie-authenticated views ----------------------------------------------


@pytest.fixture
def cookie_app(database_uri: str) -> Any:
    app = Flask(__name__)
    app.config.update(base_settings(database_uri, LOGOUT_PROTECTED_PATHS=[], LOGOUT_COOKIE_SECURE=False))
    manager = LogoutManager(app)
    manager.user_loader(lambda user_id: {"userId": user_id, "name": "Alice"} if user_id == "U-1" else None)

    @app.get("/page")
    @cookie_required(optional=True)
    def page() -> Any:
        return jsonify(user=get_current_user(), reason=signed_out_reason())

    @app.post("/change")
    @cookie_required
    async def change() -> Any:
        return jsonify(changed=get_identity())

    @app.get("/environ")
    @cookie_required
    def environ_keys() -> Any:
        claims = request.environ.get("flask_logout.claims")
        return jsonify(sub=request.environ["flask_logout.token"].sub, claims_sub=claims and claims["sub"])

    yield app
    get_service(app).close()


def _cookies(client: Any, pair: Any) -> None:
    client.set_cookie("DS", pair.access_token)
    client.set_cookie("DSR", pair.refresh_token)


def test_cookie_session_page_and_silent_refresh(cookie_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    service = get_service(cookie_app)
    client = cookie_app.test_client()
    assert client.get("/page").get_json() == {"user": None, "reason": None}
    pair = service.issue_tokens("U-1")
    _cookies(client, pair)
    answer = client.get("/page")
    assert answer.get_json() == {"user": {"userId": "U-1", "name": "Alice"}, "reason": None}
    assert answer.headers.getlist("Set-Cookie") == []  # nothing to renew
    move_clock(monkeypatch, 3700)  # the session cookie has lapsed
    renewed = client.get("/page")
    assert renewed.get_json()["user"] == {"userId": "U-1", "name": "Alice"}
    names = sorted(c.split("=", 1)[0] for c in renewed.headers.getlist("Set-Cookie"))
    assert names == ["DS", "DSR"]
    assert client.get_cookie("DS").value != pair.access_token


def test_cookie_session_ended_elsewhere_is_cleared_with_a_reason(cookie_app: Flask) -> None:
    service = get_service(cookie_app)
    client = cookie_app.test_client()
    _cookies(client, service.issue_tokens("U-1"))
    for _ in range(3):  # first sight, then the decorator's hot path
        assert client.get("/page").get_json()["user"] == {"userId": "U-1", "name": "Alice"}
    service.revoke_user("U-1")
    answer = client.get("/page")
    assert answer.get_json() == {"user": None, "reason": "revoked"}
    assert client.get_cookie("DS") is None and client.get_cookie("DSR") is None
    required = cookie_app.test_client()
    _cookies(required, service.issue_tokens("U-2"))
    service.revoke_user("U-2")
    refused = required.post("/change", headers={"Origin": "http://localhost"})
    assert (refused.status_code, refused.get_json()) == (401, INVALID)


def test_cookie_state_change_needs_the_sites_origin(cookie_app: Flask) -> None:
    service = get_service(cookie_app)
    client = cookie_app.test_client()
    _cookies(client, service.issue_tokens("U-1"))
    for _ in range(2):  # a hot session is no shortcut past the origin check
        assert client.get("/page").get_json()["user"] == {"userId": "U-1", "name": "Alice"}
    forbidden = {"error": {"name": "ForbiddenError", "code": "FORBIDDEN", "message": "Cross-origin request refused"}}
    for headers in ({"Origin": "https://evil.example"}, {}, {"Origin": "null"}):
        answer = client.post("/change", headers=headers)
        assert (answer.status_code, answer.get_json()) == (403, forbidden)
    same = client.post("/change", headers={"Origin": "http://localhost"})
    assert (same.status_code, same.get_json()) == (200, {"changed": "U-1"})
    no_cookie = cookie_app.test_client().post("/change", headers={"Origin": "http://localhost"})
    assert (no_cookie.status_code, no_cookie.get_json()) == (
        401,
        {"error": {"name": "UnauthorizedError", "code": "UNAUTHORIZED", "message": "Sign-in required"}},
    )


def test_cookie_required_sets_the_token_and_its_claims_in_the_environ(cookie_app: Flask) -> None:
    """Whichever credential decided (the session cookie, or a bearer header on a
    cookie-guarded view), WSGI code beneath finds the token and its claims."""
    service = get_service(cookie_app)
    by_cookie = cookie_app.test_client()
    _cookies(by_cookie, service.issue_tokens("U-1"))
    for _ in range(2):  # first sight, then the hot path
        assert by_cookie.get("/environ").get_json() == {"sub": "U-1", "claims_sub": "U-1"}
    by_bearer = cookie_app.test_client()
    token = service.issue_tokens("U-2").access_token
    for _ in range(2):
        answer = by_bearer.get("/environ", headers={"Authorization": f"Bearer {token}"})
        assert answer.get_json() == {"sub": "U-2", "claims_sub": "U-2"}


# -- start-up errors -----------------------------------------------------------


def test_unreachable_database_names_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        LogoutService.from_settings(
            {
                "LOGOUT_SECRET_KEY": SECRET,
                "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
                "LOGOUT_DATABASE_URI": "postgresql+psycopg://app:hunter2@127.0.0.1:1/nothing?connect_timeout=2",
            }
        )
    message = str(caught.value)
    assert message.startswith(
        "LOGOUT_DATABASE_URI: cannot reach the store database at postgresql+psycopg://app:***@127.0.0.1:1/nothing"
    )
    assert "hunter2" not in message


def test_postgres_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError) as caught:
        LogoutService.from_settings(
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": "postgresql+psycopg://127.0.0.1/x"}
        )
    assert str(caught.value) == (
        "LOGOUT_DATABASE_URI: postgresql+psycopg://127.0.0.1/x needs the psycopg driver, which is not installed: "
        "install the postgres extra, pip install 'flask-logout[postgres]'"
    )


def test_allowed_cidrs_as_a_string_says_a_list_is_expected(service: LogoutService) -> None:
    with pytest.raises(TypeError) as caught:
        service.register_client("x", "x-secret", allowed_cidrs="10.0.0.0/8")
    assert str(caught.value) == (
        "allowed_cidrs must be a list of CIDR strings, e.g. ['10.0.0.0/8'], not a single string"
    )


def test_max_staleness_below_three_sync_intervals_is_refused() -> None:
    from flask_logout import load_config

    with pytest.raises(ConfigError) as caught:
        load_config({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_SYNC_INTERVAL": 2, "LOGOUT_MAX_STALENESS": 5})
    assert str(caught.value) == (
        "LOGOUT_MAX_STALENESS: 5 s is too short for LOGOUT_SYNC_INTERVAL = 2 s: it must be at least 3 x the "
        "sync interval (6 s), so that a slow sync or two do not refuse every request"
    )
    assert load_config({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_SYNC_INTERVAL": 2, "LOGOUT_MAX_STALENESS": 6})
