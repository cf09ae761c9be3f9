"""A logout made through one process reaches another process at once.

Two real server processes share one store. A token is used on process B
(so B serves it from its hot path), the client logs out through process A,
and B must refuse the token: by push (PostgreSQL LISTEN/NOTIFY, or Redis
pub/sub on any store) or by polling. The test waits by polling B a bounded number of times; it asserts
the outcome, never a duration (durations are measured in benchmarks/).
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

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """One example-app server process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "example_app.serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), f"worker did not start: {line!r}"
        self.url = f"http://127.0.0.1:{line.strip()}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _workers(
    database_uri: str, rsa_pem: str, *, push: bool, interval: float, **extra: str
) -> Iterator[tuple[Worker, Worker]]:
    env = {
        **{f"FLASK_{name}": value for name, value in extra.items()},
        **os.environ,
        "FLASK_SECRET_KEY": SECRET,
        "FLASK_LOGOUT_PRIVATE_KEY": rsa_pem,
        "FLASK_LOGOUT_DATABASE_URI": database_uri,
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "FLASK_LOGOUT_PUSH": "true" if push else "false",
        "FLASK_LOGOUT_SYNC_INTERVAL": str(interval),
    }
    first = Worker(env)
    second = Worker(env)
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def polling_workers(database_uri: str, rsa_pem: str) -> Iterator[tuple[Worker, Worker]]:
    """Two processes that learn of revocations by polling every 0.2 s (SQLite and PostgreSQL)."""
    yield from _workers(database_uri, rsa_pem, push=False, interval=0.2)


@pytest.fixture
def pushed_workers(postgres_uri: str, rsa_pem: str) -> Iterator[tuple[Worker, Worker]]:
    """Two processes on PostgreSQL that poll only every 10 minutes: LISTEN/NOTIFY must carry it."""
    yield from _workers(postgres_uri, rsa_pem, push=True, interval=600.0)


@pytest.fixture
def redis_workers(database_uri: str, rsa_pem: str, redis_settings: dict[str, str]) -> Iterator[tuple[Worker, Worker]]:
    """Two processes that poll only every 10 minutes, on any store: Redis pub/sub must carry it."""
    yield from _workers(database_uri, rsa_pem, push=True, interval=600.0, **redis_settings)


def _until_refused(url: str, token: str, attempts: int = 300) -> Any:
    response = None
    for _ in range(attempts):  # bounded: at most ~30 s, normally a few tries
        response = httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            return response
        time.sleep(0.1)
    return response


def test_polling_carries_a_logout_to_the_other_process(polling_workers: tuple[Worker, Worker]) -> None:
    _logout_on_one_refused_on_other(*polling_workers)


@pytest.mark.postgres
def test_push_carries_a_logout_to_the_other_process(pushed_workers: tuple[Worker, Worker]) -> None:
    _logout_on_one_refused_on_other(*pushed_workers)


@pytest.mark.redis
def test_redis_pubsub_carries_a_logout_to_the_other_process(redis_workers: tuple[Worker, Worker]) -> None:
    _logout_on_one_refused_on_other(*redis_workers)


def _logout_on_one_refused_on_other(a: Worker, b: Worker) -> None:
    login = httpx.post(f"{a.url}/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
    token = login.json()["data"]["access_token"]
    for _ in range(2):
        assert httpx.get(f"{b.url}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    logout = httpx.post(f"{a.url}/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.json() == {"success": True, "data": {"message": "Successfully logged out"}}
    refused = _until_refused(b.url, token)
    assert (refused.status_code, refused.json()) == (401, INVALID)
    # And the session dialect: a family signed out on B is refused on A.
    tokens = httpx.post(f"{b.url}/session/token", json={"email": "alice@example.com", "password": "wonderland"})
    pair = tokens.json()["data"]["token"]
    assert httpx.get(f"{a.url}/api/me", headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code == 200
    signed_out = httpx.request("DELETE", f"{b.url}/session/token", json={"refresh_token": pair["refresh_token"]})
    assert signed_out.json() == {"data": None, "code": 0, "msg": ""}
    assert _until_refused(a.url, pair["access_token"]).status_code == 401
