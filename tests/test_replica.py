"""The in-memory replica of revocations and the hot path built on it.

"Another process" is a second service on the same store: it shares nothing
with the first but the database, exactly as a second worker would. Syncs are
triggered explicitly, so nothing here depends on timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from flask_logout import IPNotAuthorized, LogoutService, StoreUnavailable, TokenExpired, TokenRevoked
from flask_logout.replica import Replica
from flask_logout.store import Event

from .conftest import FAST_HASH, SECRET, move_clock


def _settings(database_uri: str, **extra: Any) -> dict[str, Any]:
    return {
        "LOGOUT_SECRET_KEY": SECRET,
        "LOGOUT_DATABASE_URI": database_uri,
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        # Long intervals: the tests sync by hand.
        "LOGOUT_SYNC_INTERVAL": 3600,
        "LOGOUT_MAX_STALENESS": 10800,
        "LOGOUT_PUSH": False,
        **extra,
    }


@pytest.fixture
def here(database_uri: str) -> Iterator[LogoutService]:
    service = LogoutService.from_settings(_settings(database_uri))
    service.register_client("api", "api-secret", ["10.0.0.0/8"])
    yield service
    service.close()


@pytest.fixture
def there(database_uri: str, here: LogoutService) -> Iterator[LogoutService]:
    service = LogoutService.from_settings(_settings(database_uri))
    yield service
    service.close()


def _queries(service: LogoutService) -> list[str]:
    """Every statement the store sends from now on, through SQLAlchemy or the raw look-up path."""
    sent: list[str] = []
    sa.event.listen(service.store.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    raw = service.store._raw
    if raw is not None:
        fetch = raw.fetch

        def counted(jti: str) -> Any:
            sent.append(raw.sql)
            return fetch(jti)

        raw.fetch = counted  # type: ignore[method-assign]
    return sent


def _request(token: str, ip: str = "10.1.2.3") -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": ip}


def _hot(service: LogoutService, token: str) -> None:
    """Authenticate twice: the second time is served from the hot path."""
    service.authenticate(_request(token))
    service.authenticate(_request(token))
    assert len(service._hot) >= 1


def test_hot_path_makes_no_query(here: LogoutService) -> None:
    pair = here.issue_tokens("api", client_id="api")
    _hot(here, pair.access_token)
    statements = _queries(here)
    for _ in range(50):
        assert here.authenticate(_request(pair.access_token)).cid == "api"
    assert statements == []


@pytest.mark.parametrize("how", ["logout_all", "family", "access_token"])
def test_revocation_elsewhere_reaches_the_hot_path_on_sync(here: LogoutService, there: LogoutService, how: str) -> None:
    pair = here.issue_tokens("api", client_id="api")
    _hot(here, pair.access_token)
    if how == "logout_all":
        there.revoke_client("api")
    elif how == "family":
        there.revoke_family(pair.access.fid)
    else:
        assert there.revoke_presented(pair.access_token, client_id="api") == "revoked"
    here.replica.sync()
    with pytest.raises(TokenRevoked):
        here.authenticate(_request(pair.access_token))


def test_the_revoking_process_sees_it_at_once(here: LogoutService) -> None:
    pair = here.issue_tokens("api", client_id="api")
    _hot(here, pair.access_token)
    here.logout_all(pair.access)
    statements = _queries(here)
    with pytest.raises(TokenRevoked):
        here.authenticate(_request(pair.access_token))  # no sync happened
    assert statements == []


def test_cache_never_accepts_an_expired_token(here: LogoutService, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = here.issue_tokens("api", client_id="api")
    _hot(here, pair.access_token)
    move_clock(monkeypatch, 3600)
    with pytest.raises(TokenExpired):
        here.authenticate(_request(pair.access_token))


def test_whitelist_is_checked_on_the_hot_path_and_follows_changes(here: LogoutService, there: LogoutService) -> None:
    pair = here.issue_tokens("api", client_id="api")
    _hot(here, pair.access_token)
    with pytest.raises(IPNotAuthorized):
        here.authenticate(_request(pair.access_token, ip="192.0.2.1"))
    there.register_client("api", "api-secret", ["192.0.2.0/24"])  # the whitelist moves
    here.replica.sync()
    assert here.authenticate(_request(pair.access_token, ip="192.0.2.1")).cid == "api"
    with pytest.raises(IPNotAuthorized):
        here.authenticate(_request(pair.access_token, ip="10.1.2.3"))


def test_fails_closed_past_the_staleness_bound_and_recovers(here: LogoutService) -> None:
    pair = here.issue_tokens("api", client_id="api")
    _hot(here, pair.access_token)
    engine = here.store.engine

    def down(*_args: Any) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("could not connect"))

    here.replica.last_ok = time.monotonic() - here.replica.max_staleness - 1  # no sync for too long
    sa.event.listen(engine, "before_cursor_execute", down)
    try:
        with pytest.raises(StoreUnavailable):
            here.authenticate(_request(pair.access_token))
    finally:
        sa.event.remove(engine, "before_cursor_execute", down)
    assert here.authenticate(_request(pair.access_token)).cid == "api"  # the store is back: no restart
    assert here.replica.fresh()


def test_strict_mode_asks_the_store_every_time(database_uri: str, here: LogoutService) -> None:
    strict = LogoutService.from_settings(_settings(database_uri, LOGOUT_STRICT=True))
    try:
        pair = strict.issue_tokens("api", client_id="api")
        statements = _queries(strict)
        for _ in range(3):
            strict.authenticate(_request(pair.access_token))
        assert sum("logout_tokens" in s for s in statements) == 3
        here.revoke_client("api")  # another process; strict needs no sync
        with pytest.raises(TokenRevoked):
            strict.authenticate(_request(pair.access_token))
    finally:
        strict.close()


class _FakeLog:
    """A store whose log the test controls, to replay PostgreSQL's commit order."""

    is_postgres = False

    def __init__(self) -> None:
        self.visible: list[Event] = []
        self.engine = None

    def events_since(self, seq: int, limit: int = 5000) -> list[Event]:
        return sorted((e for e in self.visible if e.seq > seq), key=lambda e: e.seq)[:limit]


def _fid(seq: int) -> Event:
    return Event(seq, "fid", f"family-{seq}", None, int(time.time()) + 600)


def test_late_commits_below_the_watermark_are_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _FakeLog()
    replica = Replica(log, push=False)  # type: ignore[arg-type]
    log.visible = [_fid(1), _fid(2), _fid(4)]  # 3 took its number first but commits last
    replica.sync()
    assert set(replica.families) == {"family-1", "family-2", "family-4"}
    log.visible.append(_fid(3))
    replica.sync()
    assert "family-3" in replica.families
    import flask_logout.replica as replica_module

    log.visible.append(_fid(6))  # 5 was rolled back: its number never shows
    replica.sync()
    monkeypatch.setattr(replica_module, "GAP_TIMEOUT", -1.0)
    replica.sync()
    assert replica._watermark == 6
    assert replica._gaps == {}


def test_entries_leave_when_their_tokens_have_expired() -> None:
    clock = [1_000_000.0]
    replica = Replica(_FakeLog(), push=False, clock=lambda: clock[0])  # type: ignore[arg-type]
    replica.apply(Event(1, "jti", "short", None, 1_000_100))
    replica.apply(Event(2, "fid", "long", None, 1_003_600))
    replica.apply(Event(3, "gen", "client:x", 4, 1_000_100))
    replica.apply(Event(4, "gen", "client:x", 5, 1_003_600))  # raised again later: stays
    replica.apply(Event(5, "jti", "old", None, 999_000))  # already harmless: never stored
    assert (len(replica.jtis), len(replica.families), replica.min_generation) == (1, 1, {"client:x": 5})
    clock[0] = 1_000_300
    replica.expire()
    assert (replica.jtis, set(replica.families), replica.min_generation) == ({}, {"long"}, {"client:x": 5})
    clock[0] = 1_004_000
    replica.expire()
    assert len(replica) == 0


def test_purge_leaves_live_revocations_alone(here: LogoutService, monkeypatch: pytest.MonkeyPatch) -> None:
    live = here.issue_tokens("api", client_id="api")
    here.revoke_family(live.access.fid)
    other = here.issue_tokens("api", client_id="api")
    counts = here.store.purge(int(time.time()))
    assert counts == {"events": 0, "tokens": 0, "families": 0, "seen": 0, "keys": 0}
    with pytest.raises(TokenRevoked):
        here.verify(live.refresh_token, expected_type="refresh")
    assert here.verify(other.access_token)[0].cid == "api"
    # Thirty-one days on, every token above has expired: the records can go.
    later = int(time.time()) + 31 * 24 * 3600 + 86400 + 10
    counts = here.store.purge(later)
    assert counts["events"] >= 1 and counts["tokens"] == 4 and counts["families"] == 2


def test_replica_memory_per_revocation_is_bounded() -> None:
    import tracemalloc

    replica = Replica(_FakeLog(), push=False)  # type: ignore[arg-type]
    expires = int(time.time()) + 3600
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for seq in range(20_000):
        replica.apply(Event(seq, "jti", f"{seq:022d}", None, expires))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(replica) == 20_000
    assert grown / 20_000 < 400  # bytes per live revocation (measured in benchmarks/)


@pytest.mark.postgres
def test_cut_connections_fail_closed_then_recover(postgres_uri: str) -> None:
    """PostgreSQL ends every session of the app (a restart, a failover): the first
    look-up on a dead connection is refused (503), never waved through, and the
    next one reconnects."""
    from .conftest import _postgres_engine

    service = LogoutService.from_settings(_settings(postgres_uri))
    try:
        tokens = [service.issue_tokens("u").access_token for _ in range(3)]
        service.authenticate(_request(tokens[0]))  # the look-up connection is now open and idle
        application = sa.make_url(postgres_uri).query["application_name"]
        with _postgres_engine().begin() as admin:
            cut = admin.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": application},
            ).scalar_one()
        assert cut >= 1  # the look-up connection at least
        with pytest.raises(StoreUnavailable):
            service.authenticate(_request(tokens[1]))
        assert service.authenticate(_request(tokens[1])).sub == "u"
        assert service.authenticate(_request(tokens[2])).sub == "u"
    finally:
        service.close()


def test_log_numbers_are_never_reused_after_a_purge(here: LogoutService) -> None:
    """SQLite reuses the highest rowid after a delete unless AUTOINCREMENT is on:
    a replica past that number would never read the new entry."""
    for _ in range(3):
        here.revoke_family(here.issue_tokens("u").access.fid)
    before = max(event.seq for event in here.store.events_since(0))
    here.store.purge(int(time.time()) + 10 * 86400)  # every entry expired
    assert here.store.events_since(0) == []
    here.revoke_family(here.issue_tokens("u").access.fid)
    assert next(event.seq for event in here.store.events_since(0)) > before


def test_whitelist_added_after_the_token_was_cached(here: LogoutService, there: LogoutService) -> None:
    here.register_client("open", "open-secret")  # no whitelist
    pair = here.issue_tokens("open", client_id="open")
    _hot(here, pair.access_token)
    assert here.authenticate(_request(pair.access_token, ip="198.51.100.1")).cid == "open"
    there.register_client("open", "open-secret", ["10.0.0.0/8"])
    here.replica.sync()
    with pytest.raises(IPNotAuthorized):
        here.authenticate(_request(pair.access_token, ip="198.51.100.1"))


def test_close_waits_for_the_sync_threads() -> None:
    service = LogoutService.from_settings(
        {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": "sqlite://", "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH}
    )
    pair = service.issue_tokens("u")
    service.authenticate(_request(pair.access_token))  # starts the threads
    threads = list(service.replica._threads)
    assert threads and all(t.is_alive() for t in threads)
    service.close()
    assert not any(t.is_alive() for t in threads)


def test_the_token_caches_are_bounded_and_drop_their_older_half() -> None:
    from flask_logout.service import _Bounded

    cache: _Bounded[int] = _Bounded(4)
    for number in range(4):
        cache.put(f"t{number}", number)
    assert cache.get("t0") == 0  # a hit reorders nothing (not an LRU)
    cache.put("t4", 4)
    assert len(cache) == 2
    assert [cache.get(f"t{n}") for n in range(5)] == [None, None, None, 3, 4]
    empty: _Bounded[int] = _Bounded(0)  # LOGOUT_STRICT: nothing is kept
    empty.put("t", 1)
    assert (len(empty), empty.get("t")) == (0, None)
