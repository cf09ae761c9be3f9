"""API clients over their whole life, over real HTTP: deleted and replaced
clients, cheap refusals of unknown clients, body limits on every endpoint, the
user_loader on every refresh path, and the whitelist on every use of a client
token.

Each test here failed on the code before its fix (see docs/security.md,
"Found and fixed").
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import werkzeug.security

from example_app import create_app
from flask_logout import LogoutService, get_service
from flask_logout.errors import TokenRevoked
from flask_logout.extension import get_manager

from .conftest import (
    FORBIDDEN,
    INVALID,
    LOCKED,
    LiveServer,
    bad_request,
    bearer,
    build_app,
    error,
    example_settings,
)

ALLOWED = {"X-Forwarded-For": "203.0.113.9"}  # inside LOCKED's whitelist (one trusted proxy)
#: The session dialect answers Cloudreve's codes with HTTP 200 (docs/session.md).
REVOKED_SESSION = {"data": None, "code": 40020, "msg": "Failed to issue token pair"}
OUTSIDE_SESSION = {"data": None, "code": 403, "msg": "IP address not authorized"}


def _session_body(response: httpx.Response) -> dict[str, Any]:
    """The session envelope without its random correlation id (checked to be a UUID)."""
    body = dict(response.json())
    uuid.UUID(body.pop("correlation_id"))
    assert response.headers["X-Correlation-ID"]
    return body


@pytest.fixture
def live(database_uri: str) -> Iterator[LiveServer]:
    """The test app (four API clients) with the client and session dialects, behind one trusted proxy."""
    app = build_app(
        database_uri,
        LOGOUT_DIALECTS=["client", "session"],
        LOGOUT_TRUSTED_PROXIES=1,
        LOGOUT_REUSE_GRACE_SECONDS=0,  # a rotated refresh token presented again is reuse at once
    )
    server = LiveServer(app)
    yield server
    server.stop()
    get_service(app).close()


def _service(server: LiveServer) -> LogoutService:
    return get_service(server.app)


def _login(http: httpx.Client, client_id: str, secret: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = http.post("/auth/login", json={"client_id": client_id, "client_secret": secret}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# -- item 2: a deleted or replaced client's tokens stop working ---------------


def test_deleted_client_tokens_stop_working_and_stay_dead(live: LiveServer) -> None:
    service = _service(live)
    with httpx.Client(base_url=live.url) as http:
        hot = _login(http, "other-client", "other-secret")
        cold = _login(http, "other-client", "other-secret")
        assert http.get("/api/me", headers=bearer(hot["access_token"])).status_code == 200  # now on the hot path
        assert service.delete_client("other-client") is True
        for tokens in (hot, cold):  # hot path (replica) and cold path (store) alike
            me = http.get("/api/me", headers=bearer(tokens["access_token"]))
            assert (me.status_code, me.json()) == (401, INVALID)
            refreshed = http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert (refreshed.status_code, refreshed.json()) == (401, INVALID)
        gone = http.post("/auth/login", json={"client_id": "other-client", "client_secret": "other-secret"})
        assert gone.status_code == 401
        # Created again under the same id, with the same secret: the old tokens stay dead.
        service.register_client("other-client", "other-secret")
        for tokens in (hot, cold):
            assert http.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 401
            assert http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
        fresh = _login(http, "other-client", "other-secret")
        assert http.get("/api/me", headers=bearer(fresh["access_token"])).status_code == 200
    assert service.delete_client("no-such-client") is False


def test_token_of_a_missing_client_row_is_refused(live: LiveServer) -> None:
    """Fail closed: a client token whose client row is gone (however it went) is refused."""
    import sqlalchemy as sa

    service = _service(live)
    with httpx.Client(base_url=live.url) as http:
        tokens = _login(http, "other-client", "other-secret")
        with service.store.transaction() as conn:  # behind the service's back: no revocation, no log entry
            conn.execute(sa.text("DELETE FROM logout_clients WHERE client_id = 'other-client'"))
        me = http.get("/api/me", headers=bearer(tokens["access_token"]))
        assert (me.status_code, me.json()) == (401, INVALID)
        refreshed = http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (refreshed.status_code, refreshed.json()) == (401, INVALID)


def test_deletion_reaches_another_process_replica(database_uri: str) -> None:
    """Another worker that holds the token on its hot path refuses it after its next sync."""
    from .conftest import base_settings

    settings = base_settings(database_uri, LOGOUT_SYNC_INTERVAL=600, LOGOUT_PUSH=False)
    here, there = LogoutService.from_settings(settings), LogoutService.from_settings(settings)
    try:
        here.register_client("api", "api-secret")
        pair = here.login_client("api", "api-secret")
        environ = {"HTTP_AUTHORIZATION": f"Bearer {pair.access_token}", "REMOTE_ADDR": "127.0.0.1"}
        assert there.authenticate(environ).cid == "api"  # cached on the hot path there
        here.delete_client("api")
        there.replica.sync()
        with pytest.raises(TokenRevoked) as refused:
            there.authenticate(environ)
        assert refused.value.detail == "revoked (replica)"
    finally:
        here.close()
        there.close()


def test_new_secret_revokes_the_clients_tokens_same_secret_does_not(live: LiveServer) -> None:
    service = _service(live)
    with httpx.Client(base_url=live.url) as http:
        before = _login(http, "other-client", "other-secret")
        assert http.get("/api/me", headers=bearer(before["access_token"])).status_code == 200
        service.register_client("other-client", "other-secret", ["0.0.0.0/0"])  # same secret, new whitelist
        assert http.get("/api/me", headers=bearer(before["access_token"])).status_code == 200
        service.register_client("other-client", "rotated-secret")  # the secret leaked: replaced
        me = http.get("/api/me", headers=bearer(before["access_token"]))
        assert (me.status_code, me.json()) == (401, INVALID)
        refreshed = http.post("/auth/refresh", json={"refresh_token": before["refresh_token"]})
        assert (refreshed.status_code, refreshed.json()) == (401, INVALID)
        old = http.post("/auth/login", json={"client_id": "other-client", "client_secret": "other-secret"})
        assert old.status_code == 401
        after = _login(http, "other-client", "rotated-secret")
        assert http.get("/api/me", headers=bearer(after["access_token"])).status_code == 200


# -- item 5: anonymous requests are cheap --------------------------------------


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts scrypt runs and werkzeug password-hash checks."""
    calls = {"scrypt": 0, "check_password_hash": 0}
    real_scrypt, real_check = hashlib.scrypt, werkzeug.security.check_password_hash

    def scrypt(*args: Any, **kwargs: Any) -> bytes:
        calls["scrypt"] += 1
        return real_scrypt(*args, **kwargs)

    def check(*args: Any, **kwargs: Any) -> bool:
        calls["check_password_hash"] += 1
        return real_check(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    monkeypatch.setattr("flask_logout.service.check_password_hash", check)
    return calls


def test_unknown_client_logins_run_no_password_hash(database_uri: str, hash_calls: dict[str, int]) -> None:
    """16 logins with unknown ids run neither scrypt nor any werkzeug hash (hmac-sha256 is the default)."""
    from flask_logout.config import DEFAULT_SECRET_HASH_METHOD

    assert DEFAULT_SECRET_HASH_METHOD == "hmac-sha256"
    app = build_app(database_uri, LOGOUT_CLIENT_SECRET_HASH=DEFAULT_SECRET_HASH_METHOD)
    server = LiveServer(app)
    try:
        with httpx.Client(base_url=server.url) as http:
            hash_calls.update(scrypt=0, check_password_hash=0)
            for i in range(16):
                response = http.post("/auth/login", json={"client_id": f"junk-{i}", "client_secret": "x" * 40})
                assert (response.status_code, response.json()) == (
                    401,
                    error("UnauthorizedError", "UNAUTHORIZED", "Invalid client credentials"),
                )
            assert hash_calls == {"scrypt": 0, "check_password_hash": 0}
            assert _login(http, "demo-client", "demo-secret")["token_type"] == "Bearer"
        stored = get_service(app).store.get_client("demo-client")
        assert stored is not None and stored.secret_hash.startswith("hmac-sha256$")
        assert len(stored.secret_hash) == len("hmac-sha256$") + 64
    finally:
        server.stop()
        get_service(app).close()


def test_unknown_client_revocations_run_no_password_hash(
    database_uri: str, rsa_pem: str, hash_calls: dict[str, int]
) -> None:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_CLIENT_SECRET_HASH="hmac-sha256"))
    server = LiveServer(app)
    try:
        _revoke_with_unknown_ids(server)
    finally:
        server.stop()
        get_service(app).close()
    assert hash_calls == {"scrypt": 0, "check_password_hash": 0}


def _revoke_with_unknown_ids(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        for i in range(16):
            response = http.post("/oauth/revoke", auth=(f"junk-{i}", "x" * 40), data={"token": "t"})
            assert (response.status_code, response.json()) == (
                401,
                {"error": "invalid_client", "error_description": "client authentication failed"},
            )


@pytest.fixture
def live_hmac(database_uri: str) -> Iterator[LiveServer]:
    """The test app with the default hash (conftest picks a werkzeug method)."""
    app = build_app(database_uri, LOGOUT_CLIENT_SECRET_HASH="hmac-sha256")
    server = LiveServer(app)
    yield server
    server.stop()
    get_service(app).close()


@pytest.mark.parametrize("legacy", ["scrypt", "pbkdf2:sha256:1000"])
def test_werkzeug_hashes_keep_working_and_are_rehashed_on_login(
    live_hmac: LiveServer, legacy: str, hash_calls: dict[str, int]
) -> None:
    service = _service(live_hmac)
    service.store.put_client("legacy", werkzeug.security.generate_password_hash("legacy-secret", method=legacy), [])
    with httpx.Client(base_url=live_hmac.url) as http:
        wrong = http.post("/auth/login", json={"client_id": "legacy", "client_secret": "wrong"})
        assert wrong.status_code == 401
        record = service.store.get_client("legacy")
        assert record is not None and record.secret_hash.startswith(legacy.split(":")[0] + ":")  # unchanged
        hash_calls.update(scrypt=0, check_password_hash=0)
        _login(http, "legacy", "legacy-secret")
        assert hash_calls["check_password_hash"] == 1
        record = service.store.get_client("legacy")
        assert record is not None and record.secret_hash == service.hash_secret("legacy-secret")
        hash_calls.update(scrypt=0, check_password_hash=0)
        _login(http, "legacy", "legacy-secret")  # now the fast form
        assert hash_calls == {"scrypt": 0, "check_password_hash": 0}


def _all_endpoints(project_id: str) -> list[tuple[str, str, dict[str, str], int, dict[str, Any] | None]]:
    """(method, path, headers, status, body) of every library endpoint's answer to a body over 16 KB."""
    client = error("PayloadTooLargeError", "PAYLOAD_TOO_LARGE", "Request body must be at most 16384 bytes")
    descope = {
        "errorCode": "E011001",
        "errorDescription": "Bad request",
        "errorMessage": "The request body must be at most 16384 bytes",
    }
    oauth = {"error": "invalid_request", "error_description": "the request body must be at most 16384 bytes"}
    session = {"data": None, "code": 40001, "msg": "Request body must be at most 16384 bytes"}
    auth = {"Authorization": f"Bearer {project_id}:x"}
    return [
        ("POST", "/auth/login", {}, 413, client),
        ("POST", "/auth/refresh", {}, 413, client),
        ("POST", "/auth/logout", {}, 413, client),
        ("POST", "/v1/auth/logout", auth, 400, descope),
        ("POST", "/v1/auth/logoutall", auth, 400, descope),
        ("POST", "/v1/auth/refresh", auth, 400, descope),
        ("POST", "/v1/auth/password/signin", {}, 400, descope),
        ("POST", "/session/token", {}, 200, session),
        ("POST", "/session/token/refresh", {}, 200, session),
        ("DELETE", "/session/token", {}, 200, session),
        ("DELETE", "/session/token/all", {}, 200, session),
        ("POST", "/oidc/backchannel-logout/demo-idp", {}, 413, oauth),
        ("POST", "/oauth/revoke", {}, 413, oauth),
    ]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_every_endpoint_refuses_a_body_over_16_kb(live_example: LiveServer, chunked: bool) -> None:
    from example_app import PROJECT_ID

    body = b'{"refresh_token": "' + b"a" * (17 * 1024) + b'"}'
    with httpx.Client(base_url=live_example.url, timeout=30) as http:
        for method, path, headers, status, expected in _all_endpoints(PROJECT_ID):
            content: Any = iter([body[:8000], body[8000:]]) if chunked else body
            response = http.request(
                method, path, content=content, headers={"Content-Type": "application/json", **headers}
            )
            assert "chunked" in response.request.headers.get("Transfer-Encoding", "") or not chunked
            got = response.json()
            if path.startswith("/session"):
                got = _session_body(response)
            assert (path, response.status_code, got) == (path, status, expected)
            assert response.headers["Cache-Control"] == "no-store"
        # A body of exactly 16384 bytes is read as usual, chunked or not.
        exact = b'{"refresh_token": "' + b"a" * (16384 - 21) + b'"}'
        assert len(exact) == 16384
        content = iter([exact[:8000], exact[8000:]]) if chunked else exact
        small = http.post("/auth/refresh", content=content, headers={"Content-Type": "application/json"})
        assert (small.status_code, small.json()) == (401, INVALID)


# -- item 7: every refresh path asks the user_loader -------------------------


@pytest.fixture
def example(database_uri: str, rsa_pem: str) -> Iterator[LiveServer]:
    app = create_app(example_settings(database_uri, rsa_pem))
    server = LiveServer(app)
    yield server
    server.stop()
    get_service(app).close()


def _sign_in(http: httpx.Client) -> dict[str, str]:
    response = http.post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
    assert (response.status_code, response.json()["code"]) == (200, 0)
    return response.json()["data"]["token"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", ["/session/token/refresh", "/auth/refresh"])
def test_refresh_of_a_deleted_user_is_refused_and_ends_the_session(example: LiveServer, path: str) -> None:
    manager = get_manager(example.app)
    with httpx.Client(base_url=example.url) as http:
        tokens = _sign_in(http)
        first = http.post(path, json={"refresh_token": tokens["refresh_token"]})
        assert first.status_code == 200 and first.json().get("code", 0) == 0
        tokens = _sign_in(http)
        real_loader = manager.load_user
        manager.load_user = lambda user_id: None  # the application deleted the user
        try:
            response = http.post(path, json={"refresh_token": tokens["refresh_token"]})
        finally:
            manager.load_user = real_loader
        if path == "/auth/refresh":
            assert (response.status_code, response.json()) == (401, INVALID)
        else:
            assert (response.status_code, _session_body(response)) == (200, REVOKED_SESSION)
        # The session is over, even once the user is back.
        me = http.get("/api/me", headers=bearer(tokens["access_token"]))
        assert (me.status_code, me.json()) == (401, INVALID)
        again = http.post(path, json={"refresh_token": tokens["refresh_token"]})
        if path == "/auth/refresh":
            assert again.status_code == 401
        else:
            assert (again.status_code, _session_body(again)) == (200, REVOKED_SESSION)


def test_client_tokens_are_not_passed_to_the_user_loader(example: LiveServer) -> None:
    manager = get_manager(example.app)
    seen: list[str] = []
    manager.load_user = lambda user_id: seen.append(user_id)  # type: ignore[func-returns-value]
    with httpx.Client(base_url=example.url) as http:
        tokens = _login(http, "demo-client", "demo-secret")
        refreshed = http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
    assert seen == []


# -- item 8: the whitelist applies to every use of a client token ----------


def test_locked_client_sign_out_from_outside_changes_nothing(live: LiveServer) -> None:
    """DELETE /session/token with a LOCKED client's refresh token from 127.0.0.1."""
    service = _service(live)
    assert service.config.reuse_grace == 0
    with httpx.Client(base_url=live.url) as http:
        first = _login(http, *LOCKED[:2], headers=ALLOWED)
        second = http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers=ALLOWED)
        assert second.status_code == 200
        current = second.json()["data"]
        # The live token, and the rotated one (reuse detection's trigger), from outside the whitelist:
        for token in (current["refresh_token"], first["refresh_token"]):
            out = http.request("DELETE", "/session/token", json={"refresh_token": token})
            assert (out.status_code, _session_body(out)) == (200, OUTSIDE_SESSION)
            refresh = http.post("/session/token/refresh", json={"refresh_token": token})
            assert (refresh.status_code, _session_body(refresh)) == (200, OUTSIDE_SESSION)
            client_api = http.post("/auth/refresh", json={"refresh_token": token})
            assert (client_api.status_code, client_api.json()) == (403, FORBIDDEN)
        # Nothing changed: the family lives and the token refreshes from inside.
        assert len(service.live_sessions(LOCKED[0], client_id=LOCKED[0])) == 1
        me = http.get("/api/me", headers={**bearer(current["access_token"]), **ALLOWED})
        assert me.status_code == 200
        refreshed = http.post("/auth/refresh", json={"refresh_token": current["refresh_token"]}, headers=ALLOWED)
        assert refreshed.status_code == 200
        # And from inside, sign-out works.
        signed_out = http.request(
            "DELETE",
            "/session/token",
            json={"refresh_token": refreshed.json()["data"]["refresh_token"]},
            headers=ALLOWED,
        )
        assert (signed_out.status_code, signed_out.json()) == (200, {"data": None, "code": 0, "msg": ""})


def test_refreshed_pair_keeps_its_client_binding(live: LiveServer) -> None:
    service = _service(live)
    with httpx.Client(base_url=live.url) as http:
        first = _login(http, *LOCKED[:2], headers=ALLOWED)
        response = http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}, headers=ALLOWED)
        assert response.status_code == 200
        second = response.json()["data"]
        access, _ = service.verify(second["access_token"])
        refresh, _ = service.verify(second["refresh_token"], expected_type="refresh")
        assert (access.cid, access.sub, refresh.cid, refresh.sub) == (LOCKED[0],) * 4
        outside = http.get("/api/me", headers=bearer(second["access_token"]))
        assert (outside.status_code, outside.json()) == (403, FORBIDDEN)
        inside = http.get("/api/me", headers={**bearer(second["access_token"]), **ALLOWED})
        assert inside.json() == {"success": True, "data": {"client_id": LOCKED[0], "sub": LOCKED[0]}}
        # The client's logout-all, made with a token of the first login, ends the refreshed pair.
        other = _login(http, *LOCKED[:2], headers=ALLOWED)
        logout = http.post("/auth/logout", headers={**bearer(other["access_token"]), **ALLOWED})
        assert logout.status_code == 200
        me = http.get("/api/me", headers={**bearer(second["access_token"]), **ALLOWED})
        assert (me.status_code, me.json()) == (401, INVALID)
        again = http.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}, headers=ALLOWED)
        assert (again.status_code, again.json()) == (401, INVALID)


def test_over_long_credentials_are_400(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as http:
        long_id = http.post("/auth/login", json={"client_id": "c" * 201, "client_secret": "s"})
        assert (long_id.status_code, long_id.json()) == (
            400,
            bad_request("Field client_id must be at most 200 characters"),
        )
        long_secret = http.post("/auth/login", json={"client_id": "demo-client", "client_secret": "s" * 257})
        assert (long_secret.status_code, long_secret.json()) == (
            400,
            bad_request("Field client_secret must be at most 256 characters"),
        )


def test_register_client_refuses_over_long_values(live: LiveServer) -> None:
    service = _service(live)
    with pytest.raises(ValueError, match="at most 256 characters"):
        service.register_client("c", "s" * 257)
    with pytest.raises(ValueError, match="at most 200 characters"):
        service.register_client("c" * 201, "s")
