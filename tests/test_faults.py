"""Store faults against a real app process: PostgreSQL cut away, then back.

A logout never answers success unless the revocation was stored; validation
keeps going on the replica until the staleness bound, then fails closed;
when the store is back everything works with no restart; and after the app
process is restarted, every revocation that was answered with success holds.
Waiting is by bounded polling, never by asserting a duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import FAST_HASH, INVALID, SECRET
from .faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
STORE_DOWN = {
    "error": {
        "name": "ServiceUnavailableError",
        "code": "SERVICE_UNAVAILABLE",
        "message": "Token store unavailable, try again later",
    }
}


class App:
    """The example app in a process of its own."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "example_app.serve"], cwd=ROOT, env=self.env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        assert port.isdigit(), "the app did not start"
        self.url = f"http://127.0.0.1:{port}"

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def proxied(postgres_uri: str, rsa_pem: str) -> Iterator[tuple[App, FaultProxy]]:
    proxy = FaultProxy()
    uri = postgres_uri.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    assert str(proxy.port) in uri
    env = {
        **os.environ,
        "FLASK_SECRET_KEY": SECRET,
        "FLASK_LOGOUT_PRIVATE_KEY": rsa_pem,
        "FLASK_LOGOUT_DATABASE_URI": uri,
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "FLASK_LOGOUT_PUSH": "false",
        "FLASK_LOGOUT_SYNC_INTERVAL": "0.3",
        "FLASK_LOGOUT_MAX_STALENESS": "1.5",
    }
    app = App(env)
    yield app, proxy
    app.stop()
    proxy.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _until(condition: Any, attempts: int = 200) -> bool:
    for _ in range(attempts):  # bounded: at most ~20 s
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.postgres
def test_store_outage_and_recovery(proxied: tuple[App, FaultProxy]) -> None:
    app, proxy = proxied
    with httpx.Client(base_url=app.url) as http:
        login = http.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
        token = login.json()["data"]["access_token"]
        refresh = login.json()["data"]["refresh_token"]
        session = http.post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
        session_tokens = session.json()["data"]["token"]
        descope = http.post("/v1/auth/password/signin", json={"loginId": "alice@example.com", "password": "wonderland"})
        descope_refresh = descope.json()["refreshJwt"]
        http.cookies.clear()
        assert http.get("/api/me", headers=_bearer(token)).status_code == 200

        proxy.down()
        # Every logout and refresh answers 503 in its dialect's envelope; none says success.
        logout = http.post("/auth/logout", headers=_bearer(token))
        assert (logout.status_code, logout.json()) == (503, STORE_DOWN)
        refreshed = http.post("/auth/refresh", json={"refresh_token": refresh})
        assert (refreshed.status_code, refreshed.json()) == (503, STORE_DOWN)
        signed_out = http.request("DELETE", "/session/token", json={"refresh_token": session_tokens["refresh_token"]})
        assert signed_out.status_code == 503
        assert (signed_out.json()["code"], signed_out.json()["data"]) == (50301, None)
        descope_out = http.post(
            "/v1/auth/logout", headers={"Authorization": f"Bearer P2flasklogoutdemo:{descope_refresh}"}
        )
        assert (descope_out.status_code, descope_out.json()["errorCode"]) == (503, "E013001")
        # Validation rides on the replica, then fails closed past the staleness bound.
        assert _until(lambda: http.get("/api/me", headers=_bearer(token)).status_code == 503)
        assert http.get("/api/me", headers=_bearer(token)).json() == STORE_DOWN

        proxy.up()
        # No restart: the store is back, so is everything.
        assert _until(lambda: http.get("/api/me", headers=_bearer(token)).status_code == 200)
        assert http.post("/auth/logout", headers=_bearer(token)).json() == {
            "success": True,
            "data": {"message": "Successfully logged out"},
        }
        assert http.request(
            "DELETE", "/session/token", json={"refresh_token": session_tokens["refresh_token"]}
        ).json() == {"data": None, "code": 0, "msg": ""}
        assert (
            http.post(
                "/v1/auth/logout", headers={"Authorization": f"Bearer P2flasklogoutdemo:{descope_refresh}"}
            ).status_code
            == 200
        )

    app.restart()  # nothing answered with success may be lost
    with httpx.Client(base_url=app.url) as http:
        assert (
            http.get("/api/me", headers=_bearer(token)).status_code,
            http.get("/api/me", headers=_bearer(token)).json(),
        ) == (401, INVALID)
        assert http.get("/api/me", headers=_bearer(session_tokens["access_token"])).status_code == 401
        assert (
            http.post("/session/token/refresh", json={"refresh_token": session_tokens["refresh_token"]}).json()["code"]
            == 40032
        )
        again = http.post("/v1/auth/refresh", headers={"Authorization": f"Bearer P2flasklogoutdemo:{descope_refresh}"})
        assert (again.status_code, again.json()["errorCode"]) == (401, "E061006")
