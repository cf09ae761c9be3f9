"""Bounds and health, in process: the settings, SQLite's busy wait, status(), the health endpoint, the CLI, signals."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.test import Client

from flask_logout import LogoutService, StoreUnavailable, get_service, signals
from flask_logout.config import ConfigError, load_config
from flask_logout.health import HealthApp

from .conftest import FAST_HASH, SECRET, build_app


def _settings(database_uri: str, **extra: Any) -> dict[str, Any]:
    return {
        "LOGOUT_SECRET_KEY": SECRET,
        "LOGOUT_DATABASE_URI": database_uri,
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "LOGOUT_SYNC_INTERVAL": 3600,
        "LOGOUT_MAX_STALENESS": 10800,
        "LOGOUT_PUSH": False,
        **extra,
    }


@pytest.fixture
def service(database_uri: str) -> Iterator[LogoutService]:
    service = LogoutService.from_settings(_settings(database_uri, LOGOUT_STORE_TIMEOUT=1))
    yield service
    service.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGOUT_STORE_TIMEOUT", 0),
        ("LOGOUT_STORE_TIMEOUT", "soon"),
        ("LOGOUT_STORE_TIMEOUT", 3600),
        ("LOGOUT_PUSH_HEARTBEAT", -1),
        ("LOGOUT_HEALTH_PATH", "healthz"),
    ],
)
def test_bad_bounds_are_refused_at_start_naming_the_setting(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"LOGOUT_SECRET_KEY": SECRET, name: value})
    assert raised.value.setting == name


def test_bounds_have_defaults() -> None:
    config = load_config({"LOGOUT_SECRET_KEY": SECRET})
    assert (config.store_timeout, config.push_heartbeat, config.health_path) == (3.0, 5.0, None)


def test_sqlite_busy_wait_is_bounded_by_the_store_timeout(tmp_path: Any) -> None:
    """Another process holds the write lock: a sign-out answers 503 after the bound (was 30 s)."""
    path = tmp_path / "store.sqlite3"
    service = LogoutService.from_settings(_settings(f"sqlite:///{path}", LOGOUT_STORE_TIMEOUT=0.5))
    try:
        family = service.issue_tokens("u").access.fid
        other = sqlite3.connect(path, timeout=0)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            service.revoke_family(family)
        assert time.monotonic() - started < 0.5 + 5
        other.rollback()
        other.close()
        assert service.revoke_family(family) is True  # the lock is gone: the retry succeeds
    finally:
        service.close()


@pytest.mark.postgres
def test_postgres_connections_carry_the_bounds(postgres_uri: str) -> None:
    service = LogoutService.from_settings(_settings(postgres_uri, LOGOUT_STORE_TIMEOUT=1.5))
    try:
        with service.store.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "1500ms"
            # The server ends a transaction whose client went silent: 10 x the bound, at least 10 s.
            assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar_one() == "15s"
            info = conn.connection.dbapi_connection.info  # type: ignore[union-attr]
            params = info.get_parameters()
            assert (params["connect_timeout"], params["keepalives"], params["tcp_user_timeout"]) == ("2", "1", "1500")
            assert "search_path" in params["options"]  # the URL's own options are kept
        listener = service.store.connect_listener()
        try:
            assert listener.execute("SHOW statement_timeout").fetchone()[0] == "1500ms"
        finally:
            listener.close()
    finally:
        service.close()


def test_status_reports_age_freshness_and_errors(service: LogoutService, monkeypatch: pytest.MonkeyPatch) -> None:
    before = service.status()
    assert (before.fresh, before.age, before.last_sync_at, before.last_error) == (False, None, None, None)
    service.replica.sync()
    status = service.status()
    assert status.fresh and status.age is not None and 0 <= status.age < 5
    assert (status.push, status.channel, status.store_timeout) == (False, None, 1.0)
    assert status.as_dict()["stale"] is False

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT", {}, Exception("unreachable"))

    monkeypatch.setattr(service.store, "events_since", down)
    service.replica.last_ok = time.monotonic() - service.replica.max_staleness - 1
    assert service.replica.catch_up() is False
    failed = service.status()
    assert (failed.fresh, failed.stale, failed.last_error) == (False, True, "OperationalError")
    assert failed.last_error_at is not None and abs(failed.last_error_at - time.time()) < 60


def test_health_app_answers_200_when_fresh_and_503_when_stale(
    service: LogoutService, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(HealthApp(service))
    fresh = client.get("/")
    assert (fresh.status_code, fresh.headers["Cache-Control"]) == (200, "no-store")
    assert fresh.json is not None and (fresh.json["fresh"], fresh.json["stale"]) == (True, False)

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT", {}, Exception("unreachable"))

    monkeypatch.setattr(service.store, "events_since", down)
    service.replica.last_ok = time.monotonic() - service.replica.max_staleness - 1
    stale = client.get("/")
    assert stale.status_code == 503
    assert stale.json is not None
    assert (stale.json["fresh"], stale.json["stale"]) == (False, True)
    assert set(stale.json) == {
        "age",
        "channel",
        "fresh",
        "last_error",
        "last_error_at",
        "last_publish_error",
        "last_sync_at",
        "max_staleness",
        "push",
        "push_enabled",
        "publish_failures",
        "push_error",
        "push_reconnects",
        "push_via",
        "running",
        "stale",
        "store_timeout",
        "sync_interval",
    }


def test_health_path_setting_serves_it_from_flask(database_uri: str) -> None:
    app = build_app(database_uri, LOGOUT_HEALTH_PATH="/healthz")
    try:
        answer = app.test_client().get("/healthz")
        assert answer.status_code == 200
        assert answer.get_json()["fresh"] is True
    finally:
        get_service(app).close()


def test_cli_status_prints_json(database_uri: str) -> None:
    app = build_app(database_uri)
    try:
        result = app.test_cli_runner().invoke(args=["logout", "status", "--json"])
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        assert (status["fresh"], status["stale"], status["last_error"]) == (True, False, None)
        # This command's own probe: LISTEN/NOTIFY round trip on PostgreSQL; SQLite has no push.
        assert status["push"] is database_uri.startswith("postgresql")
        text = app.test_cli_runner().invoke(args=["logout", "status"])
        assert text.exit_code == 0 and "fresh: True" in text.output
    finally:
        get_service(app).close()


def test_cli_status_exits_1_when_the_store_cannot_be_read(tmp_path: Any) -> None:
    app = build_app(f"sqlite:///{tmp_path}/store.sqlite3")
    try:
        get_service(app).store.engine.dispose()
        (tmp_path / "store.sqlite3").unlink()
        (tmp_path / "store.sqlite3").mkdir()  # a directory: the store cannot be opened
        result = app.test_cli_runner().invoke(args=["logout", "status", "--json"])
        assert result.exit_code == 1
        status = json.loads(result.output)
        assert (status["fresh"], status["last_error"]) == (False, "OperationalError")
    finally:
        get_service(app).close()


def test_health_changed_is_signalled_on_stale_and_fresh(
    service: LogoutService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, bool]] = []

    def receiver(sender: Any, event: str, status: Any) -> None:
        seen.append((event, status.fresh))

    signals.health_changed.connect(receiver, sender=service)
    try:
        service.replica.sync()
        service.replica.check_health()
        assert seen == []  # fresh from the start: nothing changed
        service.replica.last_ok = time.monotonic() - service.replica.max_staleness - 1
        service.replica.check_health()
        service.replica.check_health()
        service.replica.sync()
        service.replica.check_health()
        assert seen == [("stale", False), ("fresh", True)]
        messages = [r.getMessage() for r in caplog.records]
        assert any("revocation replica stale" in m for m in messages)
        assert any("revocation replica fresh again" in m for m in messages)
    finally:
        signals.health_changed.disconnect(receiver, sender=service)


@pytest.mark.mariadb
def test_mariadb_connections_carry_the_bounds(mariadb_uri: str) -> None:
    service = LogoutService.from_settings(_settings(mariadb_uri, LOGOUT_STORE_TIMEOUT=1.5))
    try:
        query = "SELECT @@innodb_lock_wait_timeout, @@max_statement_time, @@tx_isolation"
        with service.store.connect() as conn:
            assert tuple(conn.execute(sa.text(query)).one()) == (2, 1.5, "READ-COMMITTED")
            dbapi = conn.connection.dbapi_connection
            assert (dbapi.connect_timeout, dbapi._read_timeout, dbapi._write_timeout) == (1.5, 1.5, 1.5)  # type: ignore[union-attr]
        pair = service.issue_tokens("u")
        assert service.store.lookup(pair.access.jti) is not None  # the first-sight path, on a connection of its own
        raw = service.store._raw
        assert raw is not None and len(raw._idle) == 1
        cursor = raw._idle[0].cursor()
        cursor.execute(query)
        assert cursor.fetchone() == (2, 1.5, "READ-COMMITTED")
        assert raw._idle[0].get_autocommit() is True
    finally:
        service.close()


@pytest.mark.mariadb
def test_mariadb_lock_wait_is_bounded_by_the_store_timeout(mariadb_uri: str) -> None:
    """Another session holds the session's row: a sign-out answers 503 within the bound (was 50 s)."""
    service = LogoutService.from_settings(_settings(mariadb_uri, LOGOUT_STORE_TIMEOUT=1))
    other = sa.create_engine(mariadb_uri)
    try:
        family = service.issue_tokens("u").access.fid
        with other.connect() as holder:
            holder.execute(sa.text("BEGIN"))
            holder.execute(sa.text("SELECT * FROM logout_families WHERE family = :f FOR UPDATE"), {"f": family})
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                service.revoke_family(family)
            assert time.monotonic() - started < 1 + 5
            holder.execute(sa.text("ROLLBACK"))
        assert service.revoke_family(family) is True  # the lock is gone: the retry succeeds
    finally:
        other.dispose()
        service.close()


@pytest.mark.redis
def test_cli_status_probes_the_redis_channel(tmp_path: Any, redis_settings: dict[str, str]) -> None:
    app = build_app(f"sqlite:///{tmp_path}/store.sqlite3", **redis_settings)
    try:
        result = app.test_cli_runner().invoke(args=["logout", "status", "--json"])
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        assert (status["push"], status["push_via"], status["channel"], status["push_error"]) == (
            True,
            "redis",
            redis_settings["LOGOUT_PUSH_CHANNEL"],
            None,
        )
    finally:
        get_service(app).close()
