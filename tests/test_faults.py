"""Store faults against a real app process: PostgreSQL cut away, then back.

A logout never answers success unless the revocation was stored; validation
keeps going on the replica until the staleness bound, then fails closed;
when the store is back everything works with no restart; and after the app
process is restarted, every revocation that was answered with success holds.

The black-hole tests drop every packet instead (sockets stay open, nothing
comes back): every request must still answer, 503 within the store timeout,
and recovery after the network heals must not take longer after a long
outage than after a short one. Durations are asserted only as generous upper
bounds ("never hangs"); the figures they print are in docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from flask_logout import LogoutService

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


#: The store timeout the black-hole tests run with, and what they accept on top of it.
TIMEOUT = 1.0
SYNC_INTERVAL = 0.3
MAX_STALENESS = 1.5
#: "Never hangs": a request during an outage answers within this (it normally takes 1 to 2 s).
ANSWER_BOUND = TIMEOUT + 5
#: Recovery after the network heals: the sync interval, one bounded attempt, and slack.
RECOVERY_BOUND = SYNC_INTERVAL + TIMEOUT + 5


def _through(proxy: FaultProxy, uri: str) -> str:
    proxied = uri.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    assert str(proxy.port) in proxied
    return proxied


@pytest.fixture
def proxied(postgres_uri: str, rsa_pem: str) -> Iterator[tuple[App, FaultProxy]]:
    proxy = FaultProxy()
    env = {
        **os.environ,
        "FLASK_SECRET_KEY": SECRET,
        "FLASK_LOGOUT_PRIVATE_KEY": rsa_pem,
        "FLASK_LOGOUT_DATABASE_URI": _through(proxy, postgres_uri),
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "FLASK_LOGOUT_PUSH": "false",
        "FLASK_LOGOUT_SYNC_INTERVAL": str(SYNC_INTERVAL),
        "FLASK_LOGOUT_MAX_STALENESS": str(MAX_STALENESS),
        "FLASK_LOGOUT_STORE_TIMEOUT": str(TIMEOUT),
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
        assert signed_out.status_code == 200  # Cloudreve: the error is in the body
        assert (signed_out.json()["code"], signed_out.json()["data"]) == (50001, None)
        descope_out = http.post(
            "/v1/auth/logout", headers={"Authorization": f"Bearer P2flasklogoutdemo:{descope_refresh}"}
        )
        assert (descope_out.status_code, descope_out.json()["errorCode"]) == (503, "E905003")
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
            == 40020
        )
        again = http.post("/v1/auth/refresh", headers={"Authorization": f"Bearer P2flasklogoutdemo:{descope_refresh}"})
        assert (again.status_code, again.json()["errorCode"]) == (401, "E064001")


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _first(condition: Callable[[], bool], within: float) -> float | None:
    """Seconds until ``condition()`` first holds, polling every 0.1 s; None if not within ``within``."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    return None


SESSION_DOWN = {"data": None, "code": 50001, "msg": "Database operation failed."}


@pytest.mark.postgres
@pytest.mark.parametrize("outage", [2.0, 12.0])
def test_black_hole_answers_503_in_bounded_time_and_recovery_does_not_grow(
    proxied: tuple[App, FaultProxy], outage: float
) -> None:
    """Packets dropped, not connections closed: no request hangs, and recovery takes no longer after 12 s than 2 s."""
    app, proxy = proxied
    # Every request is bounded by the client too: a hang fails the test (ReadTimeout).
    with httpx.Client(base_url=app.url, timeout=ANSWER_BOUND) as http:

        def sign_in() -> dict[str, str]:
            answer = http.post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
            http.cookies.clear()
            return answer.json()["data"]["token"]  # type: ignore[no-any-return]

        def sign_out(session: dict[str, str]) -> httpx.Response:
            return http.request("DELETE", "/session/token", json={"refresh_token": session["refresh_token"]})

        def me(session: dict[str, str]) -> httpx.Response:
            return http.get("/api/me", headers=_bearer(session["access_token"]))

        hot, cold, ended = sign_in(), sign_in(), sign_in()
        assert sign_out(ended).json() == {"data": None, "code": 0, "msg": ""}
        for _ in range(2):
            assert me(hot).status_code == 200

        proxy.blackhole()
        started = time.monotonic()
        answers = {"cold request": _timed(lambda: me(cold))}
        if outage > 10:  # the short outage is only long enough for one request
            answers["sign-out"] = _timed(lambda: sign_out(cold))
            answers["refresh"] = _timed(
                lambda: http.post("/session/token/refresh", json={"refresh_token": hot["refresh_token"]})
            )
            # The hot path answers from the replica, then 503 once it is stale: never a hang.
            assert _first(lambda: me(hot).status_code == 503, within=MAX_STALENESS + 2 * ANSWER_BOUND) is not None
            answers["hot request"] = _timed(lambda: me(hot))
        for what, (response, took) in answers.items():
            body = response.json()
            body.pop("correlation_id", None)
            expected = (503, STORE_DOWN) if what.endswith("request") else (200, SESSION_DOWN)
            assert (what, response.status_code, body) == (what, *expected)
            assert took < ANSWER_BOUND, f"{what} took {took:.1f} s"
        time.sleep(max(0.0, outage - (time.monotonic() - started)))

        proxy.up()
        healed = time.monotonic()
        hot_back = _first(lambda: me(hot).status_code == 200, RECOVERY_BOUND)
        cold_back = _first(lambda: me(cold).status_code == 200, RECOVERY_BOUND)
        recovered = time.monotonic() - healed
        assert hot_back is not None and cold_back is not None
        print(
            f"\nblack hole for {healed - started:.1f} s: "
            + ", ".join(f"{what} 503 in {took:.2f} s" for what, (_, took) in answers.items())
            + f"; after healing the hot path answered in {hot_back:.2f} s, everything in {recovered:.2f} s"
        )
        assert recovered < RECOVERY_BOUND
        # The sign-out that answered 503 was not applied behind the caller's back
        # (the token still works); its retry is, and nothing signed out is lost.
        assert me(cold).status_code == 200
        assert sign_out(cold).json() == {"data": None, "code": 0, "msg": ""}
        for session in (cold, ended):
            refused = me(session)
            assert (refused.status_code, refused.json()) == (401, INVALID)


def _services(direct_uri: str, proxied_uri: str, **reader: Any) -> tuple[LogoutService, LogoutService]:
    base = {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH}
    writer = LogoutService.from_settings({**base, "LOGOUT_DATABASE_URI": direct_uri, "LOGOUT_PUSH": False})
    follower = LogoutService.from_settings(
        {
            **base,
            "LOGOUT_DATABASE_URI": proxied_uri,
            "LOGOUT_STORE_TIMEOUT": TIMEOUT,
            "LOGOUT_PUSH_HEARTBEAT": 0.5,
            **reader,
        },
        create_tables=False,
    )
    return writer, follower


def _request(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "127.0.0.1"}


def _refused(service: LogoutService, token: str) -> bool:
    try:
        service.authenticate(_request(token))
    except Exception:
        return True
    return False


@pytest.mark.postgres
def test_half_open_listen_connection_is_detected_and_push_comes_back(
    postgres_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The LISTEN connection goes silent (a partition, a restart): the heartbeat notices,
    reconnects, and a revocation reaches this process by push again (polling is off)."""
    proxy = FaultProxy()
    writer, reader = _services(
        postgres_uri, _through(proxy, postgres_uri), LOGOUT_SYNC_INTERVAL=600, LOGOUT_MAX_STALENESS=1800
    )
    caplog.set_level(logging.INFO, logger="flask_logout")
    try:
        pair = writer.issue_tokens("u")
        reader.authenticate(_request(pair.access_token))  # starts the threads; the token is now hot
        assert _first(lambda: reader.status().push, within=10) is not None
        assert reader.status().channel == "flask_logout"

        proxy.blackhole_existing()  # every open connection goes silent; new ones get through
        reconnected = _first(lambda: reader.status().push_reconnects == 1 and reader.status().push, within=15)
        assert reconnected is not None
        messages = [r.getMessage() for r in caplog.records]
        assert any("LISTEN connection lost" in m for m in messages)
        assert any("LISTEN connection reconnected" in m for m in messages)

        writer.revoke_family(pair.access.fid)  # announced by NOTIFY; the next poll is 10 minutes away
        propagated = _first(lambda: _refused(reader, pair.access_token), within=10)
        assert propagated is not None
        with pytest.raises(Exception, match="Invalid token"):
            reader.authenticate(_request(pair.access_token))
        print(f"\npush back {reconnected:.2f} s after the connection went silent; by push in {propagated:.3f} s")
    finally:
        reader.close()
        writer.close()
        proxy.close()


@pytest.mark.postgres
def test_a_connection_going_silent_before_its_return_to_the_pool_is_cut(postgres_uri: str) -> None:
    """Closing a pooled connection rolls back: one more round trip, which the store bound must cover too.

    Found by the LISTEN thread's sync hanging in that rollback (the bound was lifted
    as the block ended, before the connection went back to the pool).
    """
    proxy = FaultProxy()
    _, reader = _services(postgres_uri, _through(proxy, postgres_uri), LOGOUT_PUSH=False)
    outcome: list[BaseException | None] = []

    def use_and_return() -> None:
        try:
            with reader.store.connect() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
                proxy.blackhole_existing()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    try:
        worker = threading.Thread(target=use_and_return, daemon=True)
        worker.start()
        worker.join(ANSWER_BOUND)
        assert outcome, f"the return to the pool still waited after {ANSWER_BOUND} s"
        assert isinstance(outcome[0], sa.exc.DBAPIError)
    finally:
        reader.close()
        proxy.close()


@pytest.mark.postgres
def test_listen_that_never_delivers_is_reported_and_polling_carries_on(
    postgres_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a pooler in transaction mode LISTEN 'works' but nothing comes back: say so once, report push off, poll."""
    proxy = FaultProxy(drop_notifications=True)
    proxied = _through(proxy, postgres_uri) + "&sslmode=disable&gssencmode=disable"
    writer, reader = _services(postgres_uri, proxied, LOGOUT_SYNC_INTERVAL=0.3)
    caplog.set_level(logging.INFO, logger="flask_logout")
    try:
        pair = writer.issue_tokens("u")
        reader.authenticate(_request(pair.access_token))
        reader.authenticate(_request(pair.access_token))
        warning = "LISTEN/NOTIFY does not work on this connection (PgBouncer transaction pooling?)"
        assert _first(lambda: any(warning in r.getMessage() for r in caplog.records), within=10) is not None
        status = reader.status()
        assert (status.push_enabled, status.push, status.channel, status.push_error) == (
            True,
            False,
            None,
            "notifications do not arrive",
        )
        assert sum(warning in r.getMessage() for r in caplog.records) == 1
        writer.revoke_family(pair.access.fid)
        assert _first(lambda: _refused(reader, pair.access_token), within=10) is not None  # by polling
    finally:
        reader.close()
        writer.close()
        proxy.close()


@pytest.mark.mariadb
def test_black_holed_mariadb_answers_503_in_bounded_time_and_recovers(mariadb_uri: str) -> None:
    """MariaDB behind a black hole: the first-sight look-up, a sign-out and a sync each fail within the bound."""
    from flask_logout import StoreUnavailable

    proxy = FaultProxy(target_port=3306)
    proxied = mariadb_uri.replace("@127.0.0.1:3306/", f"@127.0.0.1:{proxy.port}/")
    assert str(proxy.port) in proxied
    writer, reader = _services(mariadb_uri, proxied, LOGOUT_SYNC_INTERVAL=600, LOGOUT_MAX_STALENESS=1800)
    try:
        warm, cold = writer.issue_tokens("u"), writer.issue_tokens("v")
        reader.authenticate(_request(warm.access_token))  # opens the look-up and pooled connections
        reader.replica.sync()
        proxy.blackhole()
        for what, attempt in (
            ("first-sight look-up", lambda: reader.authenticate(_request(cold.access_token))),
            ("sign-out", lambda: reader.revoke_family(cold.access.fid)),
            ("sync", reader.replica.sync),
        ):
            started = time.monotonic()
            with pytest.raises((StoreUnavailable, sa.exc.DBAPIError)):
                attempt()
            took = time.monotonic() - started
            assert took < ANSWER_BOUND, f"{what} took {took:.1f} s"
        proxy.up()
        assert _first(lambda: not _refused(reader, cold.access_token), within=RECOVERY_BOUND) is not None
        assert reader.revoke_family(cold.access.fid) is True
        assert _refused(reader, cold.access_token)
    finally:
        reader.close()
        writer.close()
        proxy.close()


def _redis_through(proxy: FaultProxy, url: str) -> str:
    proxied = url.replace("//127.0.0.1:6379", f"//127.0.0.1:{proxy.port}")
    assert str(proxy.port) in proxied
    return proxied


@pytest.mark.redis
def test_half_open_redis_subscription_is_detected_and_push_comes_back(
    database_uri: str, redis_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The Redis connections go silent: the heartbeat notices within the bound, the subscription is
    made again, and a revocation reaches this process by pub/sub again (polling is off)."""
    proxy = FaultProxy(target_port=6379)
    url = redis_settings["LOGOUT_REDIS_URL"]
    base = {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH, "LOGOUT_DATABASE_URI": database_uri}
    timing = {"LOGOUT_SYNC_INTERVAL": 600, "LOGOUT_MAX_STALENESS": 1800, "LOGOUT_STORE_TIMEOUT": TIMEOUT}
    writer = LogoutService.from_settings({**base, **redis_settings, **timing})
    reader = LogoutService.from_settings(
        {
            **base,
            **redis_settings,
            **timing,
            "LOGOUT_REDIS_URL": _redis_through(proxy, url),
            "LOGOUT_PUSH_HEARTBEAT": 0.5,
        },
        create_tables=False,
    )
    caplog.set_level(logging.INFO, logger="flask_logout")
    try:
        first, second = writer.issue_tokens("u"), writer.issue_tokens("v")
        reader.authenticate(_request(first.access_token))  # starts the threads; the token is now hot
        reader.authenticate(_request(second.access_token))
        assert _first(lambda: reader.status().push, within=10) is not None
        status = reader.status()
        assert (status.push_via, status.channel, status.push_reconnects) == (
            "redis",
            redis_settings["LOGOUT_PUSH_CHANNEL"],
            0,
        )
        writer.revoke_family(first.access.fid)
        assert _first(lambda: _refused(reader, first.access_token), within=10) is not None

        proxy.blackhole_existing()  # both Redis connections go silent; new ones get through
        lost = _first(lambda: not reader.status().push, within=TIMEOUT + 0.5 + 5)
        assert lost is not None
        reconnected = _first(lambda: reader.status().push_reconnects == 1 and reader.status().push, within=15)
        assert reconnected is not None
        messages = [r.getMessage() for r in caplog.records]
        assert any("Redis subscription lost" in m for m in messages)
        assert any("Redis subscription reconnected" in m for m in messages)

        writer.revoke_family(second.access.fid)  # announced by Redis; the next poll is 10 minutes away
        propagated = _first(lambda: _refused(reader, second.access_token), within=10)
        assert propagated is not None
        assert reader.status().fresh is True
        print(f"\nRedis silent: lost in {lost:.2f} s, back in {reconnected:.2f} s; by pub/sub in {propagated:.3f} s")
    finally:
        reader.close()
        writer.close()
        proxy.close()


@pytest.mark.redis
def test_failed_publish_never_fails_a_sign_out(
    database_uri: str, redis_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis refused, then black-holed, for the writer: each sign-out succeeds (it is stored) within the
    bound, the failure is logged once and reported, and the other process learns of it by polling."""
    proxy = FaultProxy(target_port=6379)
    base = {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH, "LOGOUT_DATABASE_URI": database_uri}
    broken = {**redis_settings, "LOGOUT_REDIS_URL": _redis_through(proxy, redis_settings["LOGOUT_REDIS_URL"])}
    writer = LogoutService.from_settings({**base, **broken, "LOGOUT_STORE_TIMEOUT": TIMEOUT})
    reader = LogoutService.from_settings(
        {**base, "LOGOUT_PUSH": False, "LOGOUT_SYNC_INTERVAL": 0.3}, create_tables=False
    )
    caplog.set_level(logging.INFO, logger="flask_logout")
    try:
        pairs = [writer.issue_tokens("u"), writer.issue_tokens("v")]
        for pair in pairs:
            reader.authenticate(_request(pair.access_token))
        for pair, cut in zip(pairs, (proxy.down, proxy.blackhole), strict=True):
            cut()
            started = time.monotonic()
            assert writer.revoke_family(pair.access.fid) is True  # answered, not raised
            assert time.monotonic() - started < ANSWER_BOUND
            writer.replica.redis._paused_until = 0.0  # type: ignore[union-attr]  # try again at once
        status = writer.status()
        assert (status.push_via, status.publish_failures) == ("redis", 2)
        assert status.last_publish_error in ("ConnectionError", "TimeoutError")
        failures = [r.getMessage() for r in caplog.records if "Redis publish failed" in r.getMessage()]
        assert len(failures) == 1  # once per outage, not once per sign-out
        assert "redis://" not in failures[0]
        for pair in pairs:  # stored, and carried by polling
            assert _first(lambda: _refused(reader, pair.access_token), within=10) is not None  # noqa: B023
    finally:
        reader.close()
        writer.close()
        proxy.close()
