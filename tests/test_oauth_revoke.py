"""RFC 7009 token revocation (``POST /oauth/revoke``), driven by Authlib's OAuth 2 client."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("authlib", reason="Authlib is in the test extra: pip install -e '.[test]'")

from authlib.integrations.requests_client import OAuth2Session

from .conftest import LiveServer


@pytest.fixture(autouse=True)
def _loopback_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # Authlib insists on HTTPS; the test server is plain HTTP on loopback.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")


def _session(client_id: str = "demo-client", secret: str = "demo-secret", method: str = "client_secret_basic") -> Any:
    return OAuth2Session(client_id, secret, revocation_endpoint_auth_method=method)


def _login(server: LiveServer, client_id: str = "demo-client", secret: str = "demo-secret") -> dict[str, str]:
    import httpx

    response = httpx.post(f"{server.url}/auth/login", json={"client_id": client_id, "client_secret": secret})
    assert response.status_code == 200
    return response.json()["data"]  # type: ignore[no-any-return]


def _me(server: LiveServer, access_token: str) -> int:
    import httpx

    return httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {access_token}"}).status_code


def _refresh(server: LiveServer, refresh_token: str) -> int:
    import httpx

    return httpx.post(f"{server.url}/auth/refresh", json={"refresh_token": refresh_token}).status_code


def test_revoking_an_access_token_revokes_that_token(live_example: LiveServer) -> None:
    tokens = _login(live_example)
    response = _session().revoke_token(
        f"{live_example.url}/oauth/revoke", token=tokens["access_token"], token_type_hint="access_token"
    )
    assert (response.status_code, response.content) == (200, b"")
    assert _me(live_example, tokens["access_token"]) == 401
    assert _refresh(live_example, tokens["refresh_token"]) == 200  # the refresh token lives on


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_revoking_a_refresh_token_revokes_its_family(live_example: LiveServer, method: str) -> None:
    tokens = _login(live_example)
    other_session = _login(live_example)
    response = _session(method=method).revoke_token(
        f"{live_example.url}/oauth/revoke", token=tokens["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    assert _refresh(live_example, tokens["refresh_token"]) == 401
    assert _me(live_example, tokens["access_token"]) == 401
    assert _me(live_example, other_session["access_token"]) == 200


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token", "id_token", "made_up"])
def test_hints_are_only_hints(live_example: LiveServer, hint: str | None) -> None:
    tokens = _login(live_example)
    response = _session().revoke_token(
        f"{live_example.url}/oauth/revoke", token=tokens["refresh_token"], token_type_hint=hint
    )
    assert response.status_code == 200
    assert _refresh(live_example, tokens["refresh_token"]) == 401


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c", "x" * 5000])
def test_unknown_tokens_still_answer_200(live_example: LiveServer, token: str) -> None:
    response = _session().revoke_token(f"{live_example.url}/oauth/revoke", token=token)
    assert (response.status_code, response.content) == (200, b"")


def test_already_revoked_token_answers_200(live_example: LiveServer) -> None:
    tokens = _login(live_example)
    session = _session()
    for _ in range(2):
        assert session.revoke_token(f"{live_example.url}/oauth/revoke", token=tokens["access_token"]).status_code == 200


def test_client_authentication_is_required(live_example: LiveServer) -> None:
    import httpx

    tokens = _login(live_example)
    wrong = _session(secret="wrong").revoke_token(f"{live_example.url}/oauth/revoke", token=tokens["access_token"])
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"error": "invalid_client", "error_description": "client authentication failed"},
    )
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="oauth"'
    anonymous = httpx.post(f"{live_example.url}/oauth/revoke", data={"token": tokens["access_token"]})
    assert (anonymous.status_code, anonymous.json()) == (
        401,
        {"error": "invalid_client", "error_description": "client authentication required"},
    )
    assert _me(live_example, tokens["access_token"]) == 200


def test_missing_token_parameter(live_example: LiveServer) -> None:
    import httpx

    response = httpx.post(f"{live_example.url}/oauth/revoke", auth=("demo-client", "demo-secret"), data={})
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_request", "error_description": "the token parameter is required"},
    )


def test_another_clients_token_is_refused(live_example: LiveServer) -> None:
    import httpx

    from flask_logout import get_service

    get_service(live_example.app).register_client("second-client", "second-secret", ["127.0.0.0/8"])
    theirs = _login(live_example, "second-client", "second-secret")
    response = _session().revoke_token(f"{live_example.url}/oauth/revoke", token=theirs["access_token"])
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "the token was issued to another client"},
    )
    assert _me(live_example, theirs["access_token"]) == 200
    both = httpx.post(
        f"{live_example.url}/oauth/revoke",
        auth=("demo-client", "demo-secret"),
        data={"token": "x", "client_secret": "demo-secret"},
    )
    assert (both.status_code, both.json()["error"]) == (400, "invalid_request")


def test_user_session_tokens_can_be_revoked(live_example: LiveServer) -> None:
    import httpx

    signed_in = httpx.post(
        f"{live_example.url}/session/token", json={"email": "alice@example.com", "password": "wonderland"}
    ).json()["data"]["token"]
    response = _session().revoke_token(f"{live_example.url}/oauth/revoke", token=signed_in["refresh_token"])
    assert response.status_code == 200
    refreshed = httpx.post(
        f"{live_example.url}/session/token/refresh", json={"refresh_token": signed_in["refresh_token"]}
    )
    assert (refreshed.status_code, refreshed.json()["code"]) == (200, 40020)
