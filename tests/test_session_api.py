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

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
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
    assert (response.status_code, response.get_json()["code"]) == (200, 0), response.get_json()
    return response.get_json()["data"]["token"]  # type: ignore[no-any-return]


def refresh(client: Any, token: str) -> Any:
    return client.post("/session/token/refresh", json={"refresh_token": token})


def sign_out(client: Any, token: Any) -> Any:
    return client.delete("/session/token", json={"refresh_token": token})


#: Cloudreve's messages for a dead refresh token (service/user/login.go).
REFRESH_FAILED = (40020, "Failed to issue token pair")
SIGNOUT_FAILED = (40020, "Failed to parse token")


def assert_failure(response: Any, code: int, msg: str, status: int = 200) -> str:
    """Exact status and body (Cloudreve's: HTTP 200 by default, no ``error`` outside
    debug mode); returns the correlation id after checking it."""
    body = response.get_json()
    correlation_id = body.pop("correlation_id")
    assert (response.status_code, body) == (status, {"data": None, "code": code, "msg": msg})
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
    assert_failure(refresh(client, first["refresh_token"]), *REFRESH_FAILED)


def test_sign_out_revokes_the_family_only(client: Any) -> None:
    first = sign_in(client)
    rotated = refresh(client, first["refresh_token"]).get_json()["data"]
    other = sign_in(client)
    response = sign_out(client, rotated["refresh_token"])
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
    for token in (first["access_token"], rotated["access_token"]):
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert_failure(refresh(client, rotated["refresh_token"]), *REFRESH_FAILED)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {other['access_token']}"}).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_sign_out_needs_no_authorization_header(client: Any) -> None:
    tokens = sign_in(client)
    response = client.delete(
        "/session/token", json={"refresh_token": tokens["refresh_token"]}, headers={"Authorization": "Bearer junk"}
    )
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)


@pytest.mark.parametrize(
    ("body", "code", "msg", "status"),
    [
        (b"{broken", 40001, "Parameter error", 400),
        (b"", 40001, "Parameter error", 400),
        (b"[]", 40001, "JSON marshall error", 400),
        (b"{}", 40001, "RefreshToken cannot be empty", 400),
        (b'{"refresh_token": null}', 40001, "RefreshToken cannot be empty", 400),
        (b'{"refresh_token": ""}', 40001, "RefreshToken cannot be empty", 400),
        (b'{"refresh_token": 42}', 40001, "JSON marshall error", 400),
        (b'{"refresh_token": ["a"]}', 40001, "JSON marshall error", 400),
        (b'{"refresh_token": "garbage"}', 40020, None, 401),
        (b'{"refresh_token": "a.b.c"}', 40020, None, 401),
    ],
)
def test_sign_out_and_refresh_errors(
    database_uri: str, rsa_pem: str, body: bytes, code: int, msg: str | None, status: int
) -> None:
    """Every answer twice: Cloudreve's HTTP 200 by default, the real status with LOGOUT_SESSION_HTTP_STATUS."""
    for real_status in (False, True):
        app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_SESSION_HTTP_STATUS=real_status))
        client = app.test_client()
        try:
            for method, path, dead in (
                ("DELETE", "/session/token", SIGNOUT_FAILED[1]),
                ("POST", "/session/token/refresh", REFRESH_FAILED[1]),
            ):
                response = client.open(path, method=method, data=body, content_type="application/json")
                assert_failure(response, code, msg or dead, status if real_status else 200)
        finally:
            get_service(app).close()


def test_access_token_as_refresh_token_is_invalid(client: Any) -> None:
    tokens = sign_in(client)
    assert_failure(sign_out(client, tokens["access_token"]), *SIGNOUT_FAILED)
    assert_failure(refresh(client, tokens["access_token"]), *REFRESH_FAILED)


def test_forged_refresh_tokens_are_credential_invalid(client: Any, app: Any) -> None:
    """Signed with another key, or ours with a changed payload: 40020, and the session lives on."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tokens = sign_in(client)
    genuine = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(tokens["refresh_token"])
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged = jwt.encode(genuine, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    head, _, signature = tokens["refresh_token"].split(".")
    tampered_payload = jwt.utils.base64url_encode(  # type: ignore[attr-defined]
        __import__("json").dumps({**genuine, "sub": "U-bob"}).encode()
    ).decode()
    for bad in (forged, f"{head}.{tampered_payload}.{signature}"):
        assert_failure(sign_out(client, bad), *SIGNOUT_FAILED)
        assert_failure(refresh(client, bad), *REFRESH_FAILED)
    assert refresh(client, tokens["refresh_token"]).get_json()["code"] == 0


def test_expired_refresh_token(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refresh refuses it (40020: the front end signs out); sign-out answers success (idempotent)."""
    tokens = sign_in(client)
    import flask_logout.service as service_module

    real_now = service_module.now
    monkeypatch.setattr(service_module, "now", lambda: real_now() + 31 * 24 * 3600)
    assert_failure(refresh(client, tokens["refresh_token"]), *REFRESH_FAILED)
    response = sign_out(client, tokens["refresh_token"])
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)


@pytest.mark.parametrize(
    ("body", "status", "code", "msg"),
    [
        ({"email": "alice@example.com", "password": "nope"}, 401, 40080, "Incorrect password or email address"),
        ({"email": "nobody@example.com", "password": "wonderland"}, 401, 40080, "Incorrect password or email address"),
        ({"email": "alice@example.com"}, 400, 40001, "Password cannot be empty"),
        ({"password": "wonderland"}, 400, 40001, "Email cannot be empty"),
        ({"email": "", "password": "wonderland"}, 400, 40001, "Email cannot be empty"),
        ({"email": 1, "password": "wonderland"}, 400, 40001, "JSON marshall error"),
        ({"email": 1}, 400, 40001, "JSON marshall error"),  # types are checked before presence
        ({"email": "a\u0000b", "password": "wonderland"}, 400, 40001, "Parameter error"),
    ],
)
def test_sign_in_errors(client: Any, body: dict[str, Any], status: int, code: int, msg: str) -> None:
    assert_failure(client.post("/session/token", json=body), code, msg)


def test_sign_in_without_a_credentials_loader_is_feature_not_enabled(database_uri: str) -> None:
    from .conftest import build_app

    for real_status, status in ((False, 200), (True, 501)):
        app = build_app(database_uri, LOGOUT_DIALECTS=["session"], LOGOUT_SESSION_HTTP_STATUS=real_status)
        try:
            response = app.test_client().post("/session/token", json={"email": "a@example.com", "password": "pw"})
            assert_failure(response, 40019, "This feature is not enabled", status)
        finally:
            get_service(app).close()


def test_correlation_id_is_logged_and_debug_shows_the_error(
    app: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_logout"):
        correlation_id = assert_failure(sign_out(client, "garbage"), *SIGNOUT_FAILED)
    assert f"correlation_id={correlation_id}" in caplog.text
    assert "garbage" not in caplog.text  # tokens are never logged
    app.debug = True
    response = sign_out(client, "garbage")
    body = response.get_json()
    assert (response.status_code, body["code"], body["error"]) == (200, 40020, "jwt: DecodeError")
    assert set(body) == {"data", "code", "msg", "error", "correlation_id"}


def test_reuse_after_the_grace_window_revokes_the_family(
    client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import flask_logout.service as service_module

    first = sign_in(client)
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    # Within the grace window (two tabs refreshing at once): refused, no alarm.
    assert_failure(refresh(client, first["refresh_token"]), *REFRESH_FAILED)
    assert refresh(client, second["refresh_token"]).status_code == 200
    third = sign_in(client)
    fourth = refresh(client, third["refresh_token"]).get_json()["data"]
    real_time = service_module.time.time
    monkeypatch.setattr(service_module.time, "time", lambda: real_time() + 6)
    with caplog.at_level(logging.WARNING, logger="flask_logout"):
        assert_failure(refresh(client, third["refresh_token"]), *REFRESH_FAILED)
    assert "refresh token reuse detected" in caplog.text
    monkeypatch.setattr(service_module.time, "time", real_time)
    assert_failure(refresh(client, fourth["refresh_token"]), *REFRESH_FAILED)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {fourth['access_token']}"}).status_code == 401


def test_reuse_grace_is_configurable(
    database_uri: str, rsa_pem: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_REUSE_GRACE_SECONDS=0))
    client = app.test_client()
    import flask_logout.service as service_module

    first = sign_in(client)
    refresh(client, first["refresh_token"])
    real_time = service_module.time.time
    monkeypatch.setattr(service_module.time, "time", lambda: real_time() + 0.5)
    with caplog.at_level(logging.WARNING, logger="flask_logout"):
        assert_failure(refresh(client, first["refresh_token"]), *REFRESH_FAILED)
    assert "refresh token reuse detected" in caplog.text  # not merely refused within a grace window
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
    assert_failure(refresh(client, tokens["refresh_token"]), *REFRESH_FAILED)
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


def test_store_down_is_the_db_error_code(client: Any, app: Any) -> None:
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    tokens = sign_in(client)
    engine = get_service(app).store.engine

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("UPDATE", {}, Exception("connection reset"))

    event.listen(engine, "before_cursor_execute", fail)
    try:
        # Cloudreve's CodeDBError: not 40020, so its front end keeps the user signed in and can retry.
        assert_failure(sign_out(client, tokens["refresh_token"]), 50001, "Database operation failed.")
        assert_failure(refresh(client, tokens["refresh_token"]), 50001, "Database operation failed.")
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


# -- Cloudreve's protocol: correlation ids, idempotent sign-out, its front end's rule ---------


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ("b4351ecc-ee1a-4455-bc94-2c3dbcc58538", "b4351ecc-ee1a-4455-bc94-2c3dbcc58538"),
        ("B4351ECC-EE1A-1455-BC94-2C3DBCC58538", "b4351ecc-ee1a-1455-bc94-2c3dbcc58538"),  # any version, canonical
        ("{b4351ecc-ee1a-4455-bc94-2c3dbcc58538}", "b4351ecc-ee1a-4455-bc94-2c3dbcc58538"),
        ("00000000-0000-0000-0000-000000000000", None),  # the nil UUID: Cloudreve makes a new one
        ("not-a-uuid", None),
        ("b4351ecc-ee1a-4455-bc94-2c3dbcc58538" * 2, None),
        ("", None),
    ],
)
def test_correlation_id_comes_from_x_cr_correlation_id_when_it_is_a_uuid(
    client: Any, caplog: pytest.LogCaptureFixture, sent: str, answered: str | None
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_logout"):
        response = client.delete(
            "/session/token", json={"refresh_token": "garbage"}, headers={"X-Cr-Correlation-Id": sent}
        )
    correlation_id = assert_failure(response, *SIGNOUT_FAILED)
    if answered is None:
        assert correlation_id != sent and UUID4.fullmatch(correlation_id)  # a fresh version-4 UUID
    else:
        assert correlation_id == answered
    assert f"correlation_id={correlation_id}" in caplog.text


def test_success_has_no_correlation_id_even_when_one_is_sent(client: Any) -> None:
    tokens = sign_in(client)
    headers = {"X-Cr-Correlation-Id": "b4351ecc-ee1a-4455-bc94-2c3dbcc58538"}
    response = client.delete("/session/token", json={"refresh_token": tokens["refresh_token"]}, headers=headers)
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
    assert "X-Correlation-ID" not in response.headers


def test_sign_out_is_idempotent(client: Any, app: Any) -> None:
    """Signing out an ended session answers success, with any genuine refresh token of it."""
    service = get_service(app)
    first = sign_in(client)
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    other = sign_in(client)
    for token in (second["refresh_token"], second["refresh_token"], first["refresh_token"]):
        response = sign_out(client, token)
        assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {other['access_token']}"}).status_code == 200
    # Ended by a sign-out everywhere (generation bump), by RFC 7009 revocation: still success.
    third = sign_in(client)
    service.revoke_user("U-alice")
    assert sign_out(client, third["refresh_token"]).get_json() == SIGNED_OUT
    fourth = sign_in(client)
    service.revoke_presented(fourth["refresh_token"], any_client=True)
    assert sign_out(client, fourth["refresh_token"]).get_json() == SIGNED_OUT


def test_sign_out_everywhere(client: Any) -> None:
    """DELETE /session/token/all (an extension): every session of the user, no one else's."""
    mine = [sign_in(client) for _ in range(3)]
    rotated = refresh(client, mine[0]["refresh_token"]).get_json()["data"]
    bob = sign_in(client, "sso@example.com")  # another user
    response = client.delete("/session/token/all", json={"refresh_token": mine[0]["refresh_token"]})  # rotated out
    assert (response.status_code, response.get_json()) == (200, SIGNED_OUT)
    for tokens in [*mine, rotated]:
        assert client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
        assert_failure(refresh(client, tokens["refresh_token"]), *REFRESH_FAILED)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {bob['access_token']}"}).status_code == 200
    # A token whose session has ended cannot end the user's other sessions.
    newer = sign_in(client)
    dead = client.delete("/session/token/all", json={"refresh_token": rotated["refresh_token"]})
    assert_failure(dead, *SIGNOUT_FAILED)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {newer['access_token']}"}).status_code == 200
    assert_failure(client.delete("/session/token/all", json={}), 40001, "RefreshToken cannot be empty")
    assert_failure(client.delete("/session/token/all", json={"refresh_token": "garbage"}), *SIGNOUT_FAILED)


def frontend_signs_out(response: Any) -> bool:
    """Cloudreve's front end (src/api/request.ts, ``send``): axios rejects non-2xx answers
    before the body is read; a 2xx body with code 40020 or 401 signs the user out locally."""
    if not 200 <= response.status_code < 300:
        return False
    return response.get_json()["code"] in (40020, 401)


def test_the_front_end_signs_out_exactly_when_the_credential_is_dead(
    client: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every failure of sign-out and refresh, replayed through the front end's own rule."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    import flask_logout.service as service_module

    service = get_service(app)
    dead_cases: dict[str, Any] = {}
    for path in ("/session/token/refresh", "/session/token"):
        method = "POST" if path.endswith("refresh") else "DELETE"

        def call(token: Any, method: str = method, path: str = path) -> Any:
            return client.open(path, method=method, json={"refresh_token": token})

        cases: list[tuple[str, Any, bool]] = []  # what, answer, is the credential dead?
        cases.append(("garbage", call("garbage"), True))
        cases.append(("access token", call(sign_in(client)["access_token"]), True))
        cases.append(("not JSON", client.open(path, method=method, data=b"{", content_type="application/json"), False))
        cases.append(("no token", client.open(path, method=method, json={}), False))
        cases.append(("wrong type", call(42), False))
        cases.append(
            ("too large", client.open(path, method=method, data=b" " * 20_000, content_type="application/json"), False)
        )
        if method == "POST":
            revoked = sign_in(client)
            sign_out(client, revoked["refresh_token"])
            cases.append(("revoked", call(revoked["refresh_token"]), True))
            first = sign_in(client)
            refresh(client, first["refresh_token"])
            real_time, real_now = service_module.time.time, service_module.now
            monkeypatch.setattr(service_module.time, "time", lambda real_time=real_time: real_time() + 6)
            cases.append(("reused", call(first["refresh_token"]), True))
            monkeypatch.setattr(service_module.time, "time", real_time)
            expiring = sign_in(client)
            monkeypatch.setattr(service_module, "now", lambda real_now=real_now: real_now() + 31 * 24 * 3600)
            cases.append(("expired", call(expiring["refresh_token"]), True))
            monkeypatch.setattr(service_module, "now", real_now)
            gone = sign_in(client)
            monkeypatch.setattr(service, "user_exists", lambda _user_id: False)
            cases.append(("user deleted", call(gone["refresh_token"]), True))
            monkeypatch.setattr(service, "user_exists", None)
            changed = sign_in(client)
            monkeypatch.setattr(service, "credential_version", lambda _user_id: "v2")
            cases.append(("credentials changed", call(changed["refresh_token"]), True))
            monkeypatch.setattr(service, "credential_version", None)
        live = sign_in(client)

        def fail(*_args: Any, **_kwargs: Any) -> None:
            raise OperationalError("SELECT", {}, Exception("connection refused"))

        event.listen(service.store.engine, "before_cursor_execute", fail)
        try:
            cases.append(("store down", call(live["refresh_token"]), False))
        finally:
            event.remove(service.store.engine, "before_cursor_execute", fail)
        for what, response, dead in cases:
            assert response.status_code == 200, (path, what)
            assert response.get_json()["code"] != 0, (path, what)
            assert frontend_signs_out(response) == dead, (path, what, response.get_json())
        dead_cases[path] = {what for what, _, dead in cases if dead}
    assert dead_cases["/session/token"] == {"garbage", "access token"}  # the rest of a dead session is success


def test_outside_the_client_whitelist_does_not_sign_the_front_end_out(database_uri: str) -> None:
    from .conftest import LOCKED, build_app

    app = build_app(database_uri, LOGOUT_DIALECTS=["client", "session"])
    try:
        pair = get_service(app).issue_tokens(LOCKED[0], client_id=LOCKED[0])
        client = app.test_client()
        for method, path in (("DELETE", "/session/token"), ("POST", "/session/token/refresh")):
            response = client.open(path, method=method, json={"refresh_token": pair.refresh_token})
            assert_failure(response, 403, "IP address not authorized")
            assert not frontend_signs_out(response)
    finally:
        get_service(app).close()


# -- URL prefixes ------------------------------------------------------------------------


def test_session_dialect_under_a_url_prefix(database_uri: str, rsa_pem: str) -> None:
    settings = example_settings(
        database_uri, rsa_pem, LOGOUT_URL_PREFIXES={"session": "/api/v4"}, LOGOUT_PROTECTED_PATHS=["/api/me"]
    )
    app = create_app(settings)
    client = app.test_client()
    try:
        response = client.post("/api/v4/session/token", json={"email": "alice@example.com", "password": "wonderland"})
        tokens = response.get_json()["data"]["token"]
        refreshed = client.post("/api/v4/session/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.get_json()["code"] == 0
        rotated = refreshed.get_json()["data"]
        assert client.delete("/session/token", json={"refresh_token": rotated["refresh_token"]}).status_code == 404
        out = client.delete("/api/v4/session/token", json={"refresh_token": rotated["refresh_token"]})
        assert (out.status_code, out.get_json()) == (200, SIGNED_OUT)
        assert client.delete("/api/v4/session/token/all", json={"refresh_token": "x"}).get_json()["code"] == 40020
        # The back-channel receiver moves with its dialect and keeps its own (OAuth) envelope.
        assert client.post("/oidc/backchannel-logout/demo-idp", data={}).status_code == 404
        big = client.post("/api/v4/oidc/backchannel-logout/demo-idp", data={"logout_token": "x" * 20_000})
        assert (big.status_code, big.get_json()["error"]) == (413, "invalid_request")
        # The client dialect stays at the root.
        login = client.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
        assert login.status_code == 200
    finally:
        get_service(app).close()


def test_every_dialect_can_be_prefixed(database_uri: str, rsa_pem: str) -> None:
    prefixes = {"client": "/c", "descope": "/d/e", "session": "/s", "oauth": "/o"}
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_URL_PREFIXES=__import__("json").dumps(prefixes)))
    try:
        rules = {rule.rule for rule in app.url_map.iter_rules()}
        for path in ("/c/auth/login", "/d/e/v1/auth/logout", "/s/session/token", "/o/oauth/revoke"):
            assert path in rules
        for path in ("/auth/login", "/v1/auth/logout", "/session/token", "/oauth/revoke"):
            assert path not in rules
        assert any(rule.startswith("/d/e/v2/keys/") for rule in rules)
    finally:
        get_service(app).close()


@pytest.mark.parametrize(
    ("value", "setting", "message"),
    [
        ({"sessions": "/api"}, "LOGOUT_URL_PREFIXES", "unknown dialect 'sessions'"),
        ({"session": "api/v4"}, "LOGOUT_URL_PREFIXES['session']", "must be a path that starts with '/'"),
        ({"session": "/api/v4/"}, "LOGOUT_URL_PREFIXES['session']", "does not end with '/'"),
        ({"session": "/"}, "LOGOUT_URL_PREFIXES['session']", "must be a path"),
        ({"session": "//evil"}, "LOGOUT_URL_PREFIXES['session']", "must be a path"),
        ({"session": "/a/../b"}, "LOGOUT_URL_PREFIXES['session']", "must be a path"),
        ({"session": "/a b"}, "LOGOUT_URL_PREFIXES['session']", "must be a path"),
        ({"session": 4}, "LOGOUT_URL_PREFIXES['session']", "must be a path"),
        ({"session": "/api/v4"}, "LOGOUT_URL_PREFIXES['session']", "is inside LOGOUT_PROTECTED_PATHS entry '/api'"),
        ({"oauth": "/api"}, "LOGOUT_URL_PREFIXES['oauth']", "is inside LOGOUT_PROTECTED_PATHS entry '/api'"),
        (["/api"], "LOGOUT_URL_PREFIXES", "must map dialect names"),
        ("{not json", "LOGOUT_URL_PREFIXES", "is not valid JSON"),
    ],
)
def test_url_prefixes_are_validated_at_init(value: Any, setting: str, message: str) -> None:
    from flask_logout import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_config(
            {"LOGOUT_SECRET_KEY": "x" * 64, "LOGOUT_URL_PREFIXES": value, "LOGOUT_PROTECTED_PATHS": ["/api"]},
            default_database_uri="sqlite://",
        )
    assert raised.value.setting == setting


def test_session_http_status_is_validated() -> None:
    from flask_logout import ConfigError, load_config

    with pytest.raises(ConfigError, match="LOGOUT_SESSION_HTTP_STATUS"):
        load_config({"LOGOUT_SECRET_KEY": "x" * 64, "LOGOUT_SESSION_HTTP_STATUS": "maybe"}, default_database_uri="")


def test_sign_in_records_the_device_and_address(client: Any, app: Any) -> None:
    """The session list (live_sessions) shows where each session signed in from."""
    response = client.post(
        "/session/token",
        json={"email": "alice@example.com", "password": "wonderland"},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )
    assert response.get_json()["code"] == 0
    sessions = get_service(app).live_sessions("U-alice")
    assert [(s.user_agent, s.ip) for s in sessions] == [("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "192.0.2.44")]
