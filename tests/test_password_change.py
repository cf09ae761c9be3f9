"""Sessions end when credentials change (docs/password-change.md).

Two mechanisms: ``LogoutService.credentials_changed(user_id)`` (one write,
replicated to every process's hot path: access tokens too), and the
credential-version hash (``cvh``) in refresh tokens, compared on every
refresh, which also catches a password changed without calling the service.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from example_app import PROJECT_ID, create_app
from flask_logout import get_service
from flask_logout.extension import get_manager

from .conftest import FAST_HASH, SECRET, example_settings

ROOT = Path(__file__).resolve().parent.parent
SIGNED_OUT = {"data": None, "code": 0, "msg": ""}
REFRESH_FAILED = {"data": None, "code": 40020, "msg": "Failed to issue token pair"}


def _body(response: Any) -> Any:
    body = dict(response.json() if isinstance(response, httpx.Response) else response.get_json())
    body.pop("correlation_id", None)
    return body


# -- in one process -----------------------------------------------------------------


@pytest.fixture
def versioned(database_uri: str, rsa_pem: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """The example app with a credential version loader over a dict the test changes."""
    app = create_app(example_settings(database_uri, rsa_pem))
    versions = {"U-alice": "salt-1", "U-sso": "salt-1"}
    get_manager(app).credential_version_loader(versions.get)
    yield app, versions
    get_service(app).close()


def _session(client: Any) -> dict[str, str]:
    answer = client.post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
    assert answer.get_json()["code"] == 0
    return answer.get_json()["data"]["token"]  # type: ignore[no-any-return]


def test_the_refresh_token_carries_a_keyed_hash_of_the_version(versioned: tuple[Any, dict[str, str]]) -> None:
    app, _ = versioned
    tokens = _session(app.test_client())
    refresh_claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    access_claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert "cvh" not in access_claims
    cvh = refresh_claims["cvh"]
    assert isinstance(cvh, str) and len(cvh) == 24
    # Not the version, nor an unkeyed hash of it: the token does not disclose it.
    assert "salt-1" not in tokens["refresh_token"]
    for unkeyed in (b"salt-1", b"U-alice\x00salt-1"):
        assert hashlib.sha256(unkeyed).hexdigest()[:24] != cvh


def test_a_version_change_ends_the_session_at_its_next_refresh_in_every_dialect(
    versioned: tuple[Any, dict[str, str]],
) -> None:
    """The password changed without the service being told: refresh tokens die, and their sessions."""
    app, versions = versioned
    client = app.test_client()
    session = _session(client)
    rotated = client.post("/session/token/refresh", json={"refresh_token": session["refresh_token"]})
    assert rotated.get_json()["code"] == 0  # same version: refreshes, and the successor keeps the hash
    session = rotated.get_json()["data"]
    descope = client.post(
        "/v1/auth/password/signin",
        json={"loginId": "alice@example.com", "password": "wonderland"},
        headers={"Authorization": f"Bearer {PROJECT_ID}"},
    ).get_json()
    client_api = client.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
    versions["U-alice"] = "salt-2"  # e.g. UPDATE users SET password_hash = ... behind the service's back
    me = client.get("/api/me", headers={"Authorization": f"Bearer {session['access_token']}"})
    assert me.status_code == 200  # access tokens live on until the next refresh (or credentials_changed)
    refused = client.post("/session/token/refresh", json={"refresh_token": session["refresh_token"]})
    assert (refused.status_code, _body(refused)) == (200, REFRESH_FAILED)
    me = client.get("/api/me", headers={"Authorization": f"Bearer {session['access_token']}"})
    assert me.status_code == 401  # the refused refresh ended the session
    descope_refused = client.post(
        "/v1/auth/refresh", headers={"Authorization": f"Bearer {PROJECT_ID}:{descope['refreshJwt']}"}
    )
    assert descope_refused.status_code == 401
    # API clients are not end users: their tokens are not versioned.
    refreshed = client.post("/auth/refresh", json={"refresh_token": client_api.get_json()["data"]["refresh_token"]})
    assert refreshed.status_code == 200
    # A sign-in after the change carries the new version and refreshes.
    fresh = _session(client)
    assert client.post("/session/token/refresh", json={"refresh_token": fresh["refresh_token"]}).get_json()["code"] == 0


def test_tokens_without_a_version_and_unknown_versions_are_refused(
    versioned: tuple[Any, dict[str, str]],
) -> None:
    app, versions = versioned
    client = app.test_client()
    service = get_service(app)
    loader = service.credential_version
    service.credential_version = None
    before = _session(client)  # issued before the loader existed: no cvh
    service.credential_version = loader
    refused = client.post("/session/token/refresh", json={"refresh_token": before["refresh_token"]})
    assert _body(refused) == REFRESH_FAILED
    later = _session(client)
    del versions["U-alice"]  # the loader no longer knows a version
    refused = client.post("/session/token/refresh", json={"refresh_token": later["refresh_token"]})
    assert _body(refused) == REFRESH_FAILED


def test_credentials_changed_ends_access_tokens_at_once(versioned: tuple[Any, dict[str, str]]) -> None:
    app, _ = versioned
    client = app.test_client()
    first, second = _session(client), _session(client)
    for tokens in (first, second):
        assert client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
    get_service(app).credentials_changed("U-alice")
    for tokens in (first, second):
        assert client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
        assert _body(client.post("/session/token/refresh", json={"refresh_token": tokens["refresh_token"]})) == (
            REFRESH_FAILED
        )
    assert _session(client)  # signing in again works


def test_a_loader_needs_a_secret_to_key_the_hash(rsa_pem: str, tmp_path: Path) -> None:
    from flask_logout import LogoutService

    service = LogoutService.from_settings(
        {
            "LOGOUT_ALGORITHM": "RS256",
            "LOGOUT_PRIVATE_KEY": rsa_pem,
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
            "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/store.sqlite3",
        }
    )
    try:
        service.issue_tokens("U-alice")  # without a loader: fine
        service.credential_version = lambda _user_id: "v1"
        with pytest.raises(RuntimeError, match="LOGOUT_SECRET_KEY"):
            service.issue_tokens("U-alice")
    finally:
        service.close()


# -- across two processes ------------------------------------------------------------


class Server:
    """One ``tests.credential_server`` process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.credential_server"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), f"server did not start: {line!r}"
        self.url = f"http://127.0.0.1:{line.strip()}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def two_processes(database_uri: str) -> Iterator[tuple[Server, Server, str]]:
    from .credential_server import seed

    seed(database_uri, "alice@example.com", "U-alice", "old-password")
    env = {
        **os.environ,
        "FLASK_SECRET_KEY": SECRET,
        "FLASK_LOGOUT_DATABASE_URI": database_uri,
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "FLASK_LOGOUT_PUSH": "false",  # polling only: works on SQLite and PostgreSQL alike
        "FLASK_LOGOUT_SYNC_INTERVAL": "0.2",
    }
    first = Server(env)
    try:
        second = Server(env)
    except BaseException:
        first.stop()
        raise
    yield first, second, database_uri
    first.stop()
    second.stop()


def _sign_in(server: Server, password: str) -> httpx.Response:
    return httpx.post(f"{server.url}/session/token", json={"email": "alice@example.com", "password": password})


def _me(server: Server, access: str) -> int:
    return httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {access}"}).status_code


def _until_refused(server: Server, access: str, attempts: int = 300) -> int:
    status = 200
    for _ in range(attempts):  # bounded: at most ~30 s, normally a few tries
        status = _me(server, access)
        if status != 200:
            return status
        time.sleep(0.1)
    return status


def test_a_password_change_in_one_process_ends_the_sessions_in_the_other(
    two_processes: tuple[Server, Server, str],
) -> None:
    a, b, _ = two_processes
    on_a = _sign_in(a, "old-password").json()["data"]["token"]
    on_b = _sign_in(b, "old-password").json()["data"]["token"]
    for _ in range(2):  # B serves A's token from its hot path
        assert _me(b, on_a["access_token"]) == 200
    changed = httpx.post(
        f"{a.url}/api/password",
        json={"password": "new-password"},
        headers={"Authorization": f"Bearer {on_a['access_token']}"},
    )
    assert changed.json() == SIGNED_OUT
    assert _until_refused(b, on_a["access_token"]) == 401
    assert _until_refused(b, on_b["access_token"]) == 401
    for server, tokens in ((b, on_a), (a, on_b)):
        refused = httpx.post(f"{server.url}/session/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (refused.status_code, _body(refused)) == (200, REFRESH_FAILED)
    old = _sign_in(b, "old-password")
    assert (old.json()["code"], old.json()["msg"]) == (40080, "Incorrect password or email address")
    fresh = _sign_in(b, "new-password").json()["data"]["token"]
    assert _me(a, fresh["access_token"]) == 200


def test_a_password_changed_in_the_database_ends_sessions_at_the_next_refresh(
    two_processes: tuple[Server, Server, str],
) -> None:
    """No call to the service at all: the credential version catches it, in either process."""
    import sqlalchemy as sa

    from .credential_server import hash_password, users

    a, b, database_uri = two_processes
    tokens = _sign_in(a, "old-password").json()["data"]["token"]
    engine = sa.create_engine(database_uri)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == "U-alice").values(password_hash=hash_password("reset")))
    engine.dispose()
    assert _me(b, tokens["access_token"]) == 200  # documented: the access token lives until then
    refused = httpx.post(f"{b.url}/session/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert (refused.status_code, _body(refused)) == (200, REFRESH_FAILED)
    assert _until_refused(a, tokens["access_token"]) == 401  # the refused refresh ended the session everywhere
