"""The example application: seeded records and the protected resource."""

from __future__ import annotations

from typing import Any

import pytest

from example_app import create_app
from flask_logout import get_service

from .conftest import FAST_HASH, FORBIDDEN, INVALID, MISSING, SECRET, bearer, example_settings


@pytest.fixture
def example(database_uri: str, rsa_pem: str) -> Any:
    app = create_app(example_settings(database_uri, rsa_pem))
    yield app
    get_service(app).close()


def _login(client: Any, client_id: str, secret: str, ip: str = "127.0.0.1") -> Any:
    return client.post(
        "/auth/login", json={"client_id": client_id, "client_secret": secret}, environ_base={"REMOTE_ADDR": ip}
    )


def test_demo_client_flow(example: Any) -> None:
    client = example.test_client()
    login = _login(client, "demo-client", "demo-secret")
    assert login.status_code == 200
    token = login.get_json()["data"]["access_token"]
    me = client.get("/api/me", headers=bearer(token))
    assert (me.status_code, me.get_json()) == (200, {"success": True, "data": {"client_id": "demo-client"}})
    v6 = client.get("/api/me", headers=bearer(token), environ_base={"REMOTE_ADDR": "::1"})
    assert v6.status_code == 200
    assert client.get("/api/me").get_json() == MISSING
    logout = client.post("/auth/logout", headers=bearer(token))
    assert logout.get_json() == {"success": True, "data": {"message": "Successfully logged out"}}
    after = client.get("/api/me", headers=bearer(token))
    assert (after.status_code, after.get_json()) == (401, INVALID)


def test_locked_client_is_refused_from_loopback(example: Any) -> None:
    client = example.test_client()
    refused = _login(client, "locked-client", "locked-secret")
    assert (refused.status_code, refused.get_json()) == (403, FORBIDDEN)
    allowed = _login(client, "locked-client", "locked-secret", ip="203.0.113.10")
    assert allowed.status_code == 200


def test_seeding_is_idempotent(database_uri: str, rsa_pem: str) -> None:
    settings = example_settings(database_uri, rsa_pem)
    first = create_app(settings)
    second = create_app(settings)  # a second worker starting on the same store
    assert _login(second.test_client(), "demo-client", "demo-secret").status_code == 200
    for app in (first, second):
        get_service(app).close()


def test_settings_from_flask_prefixed_environment(
    rsa_pem: str, monkeypatch: pytest.MonkeyPatch, database_uri: str
) -> None:
    monkeypatch.setenv("FLASK_LOGOUT_ACCESS_TOKEN_TTL", "120")
    monkeypatch.setenv("FLASK_LOGOUT_DATABASE_URI", database_uri)
    monkeypatch.setenv("FLASK_LOGOUT_CLIENT_SECRET_HASH", FAST_HASH)
    monkeypatch.setenv("FLASK_LOGOUT_PRIVATE_KEY", rsa_pem)
    monkeypatch.setenv("FLASK_SECRET_KEY", SECRET)
    app = create_app({"TESTING": True})
    login = _login(app.test_client(), "demo-client", "demo-secret")
    assert login.get_json()["data"]["expires_in"] == 120
    get_service(app).close()


def test_instance_secrets_are_made_once(tmp_path: Any) -> None:
    import example_app

    calls = []

    def make() -> str:
        calls.append(1)
        return f"value-{len(calls)}"

    folder = str(tmp_path / "instance")
    assert example_app._instance_file(folder, "k", make) == "value-1"
    assert example_app._instance_file(folder, "k", make) == "value-1"
    assert len(calls) == 1
    assert oct((tmp_path / "instance" / "k").stat().st_mode & 0o777) == "0o600"
