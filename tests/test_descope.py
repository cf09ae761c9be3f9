"""The Descope dialect: ``/v1/auth/logout``, ``/logoutall``, ``/refresh``, sign-in and keys."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from example_app import PROJECT_ID, create_app
from flask_logout import get_service
from flask_logout.dialects.descope import EMPTY_IDP_RESPONSE, EMPTY_USER

from .conftest import example_settings

ORIGIN = "http://localhost"  # the test client's own origin


@pytest.fixture
def app(database_uri: str, rsa_pem: str) -> Any:
    app = create_app(example_settings(database_uri, rsa_pem))
    yield app
    get_service(app).close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def sign_in(client: Any, login_id: str = "alice@example.com", password: str = "wonderland") -> dict[str, Any]:
    response = client.post(
        "/v1/auth/password/signin",
        json={"loginId": login_id, "password": password},
        headers={"Authorization": f"Bearer {PROJECT_ID}"},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def auth(refresh_jwt: str, project_id: str = PROJECT_ID) -> dict[str, str]:
    return {"Authorization": f"Bearer {project_id}:{refresh_jwt}"}


def descope_error(code: str, description: str, message: str) -> dict[str, str]:
    return {"errorCode": code, "errorDescription": description, "errorMessage": message}


SIGNED_OUT = {
    "sessionJwt": "",
    "refreshJwt": "",
    "cookieDomain": "",
    "cookiePath": "/",
    "cookieMaxAge": 0,
    "cookieExpiration": 0,
    "user": EMPTY_USER,
    "firstSeen": False,
    "idpResponse": EMPTY_IDP_RESPONSE,
    "sessionExpiration": 0,
    "externalToken": "",
    "claims": {},
    "tenantSSOID": "",
    "trustedDeviceJwt": "",
    "nextRefreshSeconds": 0,
    "cookieName": "DSR",
    "sessionCookieName": "DS",
    "sessionCookieDomain": "",
}
ACCEPTED = '"currentSession", "allSessions"'
INVALID_RT = descope_error("E901004", "Invalid refresh token", "The refresh token is not valid")
REVOKED_RT = descope_error("E064001", "Token expired by logout", "The session was signed out; sign in again")


def _deleted_cookies(response: Any) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie") if "Max-Age=0" in h}


def test_signin_answers_a_full_jwt_response_and_sets_cookies(client: Any, app: Any) -> None:
    body = sign_in(client)
    assert set(body) == set(SIGNED_OUT)
    service = get_service(app)
    session, _ = service.verify(body["sessionJwt"])
    assert session.sub == "U-alice"
    assert body["user"]["email"] == "alice@example.com"
    assert body["user"]["loginIds"] == ["alice@example.com"]
    assert body["cookieMaxAge"] == 30 * 24 * 3600
    assert body["sessionExpiration"] == session.exp
    header = jwt.get_unverified_header(body["sessionJwt"])
    assert (header["alg"], header["kid"]) == ("RS256", service.config.key_id)


def test_keys_are_published_for_the_project(client: Any, app: Any) -> None:
    keys = client.get(f"/v2/keys/{PROJECT_ID}").get_json()["keys"]
    assert [(k["kid"], k["alg"], k["kty"], k["use"]) for k in keys] == [
        (get_service(app).config.key_id, "RS256", "RSA", "sig")
    ]
    token = sign_in(client)["sessionJwt"]
    public = jwt.PyJWK(keys[0]).key
    assert jwt.decode(token, public, algorithms=["RS256"])["sub"] == "U-alice"
    unknown = client.get("/v2/keys/P2other")
    assert (unknown.status_code, unknown.get_json()) == (
        404,
        descope_error("E904001", "Unknown project", "No keys are published for this project id"),
    )


@pytest.mark.parametrize("body", [None, b"{}", b'{"logoutType": []}', b'{"logoutType": ["currentSession"]}'])
def test_logout_ends_this_session_only(client: Any, body: bytes | None) -> None:
    first, second = sign_in(client), sign_in(client)
    response = client.post("/v1/auth/logout", data=body, headers=auth(first["refreshJwt"]))
    assert response.status_code == 200
    assert response.get_json() == SIGNED_OUT
    deleted = _deleted_cookies(response)
    assert set(deleted) == {"DS", "DSR"}
    assert all("Path=/" in h and "HttpOnly" in h and "SameSite=Lax" in h for h in deleted.values())
    again = client.post("/v1/auth/refresh", headers=auth(first["refreshJwt"]))
    assert (again.status_code, again.get_json()) == (401, REVOKED_RT)
    session = client.get("/api/me", headers={"Authorization": f"Bearer {first['sessionJwt']}"})
    assert session.status_code == 401
    assert client.post("/v1/auth/refresh", headers=auth(second["refreshJwt"])).status_code == 200


def test_logout_all_sessions_by_logout_type_and_by_logoutall(client: Any) -> None:
    for call in (("/v1/auth/logout", {"logoutType": ["allSessions"]}), ("/v1/auth/logoutall", None)):
        first, second = sign_in(client), sign_in(client)
        response = client.post(call[0], json=call[1], headers=auth(first["refreshJwt"]))
        assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
        for tokens in (first, second):
            refreshed = client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"]))
            assert (refreshed.status_code, refreshed.get_json()) == (401, REVOKED_RT)
        assert sign_in(client)["sessionJwt"]  # signing in again works


@pytest.mark.parametrize(
    ("body", "code", "description", "message"),
    [
        (b"{oops", "E011001", "Bad request", "The request body must be a JSON object"),
        (b"[]", "E011001", "Bad request", "The request body must be a JSON object"),
        (
            b'{"logoutType": "allSessions"}',
            "E011004",
            "Invalid arguments",
            f"logoutType must be a list of strings; accepted values: {ACCEPTED}",
        ),
        (
            b'{"logoutType": [1]}',
            "E011004",
            "Invalid arguments",
            f"logoutType must be a list of strings; accepted values: {ACCEPTED}",
        ),
        (
            b'{"logoutType": ["everything"]}',
            "E011004",
            "Invalid arguments",
            f"Unknown logoutType value 'everything'; accepted values: {ACCEPTED}",
        ),
    ],
)
def test_malformed_logout_bodies_are_400_and_revoke_nothing(
    client: Any, body: bytes, code: str, description: str, message: str
) -> None:
    tokens = sign_in(client)
    response = client.post("/v1/auth/logout", data=body, headers=auth(tokens["refreshJwt"]))
    assert (response.status_code, response.get_json()) == (400, descope_error(code, description, message))
    assert client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"])).status_code == 200


def test_authorization_errors(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = sign_in(client)
    client.delete_cookie("DS")
    client.delete_cookie("DSR")  # bearer-only from here on
    cases = [
        (
            {},
            401,
            descope_error(
                "E901001",
                "Missing authorization",
                "Expected Authorization: Bearer <ProjectID>:<RefreshJWT> or the refresh cookie",
            ),
        ),
        (
            {"Authorization": f"Bearer {PROJECT_ID}"},
            401,
            descope_error(
                "E901001",
                "Missing authorization",
                "Expected Authorization: Bearer <ProjectID>:<RefreshJWT> or the refresh cookie",
            ),
        ),
        (
            {"Authorization": f"Basic {PROJECT_ID}:{tokens['refreshJwt']}"},
            401,
            descope_error(
                "E901002", "Malformed authorization", "Expected Authorization: Bearer <ProjectID>:<RefreshJWT>"
            ),
        ),
        (
            {"Authorization": "Bearer a b"},
            401,
            descope_error(
                "E901002", "Malformed authorization", "Expected Authorization: Bearer <ProjectID>:<RefreshJWT>"
            ),
        ),
        (
            auth(tokens["refreshJwt"], "P2other"),
            401,
            descope_error("E901003", "Project mismatch", "The project id does not match this project"),
        ),
        (auth("not.a.jwt"), 401, INVALID_RT),
        (auth(tokens["sessionJwt"]), 401, INVALID_RT),  # a session token is not a refresh token
    ]
    for headers, status, body in cases:
        for path in ("/v1/auth/logout", "/v1/auth/logoutall", "/v1/auth/refresh"):
            response = client.post(path, headers=headers)
            assert (response.status_code, response.get_json()) == (status, body), (path, headers)
    import flask_logout.service as service_module

    real_now = service_module.now
    monkeypatch.setattr(service_module, "now", lambda: real_now() + 31 * 24 * 3600)
    expired = client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"]))
    assert (expired.status_code, expired.get_json()) == (
        401,
        descope_error("E901005", "Refresh token expired", "The refresh token has expired; sign in again"),
    )


def test_revoked_refresh_token(client: Any) -> None:
    tokens = sign_in(client)
    client.delete_cookie("DSR")
    assert client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"])).status_code == 200
    for path in ("/v1/auth/logout", "/v1/auth/logoutall"):
        response = client.post(path, headers=auth(tokens["refreshJwt"]))
        assert (response.status_code, response.get_json()) == (401, REVOKED_RT)


def test_refresh_keeps_the_refresh_token_by_default_as_descope_does(client: Any) -> None:
    """Descope projects do not rotate refresh tokens unless told to: an SDK
    that keeps its first refresh JWT can refresh again and again."""
    tokens = sign_in(client)
    sessions = set()
    for _ in range(3):
        response = client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"]))
        assert response.status_code == 200
        body = response.get_json()
        assert body["refreshJwt"] == tokens["refreshJwt"]
        assert body["user"]["userId"] == "U-alice"
        sessions.add(body["sessionJwt"])
        cookies = {h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")}
        assert cookies == {"DS", "DSR"}
    assert len(sessions | {tokens["sessionJwt"]}) == 4
    for session_jwt in sessions:  # every session JWT of the session is usable, and ended by one sign-out
        assert client.get("/api/me", headers={"Authorization": f"Bearer {session_jwt}"}).status_code == 200
    assert client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"])).status_code == 200
    for session_jwt in sessions:
        assert client.get("/api/me", headers={"Authorization": f"Bearer {session_jwt}"}).status_code == 401


def test_refresh_rotates_when_configured(database_uri: str, rsa_pem: str) -> None:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_DESCOPE_REFRESH_ROTATION=True))
    client = app.test_client()
    tokens = sign_in(client)
    response = client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["refreshJwt"] != tokens["refreshJwt"]
    cookies = {h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")}
    assert cookies == {"DS", "DSR"}
    old = client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"]))
    assert (old.status_code, old.get_json()) == (
        401,
        descope_error(
            "E901006", "Refresh token rotated out", "This refresh token was replaced by a refresh; use the new one"
        ),
    )
    # The rotated-out token still signs the session out (the grace window does not matter here).
    assert client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"])).status_code == 200
    ended = client.post("/v1/auth/refresh", headers=auth(body["refreshJwt"]))
    assert (ended.status_code, ended.get_json()) == (401, REVOKED_RT)
    get_service(app).close()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {"loginId": "alice@example.com", "password": "wrong"},
            401,
            descope_error("E902001", "Invalid credentials", "The login id or password is wrong"),
        ),
        (
            {"loginId": "bob@example.com", "password": "wonderland"},
            401,
            descope_error("E902001", "Invalid credentials", "The login id or password is wrong"),
        ),
        (
            {"loginId": "alice@example.com"},
            400,
            descope_error("E011002", "Missing arguments", "loginId and password are required"),
        ),
        (
            {"loginId": "", "password": "x"},
            400,
            descope_error("E011002", "Missing arguments", "loginId and password are required"),
        ),
        (
            {"loginId": 5, "password": "x"},
            400,
            descope_error("E011004", "Invalid arguments", "loginId and password must be strings"),
        ),
    ],
)
def test_signin_errors(client: Any, body: dict[str, Any], status: int, error: dict[str, str]) -> None:
    response = client.post("/v1/auth/password/signin", json=body)
    assert (response.status_code, response.get_json()) == (status, error)


def test_signin_with_another_project_id(client: Any) -> None:
    response = client.post(
        "/v1/auth/password/signin",
        json={"loginId": "alice@example.com", "password": "wonderland"},
        headers={"Authorization": "Bearer P2other"},
    )
    assert (response.status_code, response.get_json()) == (
        401,
        descope_error("E901003", "Project mismatch", "The project id does not match this project"),
    )


def test_signin_without_credentials_loader(database_uri: str, rsa_pem: str) -> None:
    from flask import Flask

    from flask_logout import LogoutManager

    app = Flask(__name__)
    app.config.update(
        example_settings(
            database_uri,
            rsa_pem,
            LOGOUT_ALGORITHM="RS256",
            LOGOUT_DIALECTS=["descope"],
            LOGOUT_DESCOPE_PROJECT_ID="P2x",
        )
    )
    LogoutManager(app)
    response = app.test_client().post("/v1/auth/password/signin", json={"loginId": "a", "password": "b"})
    assert (response.status_code, response.get_json()) == (
        501,
        descope_error("E905001", "Sign-in not configured", "Password sign-in is not configured on this server"),
    )
    get_service(app).close()


def test_cookie_signout_from_the_same_origin(client: Any) -> None:
    sign_in(client)  # sets DS and DSR in the test client's jar
    response = client.post("/v1/auth/logout", headers={"Origin": ORIGIN})
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
    assert client.get_cookie("DS") is None and client.get_cookie("DSR") is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:8080"},  # same site, other origin
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {},  # neither Origin nor Referer
    ],
)
def test_cookie_signout_from_another_origin_is_refused(client: Any, headers: dict[str, str]) -> None:
    tokens = sign_in(client)
    response = client.post("/v1/auth/logout", headers=headers)
    assert (response.status_code, response.get_json()) == (
        403,
        descope_error(
            "E901007", "Cross-origin request refused", "Cookie-authenticated requests must come from this site's origin"
        ),
    )
    assert client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"])).status_code == 200


def test_referer_of_the_same_origin_is_enough(client: Any) -> None:
    sign_in(client)
    response = client.post("/v1/auth/logout", headers={"Referer": f"{ORIGIN}/account"})
    assert response.status_code == 200


def test_trusted_origin(database_uri: str, rsa_pem: str) -> None:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_TRUSTED_ORIGINS=["https://app.example.com"]))
    client = app.test_client()
    sign_in(client)
    assert client.post("/v1/auth/logout", headers={"Origin": "https://app.example.com"}).status_code == 200
    get_service(app).close()


def test_custom_cookie_names_domains_and_clear_site_data(database_uri: str, rsa_pem: str) -> None:
    app = create_app(
        example_settings(
            database_uri,
            rsa_pem,
            LOGOUT_SESSION_COOKIE_NAME="app_session",
            LOGOUT_REFRESH_COOKIE_NAME="app_refresh",
            LOGOUT_COOKIE_DOMAIN="example.com",
            LOGOUT_SESSION_COOKIE_DOMAIN="app.example.com",
            LOGOUT_COOKIE_PATH="/app",
            LOGOUT_COOKIE_SECURE=True,
            LOGOUT_COOKIE_SAMESITE="Strict",
            LOGOUT_CLEAR_SITE_DATA=True,
        )
    )
    client = app.test_client()
    tokens = sign_in(client)
    response = client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"]))
    body = response.get_json()
    assert (body["cookieName"], body["sessionCookieName"]) == ("app_refresh", "app_session")
    assert (body["cookieDomain"], body["sessionCookieDomain"], body["cookiePath"]) == (
        "example.com",
        "app.example.com",
        "/app",
    )
    deleted = _deleted_cookies(response)
    assert "Domain=app.example.com" in deleted["app_session"]
    assert "Domain=example.com" in deleted["app_refresh"]
    for header in deleted.values():
        assert all(part in header for part in ("Path=/app", "Secure", "HttpOnly", "SameSite=Strict"))
    assert response.headers["Clear-Site-Data"] == '"cookies", "storage"'
    get_service(app).close()


def test_store_down_is_503_and_not_success(client: Any, app: Any) -> None:
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    tokens = sign_in(client)
    engine = get_service(app).store.engine

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    event.listen(engine, "before_cursor_execute", fail)
    try:
        response = client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"]))
        assert (response.status_code, response.get_json()) == (
            503,
            descope_error("E905003", "Service unavailable", "Token store unavailable, try again later"),
        )
    finally:
        event.remove(engine, "before_cursor_execute", fail)
    assert client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"])).status_code == 200


def test_descope_settings_are_checked_at_start_up(tmp_path: Any, rsa_pem: str) -> None:
    from flask import Flask

    from flask_logout import ConfigError, LogoutManager

    def start(**settings: Any) -> None:
        app = Flask(__name__)
        app.config.update(
            {
                "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/d.sqlite3",
                "SECRET_KEY": "s" * 40,
                "LOGOUT_DIALECTS": ["descope"],
                **settings,
            }
        )
        LogoutManager(app)

    with pytest.raises(ConfigError, match="LOGOUT_DESCOPE_PROJECT_ID: missing"):
        start(LOGOUT_ALGORITHM="RS256", LOGOUT_PRIVATE_KEY=rsa_pem)
    with pytest.raises(ConfigError, match="LOGOUT_ALGORITHM: HS256 cannot be used with the descope dialect"):
        start(LOGOUT_DESCOPE_PROJECT_ID="P2x")
    with pytest.raises(ConfigError, match="LOGOUT_DESCOPE_PROJECT_ID: must be 1-128 letters"):
        start(LOGOUT_ALGORITHM="RS256", LOGOUT_PRIVATE_KEY=rsa_pem, LOGOUT_DESCOPE_PROJECT_ID="P2:x")
    with pytest.raises(ConfigError, match="LOGOUT_COOKIE_SAMESITE: must be Strict, Lax or None, not 'Sometimes'"):
        start(
            LOGOUT_ALGORITHM="RS256",
            LOGOUT_PRIVATE_KEY=rsa_pem,
            LOGOUT_DESCOPE_PROJECT_ID="P2x",
            LOGOUT_COOKIE_SAMESITE="Sometimes",
        )
    with pytest.raises(ConfigError, match="LOGOUT_SESSION_COOKIE_NAME: not a valid cookie name: 'my cookie'"):
        start(
            LOGOUT_ALGORITHM="RS256",
            LOGOUT_PRIVATE_KEY=rsa_pem,
            LOGOUT_DESCOPE_PROJECT_ID="P2x",
            LOGOUT_SESSION_COOKIE_NAME="my cookie",
        )
    with pytest.raises(ConfigError, match="LOGOUT_TRUSTED_ORIGINS: 'evil' is not an origin"):
        start(
            LOGOUT_ALGORITHM="RS256",
            LOGOUT_PRIVATE_KEY=rsa_pem,
            LOGOUT_DESCOPE_PROJECT_ID="P2x",
            LOGOUT_TRUSTED_ORIGINS=["evil"],
        )
