"""The session-token dialect: ``POST /session/token``, ``/session/token/refresh``, ``DELETE /session/token``."""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Any

import jwt
import pytest

from example_app import DEMO_IDP_CLIENT_ID, create_app
from flask_logout import get_service

from .conftest import example_settings

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SIGNED_OUT = {"data": None, "code": 0, "msg": ""}


@pytest.fixture
def app(database_uri: str, rsa_pem: str) -> Any:
    app = create_app(example_settings(database_uri, rsa_pem))
    yield app
    get_service(app).close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def sign_in(client: Any, email: str = "alice@example.com") -> dict[str, str]:
    response = client.post("/session/token", json={"email": email, "password": "wonderland"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["token"]  # type: ignore[no-any-return]


def refresh(client: Any, token: str) -> Any:
    return client.post("/session/token/refresh", json={"refresh_token": token})


def sign_out(client: Any, token: Any) -> Any:
    return client.delete("/session/token", json={"refresh_token": token})


def assert_failure(response: Any, status: int, code: int, msg: str) -> str:
    """Exact status and body; returns the correlation id after checking it."""
    body = response.get_json()
    correlation_id = body.pop("correlation_id")
    assert (response.status_code, body) == (status, {"data": None, "code": code, "msg": msg, "error": None})
    assert UUID.fullmatch(correlation_id)
    assert response.headers["X-Correlation-ID"] == correlation_id
    return str(correlation_id)


def test_sign_in_answers_user_and_token(client: Any, app: Any) -> None:
    response = client.post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["code"], body["msg"]) == (0, "")
    assert "correlation_id" not in body
    assert body["data"]["user"] == {
        "userId": "U-alice",
        "name": "Alice",
        "email": "alice@example.com",
        "verifiedEmail": True,
    }
    token = body["data"]["token"]
    assert set(token) == {"access_token", "refresh_token", "access_expires", "refresh_expires"}
    access, _ = get_service(app).verify(token["access_token"])
    assert token["access_expires"] == jwt.api_jwt.datetime.fromtimestamp(  # type: ignore[attr-defined]
        access.exp,
        jwt.api_jwt.timezone.utc,  # type: ignore[attr-defined]
    ).isoformat().replace("+00:00", "Z")


def test_each_sign_in_starts_a_new_family(client: Any, app: Any) -> None:
    service = get_service(app)
    first, second = sign_in(client), sign_in(client)
    assert service.verify(first["access_token"])[0].fid != service.verify(second["access_token"])[0].fid


def test_refresh_rotates_within_the_family(client: Any, app: Any) -> None:
    service = get_service(app)
    first = sign_in(client)
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200
    body = response.get_json()
    assert (body["code"], body["msg"]) == (0, "")
    second = body["data"]
    assert set(second) == {"access_token", "refresh_token", "access_expires", "refresh_expires"}
    old_fid = service.verify(first["access_token"])[0].fid
    assert service.verify(second["access_token"])[0].fid == old_fid
    assert_failure(refresh(client, first["refresh_token"]), 401, 40032, "Refresh token revoked, please sign in again")


def test_sign_out_revokes_the_family_only(client: Any) -> None:
    first = sign_in(client)
    rotated = refresh(client, first["refresh_token"]).get_json()["data"]
    other = sign_in(client)
    response = sign_out(client, rotated["refresh_token"])
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
    for token in (first["access_token"], rotated["access_token"]):
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert_failure(refresh(client, rotated["refresh_token"]), 401, 40032, "Refresh token revoked, please sign in again")
    assert client.get("/api/me", headers={"Authorization": f"Bearer {other['access_token']}"}).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_sign_out_needs_no_authorization_header(client: Any) -> None:
    tokens = sign_in(client)
    response = client.delete(
        "/session/token", json={"refresh_token": tokens["refresh_token"]}, headers={"Authorization": "Bearer junk"}
    )
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)


@pytest.mark.parametrize(
    ("body", "code", "msg"),
    [
        (b"{broken", 40001, "Request body must be a JSON object"),
        (b"", 40001, "Request body must be a JSON object"),
        (b"[]", 40001, "Request body must be a JSON object"),
        (b"{}", 40002, "refresh_token is required"),
        (b'{"refresh_token": null}', 40002, "refresh_token is required"),
        (b'{"refresh_token": 42}', 40003, "refresh_token must be a string"),
        (b'{"refresh_token": ["a"]}', 40003, "refresh_token must be a string"),
        (b'{"refresh_token": "garbage"}', 40030, "Invalid refresh token"),
        (b'{"refresh_token": ""}', 40030, "Invalid refresh token"),
    ],
)
def test_sign_out_and_refresh_errors(client: Any, body: bytes, code: int, msg: str) -> None:
    status = 400 if code < 40010 else 401
    for method, path in (("DELETE", "/session/token"), ("POST", "/session/token/refresh")):
        response = client.open(path, method=method, data=body, content_type="application/json")
        assert_failure(response, status, code, msg)


def test_access_token_as_refresh_token_is_invalid(client: Any) -> None:
    tokens = sign_in(client)
    assert_failure(sign_out(client, tokens["access_token"]), 401, 40030, "Invalid refresh token")


def test_expired_refresh_token(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = sign_in(client)
    import flask_logout.service as service_module

    real_now = service_module.now
    monkeypatch.setattr(service_module, "now", lambda: real_now() + 31 * 24 * 3600)
    assert_failure(sign_out(client, tokens["refresh_token"]), 401, 40031, "Refresh token expired, please sign in again")


@pytest.mark.parametrize(
    ("body", "status", "code", "msg"),
    [
        ({"email": "alice@example.com", "password": "nope"}, 401, 40020, "Wrong email or password"),
        ({"email": "nobody@example.com", "password": "wonderland"}, 401, 40020, "Wrong email or password"),
        ({"email": "alice@example.com"}, 400, 40004, "email and password must be non-empty strings"),
        ({"email": 1, "password": "wonderland"}, 400, 40004, "email and password must be non-empty strings"),
    ],
)
def test_sign_in_errors(client: Any, body: dict[str, Any], status: int, code: int, msg: str) -> None:
    assert_failure(client.post("/session/token", json=body), status, code, msg)


def test_correlation_id_is_logged_and_debug_shows_the_error(
    app: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_logout"):
        correlation_id = assert_failure(sign_out(client, "garbage"), 401, 40030, "Invalid refresh token")
    assert f"correlation_id={correlation_id}" in caplog.text
    assert "garbage" not in caplog.text  # tokens are never logged
    app.debug = True
    body = sign_out(client, "garbage").get_json()
    assert body["error"] == "not a b64token" or body["error"].startswith("jwt: ")


def test_reuse_after_the_grace_window_revokes_the_family(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import flask_logout.service as service_module

    first = sign_in(client)
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    # Within the grace window (two tabs refreshing at once): refused, no alarm.
    assert_failure(refresh(client, first["refresh_token"]), 401, 40032, "Refresh token revoked, please sign in again")
    assert refresh(client, second["refresh_token"]).status_code == 200
    third = sign_in(client)
    fourth = refresh(client, third["refresh_token"]).get_json()["data"]
    real_time = service_module.time.time
    monkeypatch.setattr(service_module.time, "time", lambda: real_time() + 6)
    assert_failure(
        refresh(client, third["refresh_token"]),
        401,
        40033,
        "Refresh token reuse detected, the session has been signed out",
    )
    monkeypatch.setattr(service_module.time, "time", real_time)
    assert_failure(refresh(client, fourth["refresh_token"]), 401, 40032, "Refresh token revoked, please sign in again")
    assert client.get("/api/me", headers={"Authorization": f"Bearer {fourth['access_token']}"}).status_code == 401


def test_reuse_grace_is_configurable(database_uri: str, rsa_pem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_REUSE_GRACE_SECONDS=0))
    client = app.test_client()
    import flask_logout.service as service_module

    first = sign_in(client)
    refresh(client, first["refresh_token"])
    real_time = service_module.time.time
    monkeypatch.setattr(service_module.time, "time", lambda: real_time() + 0.5)
    response = refresh(client, first["refresh_token"])
    assert response.get_json()["code"] == 40033
    get_service(app).close()


def test_sso_session_sign_out_answers_the_provider_url(client: Any, app: Any) -> None:
    tokens = sign_in(client, "sso@example.com")
    response = sign_out(client, tokens["refresh_token"])
    assert response.status_code == 200
    body = response.get_json()
    assert (body["code"], body["msg"]) == (0, "")
    url = urllib.parse.urlsplit(body["data"])
    # The demo provider is the app itself: the URL follows the request's origin.
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://localhost/demo-idp/session/end"
    params = urllib.parse.parse_qs(url.query)
    assert set(params) == {"id_token_hint", "post_logout_redirect_uri", "state", "client_id"}
    assert params["post_logout_redirect_uri"] == ["http://localhost/"]
    assert params["client_id"] == [DEMO_IDP_CLIENT_ID]
    assert len(params["state"][0]) >= 16
    hint = jwt.decode(params["id_token_hint"][0], options={"verify_signature": False})
    assert (hint["sub"], hint["iss"]) == ("U-sso", "http://127.0.0.1:5000/demo-idp")
    assert_failure(refresh(client, tokens["refresh_token"]), 401, 40032, "Refresh token revoked, please sign in again")
    second = sign_out(client, sign_in(client, "sso@example.com")["refresh_token"]).get_json()["data"]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(second).query)["state"] != params["state"]


def test_demo_provider_end_session_page(client: Any) -> None:
    page = client.get("/demo-idp/session/end?post_logout_redirect_uri=http%3A%2F%2Flocalhost%2F&state=abc")
    assert page.status_code == 200
    assert b"You are signed out at the provider too." in page.data
    assert b'href="http://localhost/?state=abc"' in page.data
    other_port = client.get("/demo-idp/session/end?post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2F")
    assert b"127.0.0.1:5000" not in other_port.data
    foreign = client.get("/demo-idp/session/end?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F")
    assert b"evil.example" not in foreign.data


def test_store_down_is_503_with_the_envelope(client: Any, app: Any) -> None:
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    tokens = sign_in(client)
    engine = get_service(app).store.engine

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("UPDATE", {}, Exception("connection reset"))

    event.listen(engine, "before_cursor_execute", fail)
    try:
        assert_failure(
            sign_out(client, tokens["refresh_token"]), 503, 50301, "Token store unavailable, try again later"
        )
    finally:
        event.remove(engine, "before_cursor_execute", fail)
    assert sign_out(client, tokens["refresh_token"]).get_json() == SIGNED_OUT


def test_sso_sign_out_over_http_points_at_the_server_that_answered(live_example: Any) -> None:
    """The demo provider's end-session URL names the address the app really serves
    (a free port here), not a fixed 127.0.0.1:5000 where another program may listen."""
    import requests

    signed_in = requests.post(
        f"{live_example.url}/session/token", json={"email": "sso@example.com", "password": "wonderland"}, timeout=10
    )
    refresh_token = signed_in.json()["data"]["token"]["refresh_token"]
    answer = requests.delete(f"{live_example.url}/session/token", json={"refresh_token": refresh_token}, timeout=10)
    assert answer.status_code == 200
    url = urllib.parse.urlsplit(answer.json()["data"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{live_example.url}/demo-idp/session/end"
    params = urllib.parse.parse_qs(url.query)
    assert params["post_logout_redirect_uri"] == [f"{live_example.url}/"]
    page = requests.get(answer.json()["data"], timeout=10)
    assert page.status_code == 200
    assert f'href="{live_example.url}/?state='.encode() in page.content


def test_provider_urls_may_be_paths_but_not_other_hosts() -> None:
    from flask_logout import ConfigError, load_config

    def provider(endpoint: str) -> dict[str, Any]:
        return {
            "LOGOUT_SECRET_KEY": "x" * 64,
            "LOGOUT_OIDC_PROVIDERS": {
                "p": {"issuer": "https://idp.example", "client_id": "c", "end_session_endpoint": endpoint}
            },
        }

    config = load_config(provider("/idp/end"), default_database_uri="sqlite://")
    assert config.oidc_providers["p"].end_session_endpoint == "/idp/end"
    for bad in ("//evil.example/end", "/\\evil.example", "idp/end", "javascript:alert(1)"):
        with pytest.raises(ConfigError, match="end_session_endpoint"):
            load_config(provider(bad), default_database_uri="sqlite://")
    redirect = load_config(
        {"LOGOUT_SECRET_KEY": "x" * 64, "LOGOUT_POST_LOGOUT_REDIRECT_URI": "/bye"}, default_database_uri="sqlite://"
    )
    assert redirect.post_logout_redirect_uri == "/bye"
