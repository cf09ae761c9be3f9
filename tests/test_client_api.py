"""The client-API dialect (``POST /auth/login``, ``/auth/refresh``, ``/auth/logout``).

Every row of the API document's error table, with exact status and body, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_logout import LogoutService

from .conftest import (
    EXPIRED,
    FORBIDDEN,
    INVALID,
    MISSING,
    SECRET,
    bad_request,
    bearer,
    error,
)

LOGGED_OUT = {"success": True, "data": {"message": "Successfully logged out"}}
BAD_CREDENTIALS = error("UnauthorizedError", "UNAUTHORIZED", "Invalid client credentials")


def test_login_answers_the_documented_token_shape(client: Any, service: LogoutService) -> None:
    response = client.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 3600
    assert response.headers["Cache-Control"] == "no-store"
    access, _ = service.verify(data["access_token"])
    refresh, _ = service.verify(data["refresh_token"], expected_type="refresh")
    assert (access.cid, access.sub, access.typ, access.exp - access.iat) == (
        "demo-client",
        "demo-client",
        "access",
        3600,
    )
    assert (refresh.typ, refresh.exp - refresh.iat) == ("refresh", 30 * 24 * 3600)
    assert access.fid == refresh.fid


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("demo-client", "wrong-secret"), ("no-such-client", "demo-secret"), ("demo-client", "DEMO-SECRET")],
)
def test_login_with_wrong_credentials_is_401(client: Any, client_id: str, secret: str) -> None:
    response = client.post("/auth/login", json={"client_id": client_id, "client_secret": secret})
    assert response.status_code == 401
    assert response.get_json() == BAD_CREDENTIALS


def test_login_from_outside_the_whitelist_is_403(client: Any) -> None:
    response = client.post("/auth/login", json={"client_id": "locked-client", "client_secret": "locked-secret"})
    assert response.status_code == 403
    assert response.get_json() == FORBIDDEN


def test_login_from_inside_the_whitelist_works(client: Any) -> None:
    response = client.post(
        "/auth/login",
        json={"client_id": "locked-client", "client_secret": "locked-secret"},
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body must be a JSON object"),
        (b"", "Request body must be a JSON object"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"client_id"', "Request body must be a JSON object"),
        (b'{"client_secret": "x"}', "Missing required field: client_id"),
        (b'{"client_id": "demo-client"}', "Missing required field: client_secret"),
        (b'{"client_id": 5, "client_secret": "x"}', "Field client_id must be a non-empty string"),
        (b'{"client_id": "demo-client", "client_secret": ["x"]}', "Field client_secret must be a non-empty string"),
        (b'{"client_id": "", "client_secret": "x"}', "Field client_id must be a non-empty string"),
        (b"\xff\xfe\x00garbage", "Request body must be a JSON object"),
    ],
)
def test_login_with_malformed_body_is_400(client: Any, body: bytes, message: str) -> None:
    response = client.post("/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == bad_request(message)


def test_logout_revokes_every_token_of_the_client(client: Any, login: Any) -> None:
    first, second = login(), login()
    response = client.post("/auth/logout", headers=bearer(first["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == LOGGED_OUT
    for tokens in (first, second):
        me = client.get("/api/me", headers=bearer(tokens["access_token"]))
        assert (me.status_code, me.get_json()) == (401, INVALID)
        refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (refreshed.status_code, refreshed.get_json()) == (401, INVALID)
    again = client.post("/auth/logout", headers=bearer(first["access_token"]))
    assert (again.status_code, again.get_json()) == (401, INVALID)


def test_login_after_logout_gives_working_tokens(client: Any, login: Any) -> None:
    old = login()
    assert client.post("/auth/logout", headers=bearer(old["access_token"])).status_code == 200
    new = login()
    me = client.get("/api/me", headers=bearer(new["access_token"]))
    assert me.status_code == 200
    assert me.get_json() == {"success": True, "data": {"client_id": "demo-client", "sub": "demo-client"}}


def test_logout_of_one_client_leaves_other_clients_valid(client: Any, login: Any) -> None:
    demo, other = login(), login("other-client", "other-secret")
    assert client.post("/auth/logout", headers=bearer(demo["access_token"])).status_code == 200
    me = client.get("/api/me", headers=bearer(other["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["data"]["client_id"] == "other-client"
    refreshed = client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refreshed.status_code == 200


def test_logout_without_authorization_header(client: Any) -> None:
    response = client.post("/auth/logout")
    assert response.status_code == 401
    assert response.get_json() == MISSING
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    ["Basic ZGVtbzpkZW1v", "Bearer", "Bearer a b", "Token abc", "Bearer not-a-jwt", "Bearer a.b.c", "bearer"],
)
def test_logout_with_malformed_authorization_is_invalid_token(client: Any, header: str) -> None:
    response = client.post("/auth/logout", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json() == INVALID


def test_logout_with_bad_signature(client: Any, login: Any) -> None:
    token = login()["access_token"]
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    response = client.post("/auth/logout", headers=bearer(forged))
    assert (response.status_code, response.get_json()) == (401, INVALID)


def test_logout_with_refresh_token_is_invalid(client: Any, login: Any) -> None:
    response = client.post("/auth/logout", headers=bearer(login()["refresh_token"]))
    assert (response.status_code, response.get_json()) == (401, INVALID)


def test_logout_with_token_unknown_to_the_store(client: Any, service: LogoutService) -> None:
    """Correctly signed, well formed, but never issued: "does not exist in the system"."""
    now = 2_000_000_000
    forged = service.codec.encode(
        {
            "jti": "never-issued",
            "typ": "access",
            "sub": "demo-client",
            "cid": "demo-client",
            "fid": "f",
            "gen": 0,
            "iat": now - 10,
            "exp": now + 3600,
        }
    )
    response = client.post("/auth/logout", headers=bearer(forged))
    assert (response.status_code, response.get_json()) == (401, INVALID)


def test_logout_with_expired_token(client: Any, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = login()["access_token"]
    import jwt

    import flask_logout.service as service_module

    # Relative to the token's own exp, not to the clock: a second boundary
    # crossed between login and the check must not move the edge.
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(service_module, "now", lambda: expires)
    response = client.post("/auth/logout", headers=bearer(token))
    assert (response.status_code, response.get_json()) == (401, EXPIRED)
    monkeypatch.setattr(service_module, "now", lambda: expires - 1)
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_logout_from_outside_the_whitelist_is_403_and_revokes_nothing(client: Any, login: Any) -> None:
    token = login()["access_token"]
    response = client.post("/auth/logout", headers=bearer(token), environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert (response.status_code, response.get_json()) == (403, FORBIDDEN)
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_ipv6_whitelist(client: Any, login: Any) -> None:
    v6 = login("v6-client", "v6-secret", ip="2001:db8::42")
    inside = client.get("/api/me", headers=bearer(v6["access_token"]), environ_base={"REMOTE_ADDR": "2001:db8:ffff::1"})
    assert inside.status_code == 200
    outside = client.get("/api/me", headers=bearer(v6["access_token"]), environ_base={"REMOTE_ADDR": "2001:db9::1"})
    assert (outside.status_code, outside.get_json()) == (403, FORBIDDEN)
    v4 = client.get("/api/me", headers=bearer(v6["access_token"]), environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert (v4.status_code, v4.get_json()) == (403, FORBIDDEN)
    demo = login()  # whitelist 127.0.0.0/8 and ::1/128
    loopback6 = client.get("/api/me", headers=bearer(demo["access_token"]), environ_base={"REMOTE_ADDR": "::1"})
    assert loopback6.status_code == 200


def test_empty_whitelist_allows_every_address(client: Any, login: Any) -> None:
    other = login("other-client", "other-secret", ip="198.51.100.1")
    for ip in ("8.8.8.8", "2001:db8::1", "10.1.2.3"):
        response = client.get("/api/me", headers=bearer(other["access_token"]), environ_base={"REMOTE_ADDR": ip})
        assert response.status_code == 200


def test_refresh_rotates_the_refresh_token(client: Any, login: Any) -> None:
    first = login()
    response = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    second = body["data"]
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert (second["token_type"], second["expires_in"]) == ("Bearer", 3600)
    assert second["refresh_token"] != first["refresh_token"]
    reused = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (reused.status_code, reused.get_json()) == (401, INVALID)
    assert client.get("/api/me", headers=bearer(second["access_token"])).status_code == 200
    third = client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


def test_refresh_errors(client: Any, login: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = login()
    with_access = client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert (with_access.status_code, with_access.get_json()) == (401, INVALID)
    garbage = client.post("/auth/refresh", json={"refresh_token": "garbage"})
    assert (garbage.status_code, garbage.get_json()) == (401, INVALID)
    missing = client.post("/auth/refresh", json={})
    assert (missing.status_code, missing.get_json()) == (400, bad_request("Missing required field: refresh_token"))
    wrong_type = client.post("/auth/refresh", json={"refresh_token": 12})
    assert wrong_type.status_code == 400
    assert wrong_type.get_json() == bad_request("Field refresh_token must be a non-empty string")
    not_json = client.post("/auth/refresh", data="refresh_token=x", content_type="application/x-www-form-urlencoded")
    assert (not_json.status_code, not_json.get_json()) == (400, bad_request("Request body must be a JSON object"))
    outside = client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, environ_base={"REMOTE_ADDR": "192.0.2.1"}
    )
    assert (outside.status_code, outside.get_json()) == (403, FORBIDDEN)
    import flask_logout.service as service_module

    real_now = service_module.now
    monkeypatch.setattr(service_module, "now", lambda: real_now() + 31 * 24 * 3600)
    expired = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert (expired.status_code, expired.get_json()) == (401, EXPIRED)


def test_token_signed_with_another_key_is_invalid(client: Any, database_uri: str) -> None:
    from .conftest import build_app

    other = build_app(database_uri, LOGOUT_SECRET_KEY=SECRET[::-1]).test_client()
    foreign = other.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
    token = foreign.get_json()["data"]["access_token"]
    response = client.get("/api/me", headers=bearer(token))
    assert (response.status_code, response.get_json()) == (401, INVALID)


def test_store_failure_answers_503_never_success(client: Any, login: Any, service: LogoutService) -> None:
    token = login()["access_token"]
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

    event.listen(service.store.engine, "before_cursor_execute", fail)
    try:
        response = client.post("/auth/logout", headers=bearer(token))
        assert response.status_code == 503
        assert response.get_json() == error(
            "ServiceUnavailableError", "SERVICE_UNAVAILABLE", "Token store unavailable, try again later"
        )
        me = client.get("/api/me", headers=bearer(token))
        assert me.status_code == 503
    finally:
        event.remove(service.store.engine, "before_cursor_execute", fail)
    assert client.get("/api/me", headers=bearer(token)).status_code == 200
    assert client.post("/auth/logout", headers=bearer(token)).get_json() == LOGGED_OUT


def test_get_on_logout_is_not_a_logout(client: Any, login: Any) -> None:
    token = login()["access_token"]
    assert client.get("/auth/logout", headers=bearer(token)).status_code == 405
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_impossible_client_ids_never_reach_the_store(client: Any) -> None:
    """PostgreSQL cannot store NUL, nor do ids run that long: neither may turn into a 503."""
    nul = client.post("/auth/login", json={"client_id": "demo\u0000client", "client_secret": "demo-secret"})
    assert (nul.status_code, nul.get_json()) == (400, bad_request("Field client_id must be valid text (UTF-8, no NUL)"))
    long = client.post("/auth/login", json={"client_id": "x" * 201, "client_secret": "demo-secret"})
    assert (long.status_code, long.get_json()) == (400, bad_request("Field client_id must be at most 200 characters"))
    secret = client.post("/auth/login", json={"client_id": "demo-client", "client_secret": "s" * 257})
    assert (secret.status_code, secret.get_json()) == (
        400,
        bad_request("Field client_secret must be at most 256 characters"),
    )
    longest = client.post("/auth/login", json={"client_id": "x" * 200, "client_secret": "s" * 256})
    assert (longest.status_code, longest.get_json()) == (401, BAD_CREDENTIALS)
