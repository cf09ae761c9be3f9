"""Concurrency: refreshes and sign-outs of one family racing each other.

After a sign-out has answered success, no token of the family works,
including every token minted by refreshes that raced it. Runs on SQLite and
PostgreSQL; nothing here waits on wall-clock time, only on counts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from example_app import create_app
from flask_logout import get_service
from flask_logout.errors import TokenRevoked

from .conftest import INVALID, example_settings

THREADS = 8
#: The exact refusal of a revoked refresh token (a 503 must never pass for it).
#: Cloudreve's protocol: HTTP 200, code 40020 (CodeCredentialInvalid).
REVOKED = (200, {"data": None, "code": 40020, "msg": "Failed to issue token pair"})


@pytest.fixture
def app(database_uri: str, rsa_pem: str) -> Any:
    app = create_app(example_settings(database_uri, rsa_pem))
    yield app
    get_service(app).close()


def test_sign_out_racing_a_refresh_storm_leaves_nothing_alive(app: Any) -> None:
    first = (
        app.test_client()
        .post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
        .get_json()["data"]["token"]
    )
    bystander = get_service(app).issue_tokens("U-alice")  # another session of the same user
    current = {"refresh": first["refresh_token"]}
    minted: list[dict[str, str]] = [first]
    lock = threading.Lock()
    refreshed_enough = threading.Event()
    stop = threading.Event()

    def refresher() -> None:
        client = app.test_client()
        for _ in range(400):  # bounded, whatever happens
            if stop.is_set():
                return
            with lock:
                token = current["refresh"]
            response = client.post("/session/token/refresh", json={"refresh_token": token})
            if response.get_json()["code"] == 0:  # failures are HTTP 200 too (Cloudreve)
                data = response.get_json()["data"]
                with lock:
                    minted.append(data)
                    current["refresh"] = data["refresh_token"]
                    if len(minted) >= 20:
                        refreshed_enough.set()

    threads = [threading.Thread(target=refresher) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    assert refreshed_enough.wait(timeout=120), "the refreshers made no progress"
    signer = app.test_client()
    answered = None
    for _ in range(200):  # the token may be rotated under us: retry with the newest
        with lock:
            token = current["refresh"]
        response = signer.delete("/session/token", json={"refresh_token": token})
        if response.get_json()["code"] == 0:
            answered = response.get_json()
            break
    assert answered == {"data": None, "code": 0, "msg": ""}
    stop.set()
    for thread in threads:
        thread.join(timeout=120)

    service = get_service(app)
    for tokens in minted:
        for token, typ in ((tokens["access_token"], "access"), (tokens["refresh_token"], "refresh")):
            with pytest.raises(TokenRevoked):
                service.verify(token, expected_type=typ)
    assert service.verify(bystander.access_token)[0].sub == "U-alice"


def test_two_sign_outs_at_once_both_end_the_session(app: Any) -> None:
    service = get_service(app)
    pair = service.issue_tokens("U-alice")
    barrier = threading.Barrier(THREADS)
    codes: list[tuple[int, Any]] = []

    def sign_out() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.delete("/session/token", json={"refresh_token": pair.refresh_token})
        body = response.get_json()
        body.pop("correlation_id", None)
        codes.append((response.status_code, body))

    threads = [threading.Thread(target=sign_out) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    signed_out = (200, {"data": None, "code": 0, "msg": ""})
    assert codes == [signed_out] * THREADS, codes  # sign-out is idempotent: every one succeeds
    with pytest.raises(TokenRevoked):
        service.verify(pair.access_token)


def test_logout_all_during_sign_ins(app: Any) -> None:
    """Every token issued before logout-all answered is dead; later ones live."""
    service = get_service(app)
    issued_before: list[Any] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def signer() -> None:
        for _ in range(200):
            if stop.is_set():
                return
            pair = service.issue_tokens("U-bob")
            with lock:
                issued_before.append(pair)
                if len(issued_before) >= 20:
                    enough.set()

    threads = [threading.Thread(target=signer) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=120)
    with lock:
        snapshot = list(issued_before)  # answered before logout-all starts
    service.revoke_principal("user:U-bob")
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    for pair in snapshot:
        with pytest.raises(TokenRevoked):
            service.verify(pair.access_token)
    after = service.issue_tokens("U-bob")
    assert service.verify(after.access_token)[0].sub == "U-bob"


@pytest.mark.postgres
def test_two_processes_refresh_storm_and_sign_out(postgres_uri: str, rsa_pem: str) -> None:
    """Refreshes of one family hit two processes while a sign-out goes to one of them."""
    import httpx

    from .test_propagation import _workers

    workers = _workers(postgres_uri, rsa_pem, push=True, interval=600.0)
    a, b = next(workers)
    try:
        first = httpx.post(f"{a.url}/session/token", json={"email": "alice@example.com", "password": "wonderland"})
        current = {"refresh": first.json()["data"]["token"]["refresh_token"]}
        minted: list[dict[str, str]] = [first.json()["data"]["token"]]
        lock = threading.Lock()
        enough = threading.Event()
        stop = threading.Event()

        def refresher(url: str) -> None:
            with httpx.Client() as http:
                for _ in range(300):
                    if stop.is_set():
                        return
                    with lock:
                        token = current["refresh"]
                    response = http.post(f"{url}/session/token/refresh", json={"refresh_token": token})
                    if response.json()["code"] == 0:
                        with lock:
                            minted.append(response.json()["data"])
                            current["refresh"] = minted[-1]["refresh_token"]
                            if len(minted) >= 20:
                                enough.set()

        threads = [threading.Thread(target=refresher, args=(url,)) for url in (a.url, b.url) * 3]
        for thread in threads:
            thread.start()
        assert enough.wait(timeout=120)
        answered = None
        with httpx.Client() as http:
            for _ in range(200):
                with lock:
                    token = current["refresh"]
                response = http.request("DELETE", f"{b.url}/session/token", json={"refresh_token": token})
                if response.json()["code"] == 0:
                    answered = response.json()
                    break
        assert answered == {"data": None, "code": 0, "msg": ""}
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        with httpx.Client() as http:
            for tokens in minted:
                for url in (a.url, b.url):  # refresh tokens always ask the store: refused at once everywhere
                    refused = http.post(f"{url}/session/token/refresh", json={"refresh_token": tokens["refresh_token"]})
                    body = refused.json()
                    body.pop("correlation_id")
                    assert (refused.status_code, body) == REVOKED
                me = http.get(f"{b.url}/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
                assert (me.status_code, me.json()) == (401, INVALID)  # the process that signed out: at once
            for tokens in minted:  # the other process: once the push has arrived (bounded wait)
                for _ in range(100):
                    me = http.get(f"{a.url}/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
                    if me.status_code != 200:
                        break
                    time.sleep(0.05)
                assert (me.status_code, me.json()) == (401, INVALID)
    finally:
        next(workers, None)  # runs the fixture generator's clean-up: both processes stop
