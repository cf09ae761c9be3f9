"""The SQL store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_logout import InvalidToken, LogoutManager, LogoutService, get_service

from .conftest import FAST_HASH, SECRET


@pytest.fixture
def core(database_uri: str) -> Iterator[LogoutService]:
    service = LogoutService.from_settings(
        {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": database_uri, "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH}
    )
    yield service
    service.close()


def _snapshot(core: LogoutService) -> set[tuple[str, tuple[Any, ...]]]:
    with core.store.engine.connect() as conn:
        return {(t.name, tuple(row)) for t in core.store.tables.all() for row in conn.execute(sa.select(t))}


@contextmanager
def counting(core: LogoutService) -> Iterator[dict[str, int]]:
    """Count the statements sent, and the rows that differ afterwards in any store table."""
    seen = {"statements": 0, "rows_changed": 0}
    before = _snapshot(core)

    def after(*_: Any) -> None:
        seen["statements"] += 1

    sa.event.listen(core.store.engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        sa.event.remove(core.store.engine, "after_cursor_execute", after)
    after_rows = _snapshot(core)
    # A changed row appears once on each side of the difference; an added row once.
    changed_keys = {(name, row[0]) for name, row in before ^ after_rows}
    seen["rows_changed"] = len(changed_keys)
    for name in {name for name, _ in changed_keys}:
        seen[name] = sum(1 for table, _ in changed_keys if table == name)


def _logout_all_cost(core: LogoutService, client_id: str, sessions: int) -> tuple[dict[str, int], list[Any]]:
    pairs = [core.issue_tokens(client_id, client_id=client_id) for _ in range(sessions)]
    with counting(core) as seen:
        core.revoke_client(client_id)
    return seen, pairs


def test_logout_all_is_one_row_whatever_the_number_of_tokens(core: LogoutService) -> None:
    one, _ = _logout_all_cost(core, "small", 1)
    many, pairs = _logout_all_cost(core, "large", 300)
    assert one == many
    # The generation counter, plus one entry in the replication log.
    assert many["rows_changed"] == 2
    assert (many["logout_subjects"], many["logout_events"]) == (1, 1)
    tokens = core.store.tables.tokens
    with core.store.engine.connect() as conn:
        live_rows = conn.execute(sa.select(sa.func.count()).where(tokens.c.subject == "client:large")).scalar_one()
    assert live_rows == 600  # the rows are untouched: they die by generation
    for pair in pairs[::50]:
        with pytest.raises(InvalidToken):
            core.verify(pair.access_token)
        with pytest.raises(InvalidToken):
            core.verify(pair.refresh_token, expected_type="refresh")


def test_logout_all_of_a_subject_never_seen_kills_generation_zero(core: LogoutService) -> None:
    core.revoke_client("fresh")
    core.register_client("fresh", "fresh-secret")  # a client token needs its client
    pair = core.issue_tokens("fresh", client_id="fresh")
    assert pair.access.gen == 1
    assert core.verify(pair.access_token)[0].gen == 1


def test_revoke_family_ends_one_session_only(core: LogoutService) -> None:
    first = core.issue_tokens("alice")
    second = core.issue_tokens("alice")
    refreshed = core.refresh(first.refresh_token)
    core.revoke_family(first.access.fid)
    for token, typ in (
        (first.access_token, "access"),
        (refreshed.access_token, "access"),
        (refreshed.refresh_token, "refresh"),
    ):
        with pytest.raises(InvalidToken):
            core.verify(token, expected_type=typ)
    assert core.verify(second.access_token)[0].sub == "alice"


def test_revoke_single_token(core: LogoutService) -> None:
    pair = core.issue_tokens("bob")
    core.revoke_token(pair.access.jti)
    with pytest.raises(InvalidToken):
        core.verify(pair.access_token)
    assert core.verify(pair.refresh_token, expected_type="refresh")[0].sub == "bob"


def test_users_and_clients_of_the_same_name_are_separate(core: LogoutService) -> None:
    user = core.issue_tokens("same")
    client = core.issue_tokens("same", client_id="same")
    core.revoke_client("same")
    with pytest.raises(InvalidToken):
        core.verify(client.access_token)
    assert core.verify(user.access_token)[0].cid is None


def test_every_issued_token_is_recorded(core: LogoutService) -> None:
    pair = core.issue_tokens("carol", client_id="carol")
    state = core.store.lookup(pair.refresh.jti)
    assert state is not None
    assert (state.typ, state.subject, state.family, state.generation) == (
        "refresh",
        "client:carol",
        pair.refresh.fid,
        0,
    )
    assert core.store.lookup("never-issued") is None


def test_concurrent_refresh_with_one_token_has_exactly_one_winner(core: LogoutService) -> None:
    pair = core.issue_tokens("racer")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            core.refresh(pair.refresh_token)
            results.append("ok")
        except InvalidToken:
            results.append("invalid")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["invalid"] * 7 + ["ok"]


def test_joins_the_applications_own_sqlalchemy(database_uri: str) -> None:
    db = SQLAlchemy()

    class Note(db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)

    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_uri, LOGOUT_SECRET_KEY=SECRET, LOGOUT_CLIENT_SECRET_HASH=FAST_HASH
    )
    db.init_app(app)
    LogoutManager(app, db=db)
    service = get_service(app)
    assert {"logout_tokens", "logout_families", "logout_subjects", "logout_clients", "note"} <= set(db.metadata.tables)
    with app.app_context():
        assert service.store.engine is db.engine
        db.create_all()  # creates the app's tables beside the store's, no clash
        service.register_client("dave", "dave-secret")  # a client token needs its client
        pair = service.issue_tokens("dave", client_id="dave")
        rows = db.session.execute(sa.text("SELECT count(*) FROM logout_tokens")).scalar_one()
        assert rows == 2
        assert service.verify(pair.access_token)[0].sub == "dave"
        db.session.remove()
        db.engine.dispose()


def test_db_must_be_initialised_first(tmp_path: Any) -> None:
    app = Flask(__name__)
    app.config.update(LOGOUT_SECRET_KEY=SECRET, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/x.sqlite3")
    with pytest.raises(RuntimeError, match=r"call db.init_app\(app\) before LogoutManager\(app, db=db\)"):
        LogoutManager(app, db=SQLAlchemy())


def test_two_processes_share_an_sqlite_file(tmp_path: Any) -> None:
    """A logout by one service instance (another worker) is seen by the other."""
    settings = {
        "LOGOUT_SECRET_KEY": SECRET,
        "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/shared.sqlite3",
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
    }
    worker_a, worker_b = LogoutService.from_settings(settings), LogoutService.from_settings(settings)
    worker_a.register_client("erin", "erin-secret")  # a client token needs its client
    pair = worker_a.issue_tokens("erin", client_id="erin")
    assert worker_b.verify(pair.access_token)[0].sub == "erin"
    worker_b.logout_all(pair.access)
    with pytest.raises(InvalidToken):
        worker_a.verify(pair.access_token)


def test_concurrent_registration_of_one_client(core: LogoutService) -> None:
    """Two workers seeding the same client at start-up: neither fails, the client exists once."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def register(index: int) -> None:
        barrier.wait()
        try:
            core.register_client("seeded", f"secret-{index}", ["10.0.0.0/8"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = core.store.get_client("seeded")
    assert record is not None and record.allowed_cidrs == ("10.0.0.0/8",)


def test_concurrent_logout_all_of_a_new_subject_gives_each_call_its_own_generation(core: LogoutService) -> None:
    """Eight workers end everything of a subject never seen: generations 1..8, one each, and the log says so."""
    barrier = threading.Barrier(8)
    results: list[int] = []
    errors: list[BaseException] = []

    def bump() -> None:
        barrier.wait()
        try:
            results.append(core.store.bump_generation("user:racer"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [1, 2, 3, 4, 5, 6, 7, 8]
    logged = [e.value for e in core.store.events_since(0) if e.kind == "gen" and e.key == "user:racer"]
    assert sorted(v for v in logged if v is not None) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_keys_are_compared_exactly(core: LogoutService) -> None:
    """Case matters in every store (MySQL's default collations fold it): two clients, two users."""
    core.register_client("Acme", "upper-secret")
    core.register_client("acme", "lower-secret")
    upper, lower = core.store.get_client("Acme"), core.store.get_client("acme")
    assert upper is not None and lower is not None and upper.secret_hash != lower.secret_hash
    alice, other = core.issue_tokens("alice"), core.issue_tokens("Alice")
    core.revoke_user("Alice")
    assert core.verify(alice.access_token)[0].sub == "alice"
    with pytest.raises(InvalidToken):
        core.verify(other.access_token)


def test_times_keep_their_fractions(core: LogoutService) -> None:
    """revoked_at is compared with the reuse grace in seconds: it must come back as written (not single precision)."""
    pair = core.issue_tokens("timer")
    tokens = core.store.tables.tokens
    with core.store.transaction() as conn:
        conn.execute(tokens.update().where(tokens.c.jti == pair.refresh.jti).values(revoked_at=1790000000.125))
    state = core.store.lookup(pair.refresh.jti)
    assert state is not None and state.revoked_at == 1790000000.125
