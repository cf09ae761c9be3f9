"""The token store: the single source of truth about which tokens live.

Plain SQLAlchemy Core over an ``Engine``, so it works inside a Flask request,
in a bare WSGI middleware with no application context, in a CLI command and
in a test alike. With Flask-SQLAlchemy the tables are declared on the
application's own ``db.metadata`` (so ``db.create_all()`` and Alembic see
them) and the engine is ``db.engine``.

Revocation is shaped so that no operation loops over tokens:

* one token: ``logout_tokens.revoked_at`` of one row;
* one session (a sign-in and everything refreshed from it): ``revoked_at`` of
  one ``logout_families`` row;
* everything of a client or user: ``generation`` of one ``logout_subjects``
  row is bumped; tokens carry the generation they were issued under and die
  when it no longer matches.

Every write that revokes is committed before the caller answers success.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .tokens import principal_key

#: Table names, prefixed so they never collide with the application's own.
SUBJECTS = "logout_subjects"
FAMILIES = "logout_families"
TOKENS = "logout_tokens"
CLIENTS = "logout_clients"
SEEN = "logout_seen_jtis"
EVENTS = "logout_events"
KEYS = "logout_keys"

#: Key in a connection's ``info``: the highest log number its transaction wrote.
_LOGGED = "flask_logout_logged"

#: PostgreSQL channel on which every committed revocation is announced.
NOTIFY_CHANNEL = "flask_logout"

#: ``LOGOUT_STORE_TIMEOUT``: the longest any one wait on the store may take.
DEFAULT_STORE_TIMEOUT = 3.0
#: The purge may take longer than a request's query: at least this long.
PURGE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Tables:
    subjects: sa.Table
    families: sa.Table
    tokens: sa.Table
    clients: sa.Table
    seen: sa.Table
    events: sa.Table
    keys: sa.Table

    def all(self) -> list[sa.Table]:
        return [self.subjects, self.families, self.tokens, self.clients, self.seen, self.events, self.keys]


#: Longest user agent and address kept with a session (longer ones are cut).
MAX_USER_AGENT = 200
MAX_IP = 64
#: Columns added after the first release: ``create_all`` adds them to older tables.
_ADDED_COLUMNS = {"families": ("user_agent", "ip")}


def _time() -> Any:
    """A Unix time with its fractions: MySQL's FLOAT is single precision (~2 minutes at today's times)."""
    from sqlalchemy.dialects.mysql import DOUBLE

    return sa.Float().with_variant(DOUBLE(asdecimal=False), "mysql", "mariadb")


#: MySQL/MariaDB: InnoDB, UTF-8, and a binary collation, so that keys compare
#: exactly as everywhere else ("Alice" is not "alice": the default collations
#: fold case, and two client ids would share one row).
_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}


def define_tables(metadata: sa.MetaData) -> Tables:
    """Declare the store's tables on ``metadata`` (idempotent per metadata)."""
    if TOKENS in metadata.tables:
        t = metadata.tables
        return Tables(t[SUBJECTS], t[FAMILIES], t[TOKENS], t[CLIENTS], t[SEEN], t[EVENTS], t[KEYS])
    subjects = sa.Table(
        SUBJECTS,
        metadata,
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False, default=0),
        sa.Column("updated_at", _time(), nullable=False),
        **_MYSQL_TABLE,
    )
    families = sa.Table(
        FAMILIES,
        metadata,
        sa.Column("family", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False, index=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        # Sessions signed in through an OpenID provider: what RP-initiated
        # and back-channel logout need to find and end them.
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("provider_sid", sa.String(255), nullable=True),
        sa.Column("provider_sub", sa.String(255), nullable=True),
        sa.Column("id_token", sa.Text, nullable=True),
        # Where the sign-in came from, for session lists (truncated; may be absent).
        sa.Column("user_agent", sa.String(MAX_USER_AGENT), nullable=True),
        sa.Column("ip", sa.String(MAX_IP), nullable=True),
        sa.Index("ix_logout_families_provider_sid", "provider", "provider_sid"),
        sa.Index("ix_logout_families_provider_sub", "provider", "provider_sub"),
        **_MYSQL_TABLE,
    )
    tokens = sa.Table(
        TOKENS,
        metadata,
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("typ", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False, index=True),
        sa.Column("family", sa.String(64), nullable=False, index=True),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        **_MYSQL_TABLE,
    )
    clients = sa.Table(
        CLIENTS,
        metadata,
        sa.Column("client_id", sa.String(255), primary_key=True),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("allowed_cidrs", sa.Text, nullable=False, default="[]"),
        sa.Column("created_at", _time(), nullable=False),
        **_MYSQL_TABLE,
    )
    seen = sa.Table(
        SEEN,
        metadata,
        # Logout-token ids already accepted (OIDC back-channel replay defence),
        # kept until the token could no longer be accepted anyway.
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
        **_MYSQL_TABLE,
    )
    events = sa.Table(
        EVENTS,
        metadata,
        # The replication log: every revocation that can end a live access
        # token, in commit order, kept until no such token can be alive.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("created_at", _time(), nullable=False),
        # Without AUTOINCREMENT SQLite reuses the highest number after a purge,
        # and a replica past it would never read the new entry.
        sqlite_autoincrement=True,
        **_MYSQL_TABLE,
    )
    keys = sa.Table(
        KEYS,
        metadata,
        # Signing keys, with LOGOUT_KEYRING (see flask_logout.keys).
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_pem", sa.Text, nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("retired_at", _time(), nullable=True),
        **_MYSQL_TABLE,
    )
    return Tables(subjects, families, tokens, clients, seen, events, keys)


@dataclass(frozen=True, slots=True)
class TokenRow:
    """What the store records of an issued token."""

    jti: str
    typ: str
    subject: str
    family: str
    client_id: str | None
    generation: int
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class TokenState:
    """Everything needed to decide whether a recorded token still lives."""

    typ: str
    subject: str
    family: str
    generation: int
    current_generation: int
    token_revoked: bool
    family_revoked: bool
    allowed_cidrs: str | None
    revoked_at: float | None = None
    replaced_by: str | None = None
    #: The token's ``exp`` (seconds since the epoch), as recorded at issue.
    expires_at: int = 0

    @property
    def revoked(self) -> bool:
        return self.token_revoked or self.family_revoked or self.generation != self.current_generation


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the replication log.

    ``kind`` is ``jti`` (one access token), ``fid`` (a session), ``gen`` (a
    subject's new generation, in ``value``) or ``client`` (an API client's
    record changed).
    """

    seq: int
    kind: str
    key: str
    value: int | None
    expires_at: int


@dataclass(frozen=True, slots=True)
class SsoLogin:
    """A sign-in that came through an OpenID provider.

    ``provider`` names an entry of ``LOGOUT_OIDC_PROVIDERS``; ``id_token`` is
    the provider's ID token (sent back as ``id_token_hint`` on sign-out);
    ``sid`` and ``sub`` are its session and subject claims, which a
    back-channel logout token names.
    """

    provider: str
    id_token: str = ""
    sid: str | None = None
    sub: str | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live sign-in (token family) of a subject."""

    family: str
    created_at: float
    expires_at: int
    #: The browser or client that signed in (``User-Agent``, truncated), if recorded.
    user_agent: str | None = None
    #: The address it signed in from, if recorded.
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    secret_hash: str
    allowed_cidrs: tuple[str, ...]


def open_store(
    uri: str, *, timeout: float = DEFAULT_STORE_TIMEOUT, metadata: sa.MetaData | None = None, create_tables: bool = True
) -> SQLStore:
    """The store at ``uri`` (its tables created unless told not to), for start-up.

    A failure says which setting to fix: a driver that is not installed
    names the extra that brings it, a database that cannot be reached names
    ``LOGOUT_DATABASE_URI`` (with the password left out).
    """
    from .config import ConfigError

    try:
        url = sa.engine.make_url(uri)
    except sa.exc.ArgumentError:
        raise ConfigError(
            "LOGOUT_DATABASE_URI", "is not a database URL like sqlite:///path or postgresql+psycopg://..."
        ) from None
    shown = url.render_as_string(hide_password=True)
    try:
        store = SQLStore(make_engine(uri, timeout=timeout), metadata)
    except ModuleNotFoundError as exc:
        psycopg = (exc.name or "").startswith("psycopg")
        extra = ": install the postgres extra, pip install 'flask-logout[postgres]'" if psycopg else ""
        raise ConfigError(
            "LOGOUT_DATABASE_URI", f"{shown} needs the {exc.name} driver, which is not installed{extra}"
        ) from None
    if create_tables:
        try:
            store.create_all()
        except sa.exc.OperationalError as exc:
            store.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else exc.__class__.__name__
            raise ConfigError("LOGOUT_DATABASE_URI", f"cannot reach the store database at {shown}: {reason}") from None
    return store


def make_engine(uri: str, *, timeout: float = DEFAULT_STORE_TIMEOUT) -> Engine:
    """An engine tuned for the store, with every wait bounded by ``timeout`` seconds.

    SQLite files: WAL and a busy timeout of ``timeout`` (several worker
    processes share one file); an in-memory SQLite shares one connection.
    PostgreSQL through libpq (psycopg, psycopg2): a connect timeout, TCP
    keepalives and ``tcp_user_timeout`` (a black-holed socket errors out), a
    server-side ``statement_timeout``, and no pre-ping: a dead pooled
    connection is found by a zero-round-trip check at checkout (the server
    hung up) or by :class:`SQLStore`'s deadline (packets dropped), and then
    invalidated with the rest of the pool. Other drivers keep pre-ping.
    """
    url = sa.engine.make_url(uri)
    if url.get_backend_name() == "sqlite":
        memory = url.database in (None, "", ":memory:")
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": timeout},
            poolclass=sa.pool.StaticPool if memory else None,
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.close()

        return engine
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
        options = url.query.get("options")
        engine = sa.create_engine(
            url, connect_args=libpq_bounds(options if isinstance(options, str) else None, timeout)
        )
        sa.event.listen(engine, "checkout", _check_alive)
        return engine
    if url.get_backend_name() in ("mysql", "mariadb") and url.get_driver_name() == "pymysql":
        engine = sa.create_engine(url, connect_args=mysql_bounds(timeout), isolation_level="READ COMMITTED")
        sa.event.listen(engine, "connect", lambda dbapi_connection, _record: mysql_session(dbapi_connection, timeout))
        sa.event.listen(engine, "checkout", _check_alive)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def mysql_bounds(timeout: float) -> dict[str, Any]:
    """PyMySQL connection parameters that bound every wait on the socket to ``timeout`` seconds."""
    return {"connect_timeout": max(1.0, timeout), "read_timeout": timeout, "write_timeout": timeout}


def mysql_session(dbapi_connection: Any, timeout: float, *, isolation: bool = False) -> None:
    """Server-side bounds for a new MySQL/MariaDB session.

    Lock waits (``innodb_lock_wait_timeout``, whole seconds) and statements
    (MariaDB ``max_statement_time``; MySQL ``max_execution_time``, SELECTs
    only) end within about ``timeout``; strict mode, so an over-long key is
    an error rather than silently cut to a key it is not. ``isolation``:
    READ COMMITTED (the engine sets it itself on its connections).
    """
    statements = [
        f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(timeout))}",
        "SET SESSION sql_mode = TRIM(BOTH ',' FROM CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES'))",
    ]
    if "mariadb" in str(dbapi_connection.get_server_info()).lower():
        statements.append(f"SET SESSION max_statement_time = {timeout:.3f}")
    else:
        statements.append(f"SET SESSION max_execution_time = {max(1, int(timeout * 1000))}")
    if isolation:
        statements.append("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    cursor = dbapi_connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


def libpq_bounds(options: str | None, timeout: float) -> dict[str, Any]:
    """libpq connection parameters that bound every wait to about ``timeout`` seconds.

    ``options`` is what the URL already asks for (kept; a ``statement_timeout``
    given there wins over ours).
    """
    millis = max(1, int(timeout * 1000))
    params: dict[str, Any] = {
        "connect_timeout": max(2, math.ceil(timeout)),  # libpq's floor is 2 s
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": millis,
    }
    if options is None or "statement_timeout" not in options:
        options = f"{options or ''} -c statement_timeout={millis}".strip()
    if "idle_in_transaction_session_timeout" not in options:
        # The server's side of the bound: a connection cut off mid-transaction
        # (dropped packets) must not hold its locks until the server's TCP
        # keepalive gives up (two hours by default). Ours never idle inside a
        # transaction: their statements run back to back.
        idle = max(10_000, 10 * millis)
        options = f"{options} -c idle_in_transaction_session_timeout={idle}"
    params["options"] = options
    return params


def _socket_of(dbapi_connection: Any) -> int | None:
    """The socket of a libpq connection (psycopg 3 or psycopg2) or a PyMySQL one, else None."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    try:
        if pgconn is not None:
            return int(pgconn.socket)
        if hasattr(dbapi_connection, "_sock"):  # PyMySQL
            sock = dbapi_connection._sock
            return None if sock is None else int(sock.fileno())
        fileno = getattr(dbapi_connection, "fileno", None)
        return int(fileno()) if fileno is not None else None
    except Exception:
        return None


def _check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: refuse a connection whose server has hung up, without a round trip.

    An idle connection has nothing to read; if its socket is readable, the
    server sent an error (it was terminated, restarted) or closed it. The
    pool then opens a fresh one. (Dropped packets are not visible here; the
    deadline of the operation catches those.)
    """
    if getattr(dbapi_connection, "closed", False):
        raise sa.exc.DisconnectionError("connection closed")
    fd = _socket_of(dbapi_connection)
    if fd is not None and fd >= 0 and _readable(fd):
        raise sa.exc.DisconnectionError("the server hung up")


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


class _Watchdog:
    """Cuts a database connection whose operation outlives its deadline.

    The drivers have no client-side bound on a query: on a socket whose
    packets are dropped, a read waits for TCP to give up (minutes). An
    operation arms a deadline with the connection's socket; past it, this
    thread shuts the socket down, so the waiting read fails at once with a
    disconnect error, the connection is invalidated and the caller answers
    503. One thread per process, woken only when a deadline can have passed.
    The socket is identified by its addresses as well as its descriptor, so a
    descriptor closed and reused meanwhile is never touched.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, int, tuple[Any, Any]]] = {}
        self._keys = itertools.count()
        self._wake_at: float | None = None
        self._pid: int | None = None
        #: Connections cut so far (tests and logs).
        self.cut = 0

    def arm(self, fd: int, seconds: float) -> int | None:
        try:
            names = _socket_names(fd)
        except OSError:
            return None
        key = next(self._keys)
        deadline = time.monotonic() + seconds
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="flask-logout-deadline", daemon=True).start()
            self._armed[key] = (deadline, fd, names)
            if self._wake_at is None or deadline < self._wake_at:
                self._cond.notify()
        return key

    def disarm(self, key: int | None) -> None:
        if key is not None:
            with self._cond:
                self._armed.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key in [k for k, (deadline, _, _) in self._armed.items() if deadline <= now]:
                    _, fd, names = self._armed.pop(key)
                    if _shut_down(fd, names):
                        self.cut += 1
                self._wake_at = min((d for d, _, _ in self._armed.values()), default=None)
                self._cond.wait(None if self._wake_at is None else max(0.0, self._wake_at - now))


def _socket_names(fd: int) -> tuple[Any, Any]:
    with socket.socket(fileno=os.dup(fd)) as sock:
        return sock.getsockname(), sock.getpeername()


def _shut_down(fd: int, names: tuple[Any, Any]) -> bool:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if (sock.getsockname(), sock.getpeername()) != names:
                return False  # closed and reused by another socket: not ours
            sock.shutdown(socket.SHUT_RDWR)
            return True
    except OSError:
        return False  # already closed


WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)


@contextmanager
def deadline(dbapi_connection: Any, seconds: float) -> Iterator[None]:
    """Bound whatever runs inside on ``dbapi_connection`` to ``seconds`` (libpq connections)."""
    fd = _socket_of(dbapi_connection)
    key = WATCHDOG.arm(fd, seconds) if fd is not None and fd >= 0 else None
    try:
        yield
    finally:
        WATCHDOG.disarm(key)


def _dialect_insert(name: str) -> Any:
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        return mysql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


class _RawLookup:
    """The token look-up on plain DB-API connections: the first-sight path.

    Through SQLAlchemy a pooled look-up costs ~110 us on SQLite, of which the
    database's own work is ~10 us. This runs the same statement, compiled
    once for the dialect, on a small stack of connections of its own (outside
    the engine's pool, so request threads never starve the pool). A
    connection that fails is discarded and the error re-raised as
    SQLAlchemy's ``DBAPIError``, so callers fail closed exactly as on the
    other path; the next look-up opens a fresh connection.
    """

    IDLE = 8

    def __init__(self, engine: Engine, statement: sa.Select[Any], timeout: float = DEFAULT_STORE_TIMEOUT) -> None:
        self.timeout = timeout
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.engine = engine
        self._dbapi: Any = engine.dialect.loaded_dbapi
        self._cargs, self._cparams = engine.dialect.create_connect_args(engine.url)
        self._idle: deque[Any] = deque()
        self._sqlite = engine.dialect.name == "sqlite"
        self._mysql = engine.dialect.name in ("mysql", "mariadb")

    @classmethod
    def for_engine(cls, engine: Engine, statement: sa.Select[Any], timeout: float) -> _RawLookup | None:
        name = engine.dialect.name
        if name == "sqlite":
            if engine.url.database in (None, "", ":memory:"):
                return None  # another connection would see another, empty database
            return cls(engine, statement, timeout)
        if name == "postgresql" and engine.dialect.driver == "psycopg":
            return cls(engine, statement, timeout)
        if name in ("mysql", "mariadb") and engine.dialect.driver == "pymysql":
            return cls(engine, statement, timeout)
        return None

    def _connect(self) -> Any:
        if self._sqlite:
            params = {**self._cparams, "check_same_thread": False, "timeout": self.timeout}
            connection = self._dbapi.connect(*self._cargs, **params)
            connection.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            return connection
        if self._mysql:
            # Autocommit: each look-up reads what is committed now, not a snapshot.
            params = {**self._cparams, **mysql_bounds(self.timeout), "autocommit": True}
            connection = self._dbapi.connect(*self._cargs, **params)
            mysql_session(connection, self.timeout, isolation=True)
            return connection
        return connect_raw(self._dbapi, self._cargs, self._cparams, self.timeout)

    def fetch(self, jti: str) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = None
        try:
            if connection is None:
                connection = self._connect()
            with deadline(connection, self.timeout):
                params = (jti,) if self.positional else {"jti": jti}
                if self._mysql:  # PyMySQL connections have no execute()
                    cursor = connection.cursor()
                    cursor.execute(self.sql, params)
                else:
                    cursor = connection.execute(self.sql, params)
                row = cursor.fetchone()
                cursor.close()
        except self._dbapi.Error as exc:
            if connection is not None:
                with suppress(Exception):
                    connection.close()
            raise sa.exc.DBAPIError.instance(self.sql, None, exc, self._dbapi.Error) from None
        if len(self._idle) < self.IDLE:
            self._idle.append(connection)
        else:
            connection.close()
        return row

    def dispose(self) -> None:
        while self._idle:
            with suppress(Exception):
                self._idle.pop().close()

    def forget_after_fork(self) -> None:
        """In a forked child: never use, close or garbage-collect the parent's
        connections (closing would end the parent's sessions); keep them."""
        _INHERITED.extend(self._idle)
        self._idle.clear()


@contextmanager
def _mysql_long_statements(conn: Connection, seconds: float) -> Iterator[None]:
    """Let this MySQL/MariaDB connection's statements run ``seconds`` (the purge), then bound them again."""
    dbapi_connection: Any = conn.connection.dbapi_connection
    ordinary = dbapi_connection._read_timeout
    mariadb = "mariadb" in str(dbapi_connection.get_server_info()).lower()

    def bound(limit: float) -> None:
        dbapi_connection._read_timeout = limit  # PyMySQL reads it before each packet
        if mariadb:
            conn.execute(sa.text(f"SET SESSION max_statement_time = {limit:.3f}"))
        conn.execute(sa.text(f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(limit))}"))

    bound(seconds)
    try:
        yield
    finally:
        with suppress(Exception):  # a failed connection is discarded anyway
            bound(ordinary)


#: Connections inherited across fork(), kept alive on purpose (see above).
_INHERITED: list[Any] = []


def connect_raw(dbapi: Any, cargs: Sequence[Any], cparams: Mapping[str, Any], timeout: float) -> Any:
    """A psycopg connection outside the pool (autocommit), with the bounds of :func:`libpq_bounds`."""
    options = cparams.get("options")
    params = {**cparams, **libpq_bounds(options if isinstance(options, str) else None, timeout)}
    return dbapi.connect(*cargs, **params, autocommit=True)


class SQLStore:
    """Reads and writes the store's tables through one ``Engine``."""

    def __init__(
        self,
        engine: Engine,
        metadata: sa.MetaData | None = None,
        *,
        event_ttl: int = 3720,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        self.engine = engine
        self.metadata = metadata if metadata is not None else sa.MetaData()
        self.tables = define_tables(self.metadata)
        self._lookup = self._lookup_statement()
        #: How long a replication event must be kept: as long as an access
        #: token issued before it can live (its lifetime, the leeway, a margin).
        self.event_ttl = event_ttl
        #: How long a retired signing key must still verify (a refresh-token lifetime and more).
        self.key_ttl = 31 * 86400
        self.is_postgres = engine.dialect.name == "postgresql"
        #: MySQL or MariaDB: no UPDATE ... RETURNING, no ON CONFLICT.
        self.is_mysql = engine.dialect.name in ("mysql", "mariadb")
        #: Called with the highest log sequence number of each committed
        #: transaction that wrote to the log (a push channel's publisher).
        self.announcer: Callable[[int], object] | None = None
        self._raw = _RawLookup.for_engine(engine, self._lookup, timeout)
        self._timeout = timeout

    @property
    def timeout(self) -> float:
        """The bound, in seconds, on each operation (``LOGOUT_STORE_TIMEOUT``)."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = seconds
        if self._raw is not None:
            self._raw.timeout = seconds

    @contextmanager
    def connect(self, seconds: float | None = None) -> Iterator[Connection]:
        """A pooled connection whose work must finish within ``seconds`` (default: the store timeout).

        Past the bound the connection is cut, the operation raises a
        ``DBAPIError`` and the pool drops the connection (and every other
        connection opened before it). The bound covers the connection's
        return to the pool as well: closing it rolls back, which is one more
        round trip that a silent socket would otherwise hold forever.
        """
        conn = self.engine.connect()
        with deadline(conn.connection.dbapi_connection, seconds or self._timeout), conn:
            yield conn

    def connect_listener(self) -> Any:
        """A PostgreSQL (psycopg) connection of its own, outside the pool, for ``LISTEN``."""
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        return connect_raw(self.engine.dialect.loaded_dbapi, cargs, cparams, self._timeout)

    # -- replication log --------------------------------------------------

    def _event(
        self, conn: Connection, kind: str, key: str, value: int | None = None, expires_at: int | None = None
    ) -> None:
        """Append to the replication log in the caller's transaction.

        On PostgreSQL a NOTIFY goes with it; it is delivered at commit, so a
        listener never hears of a revocation before it can read it.
        """
        now = time.time()
        result = conn.execute(
            self.tables.events.insert().values(
                kind=kind,
                key=key,
                value=value,
                expires_at=expires_at if expires_at is not None else int(now) + self.event_ttl,
                created_at=now,
            )
        )
        if self.announcer is not None:
            seq = result.inserted_primary_key[0] if result.inserted_primary_key else None
            if seq is not None:
                conn.info[_LOGGED] = max(int(seq), conn.info.get(_LOGGED, 0))
        if self.is_postgres:
            conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})

    def signing_keys(self) -> list[Any]:
        """Every stored signing key (see :mod:`flask_logout.keys`)."""
        from .keys import StoredKey

        t = self.tables.keys
        with self.connect() as conn:
            rows = conn.execute(sa.select(t.c.kid, t.c.algorithm, t.c.private_pem, t.c.created_at, t.c.retired_at))
            return [StoredKey(r[0], r[1], r[2], float(r[3]), None if r[4] is None else float(r[4])) for r in rows]

    def add_signing_key(self, kid: str, algorithm: str, private_pem: str, *, retire_others: bool) -> bool:
        """Store a key (False if that kid exists); with ``retire_others`` it becomes the only active one."""
        t = self.tables.keys
        now = time.time()
        with self.transaction() as conn:
            if retire_others:
                conn.execute(t.update().where(t.c.retired_at.is_(None), t.c.kid != kid).values(retired_at=now))
            added = self._insert_new(
                conn, t, {"kid": kid, "algorithm": algorithm, "private_pem": private_pem, "created_at": now}
            )
            self._event(conn, "keys", "ring")
            return added

    def events_since(self, seq: int, limit: int = 5000) -> list[Event]:
        """Log entries after ``seq`` that still matter, in sequence order."""
        t = self.tables.events
        query = (
            sa.select(t.c.seq, t.c.kind, t.c.key, t.c.value, t.c.expires_at)
            .where(t.c.seq > seq)
            .order_by(t.c.seq)
            .limit(limit)
        )
        with self.connect() as conn:
            return [
                Event(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3]), int(r[4]))
                for r in conn.execute(query)
            ]

    def purge(self, now: int, *, token_grace: int = 86400) -> dict[str, int]:
        """Delete what can no longer matter; returns counts by table.

        * log entries past their expiry (no token they could end is alive);
        * token rows expired for over ``token_grace`` seconds (kept a while so
          that a late, expired token still answers "expired", not "unknown");
        * sessions none of whose tokens remain;
        * logout-token ids past their replay window.

        Generation counters are never deleted: they are one row per subject,
        and losing one would revive nothing but would reset the count.
        """
        seconds = max(PURGE_TIMEOUT, 10 * self._timeout)
        with self.transaction(seconds) as conn:
            if self.is_postgres:
                conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(seconds * 1000)}"))
            pymysql = self.is_mysql and self.engine.dialect.driver == "pymysql"
            with _mysql_long_statements(conn, seconds) if pymysql else nullcontext():
                return self._purge(conn, now, token_grace)

    def _purge(self, conn: Connection, now: int, token_grace: int) -> dict[str, int]:
        t = self.tables
        counts = {}
        counts["events"] = conn.execute(t.events.delete().where(t.events.c.expires_at < now)).rowcount
        counts["tokens"] = conn.execute(t.tokens.delete().where(t.tokens.c.expires_at < now - token_grace)).rowcount
        counts["families"] = conn.execute(
            t.families.delete().where(
                t.families.c.created_at < now - token_grace,
                ~sa.exists().where(t.tokens.c.family == t.families.c.family),
            )
        ).rowcount
        counts["seen"] = conn.execute(t.seen.delete().where(t.seen.c.expires_at < now)).rowcount
        counts["keys"] = conn.execute(
            t.keys.delete().where(t.keys.c.retired_at.is_not(None), t.keys.c.retired_at < now - self.key_ttl)
        ).rowcount
        return {k: int(v) for k, v in counts.items()}

    # -- schema -----------------------------------------------------------

    def dispose(self) -> None:
        """Close every connection this store holds."""
        if self._raw is not None:
            self._raw.dispose()
        self.engine.dispose()

    def recycle(self) -> None:
        """Close the idle connections (pool and look-up); the next operations open fresh ones."""
        if self._raw is not None:
            self._raw.dispose()
        self.engine.pool.dispose()

    def after_fork(self) -> None:
        """Drop inherited connections without closing them (SQLAlchemy's advice for fork)."""
        if self._raw is not None:
            self._raw.forget_after_fork()
        self.engine.dispose(close=False)

    def create_all(self) -> None:
        """Create the store's tables if they are missing (and only those)."""
        try:
            self.metadata.create_all(self.engine, tables=self.tables.all(), checkfirst=True)
        except sa.exc.SQLAlchemyError:
            # Two workers starting at once can race on CREATE TABLE; the
            # loser finds the tables made by the winner on a second look.
            self.metadata.create_all(self.engine, tables=self.tables.all(), checkfirst=True)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Add the nullable columns of later releases to tables made by an earlier one.

        Only with ``LOGOUT_CREATE_TABLES`` (this is called by :meth:`create_all`);
        under Flask-Migrate the migrations add them (docs/migrations.md).
        """
        inspector = sa.inspect(self.engine)
        for attribute, names in _ADDED_COLUMNS.items():
            table: sa.Table = getattr(self.tables, attribute)
            present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
            for name in names:
                if name in present:
                    continue
                column = table.c[name]
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} {column.type.compile(self.engine.dialect)}"
                try:
                    with self.engine.begin() as conn:
                        conn.execute(sa.text(ddl))
                except sa.exc.SQLAlchemyError:
                    # Another worker added it meanwhile: fine if it is there now.
                    present = {c["name"] for c in sa.inspect(self.engine).get_columns(table.name, schema=table.schema)}
                    if name not in present:
                        raise

    @contextmanager
    def transaction(self, seconds: float | None = None) -> Iterator[Connection]:
        """A transaction, committed on exit, bounded like :meth:`connect` (the commit included).

        If the bound passes during the commit, the caller cannot know whether
        it was committed: it answers 503, and the operation must be one that
        is safe to retry.
        """
        with self.connect(seconds) as conn:
            conn.info.pop(_LOGGED, None)
            with conn.begin():
                yield conn
            logged = conn.info.pop(_LOGGED, None)
        if logged is not None and self.announcer is not None:
            self.announcer(logged)  # after the commit: a reader finds what it is told of

    # -- subjects ---------------------------------------------------------

    def _insert_new(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """INSERT unless the primary key exists; True if this call inserted.

        ``ON CONFLICT DO NOTHING`` rather than a SAVEPOINT: pysqlite does not
        give SQLAlchemy working savepoints by default, so a savepoint there
        can commit what its transaction later rolls back.
        """
        dialect = self.engine.dialect.name
        if dialect in ("postgresql", "sqlite"):
            key = table.primary_key.columns.values()[0]
            insert = _dialect_insert(dialect)(table).values(**values).on_conflict_do_nothing().returning(key)
            return conn.execute(insert).first() is not None  # rowcount is not reliable here
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(**values))
        except IntegrityError:
            return False
        return True

    def current_generation(self, conn: Connection, subject: str) -> int:
        """The subject's generation, creating its row (at 0) on first use."""
        t = self.tables.subjects
        row = conn.execute(sa.select(t.c.generation).where(t.c.subject == subject)).first()
        if row is not None:
            return int(row[0])
        if self._insert_new(conn, t, {"subject": subject, "generation": 0, "updated_at": time.time()}):
            return 0
        again = sa.select(t.c.generation).where(t.c.subject == subject)
        if self.is_mysql:
            # A locking read sees the row another transaction just committed,
            # whatever the isolation level (REPEATABLE READ would not).
            again = again.with_for_update(read=True)
        return int(conn.execute(again).scalar_one())

    def bump_generation(self, subject: str) -> int:
        """End every token of ``subject``: one row changes, whatever their number.

        A subject that never had a row starts at 1, so that nothing signed
        under generation 0 (by another process, right now) survives.
        """
        with self.transaction() as conn:
            return self._bump_generation(conn, subject)

    def _bump_generation(self, conn: Connection, subject: str) -> int:
        """:meth:`bump_generation` in the caller's transaction (logged for the replicas)."""
        if self.is_mysql:
            generation = self._bump_generation_mysql(conn, subject)
        else:
            t = self.tables.subjects
            result = conn.execute(
                t.update()
                .where(t.c.subject == subject)
                .values(generation=t.c.generation + 1, updated_at=time.time())
                .returning(t.c.generation)
            ).first()
            if result is not None:
                generation = int(result[0])
            elif self._insert_new(conn, t, {"subject": subject, "generation": 1, "updated_at": time.time()}):
                generation = 1
            else:  # created by another process meanwhile: bump that row
                generation = int(
                    conn.execute(
                        t.update()
                        .where(t.c.subject == subject)
                        .values(generation=t.c.generation + 1, updated_at=time.time())
                        .returning(t.c.generation)
                    ).scalar_one()
                )
        self._event(conn, "gen", subject, generation)
        return generation

    def _bump_generation_mysql(self, conn: Connection, subject: str) -> int:
        """The bump without UPDATE ... RETURNING: one upsert, then read our own row.

        The upsert leaves the row locked by this transaction until it commits,
        so the value read back is the one this call wrote.
        """
        t = self.tables.subjects
        now = time.time()
        upsert = (
            _dialect_insert("mysql")(t)
            .values(subject=subject, generation=1, updated_at=now)
            .on_duplicate_key_update(generation=t.c.generation + 1, updated_at=now)
        )
        conn.execute(upsert)
        return int(conn.execute(sa.select(t.c.generation).where(t.c.subject == subject)).scalar_one())

    # -- tokens -----------------------------------------------------------

    def record_family(
        self,
        conn: Connection,
        family: str,
        subject: str,
        sso: SsoLogin | None = None,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"family": family, "subject": subject, "created_at": time.time()}
        if user_agent:
            values["user_agent"] = user_agent[:MAX_USER_AGENT]
        if ip:
            values["ip"] = ip[:MAX_IP]
        if sso is not None:
            values.update(provider=sso.provider, provider_sid=sso.sid, provider_sub=sso.sub, id_token=sso.id_token)
        conn.execute(self.tables.families.insert().values(**values))

    def family_sso(self, family: str) -> SsoLogin | None:
        """The OpenID provider session a family was created from, if any."""
        t = self.tables.families
        with self.connect() as conn:
            row = conn.execute(
                sa.select(t.c.provider, t.c.provider_sid, t.c.provider_sub, t.c.id_token).where(t.c.family == family)
            ).first()
        if row is None or row[0] is None:
            return None
        return SsoLogin(provider=row[0], sid=row[1], sub=row[2], id_token=row[3] or "")

    def revoke_provider_sessions(
        self, provider: str, sid: str | None, sub: str | None, *, once: tuple[str, int] | None = None
    ) -> int | None:
        """End the sessions of one provider session (``sid``) or one provider user (``sub``).

        One UPDATE; with both given, a session must match both (OIDC
        Back-Channel Logout 1.0, section 2.4). ``once`` is a logout token's
        ``(key, expires_at)``: it is recorded in the same transaction, so a
        token seen before ends nothing (``None`` is returned), and a failed
        attempt leaves no record behind that would refuse the provider's retry.
        """
        t = self.tables.families
        conditions = [t.c.provider == provider, t.c.revoked_at.is_(None)]
        if sid is not None:
            conditions.append(t.c.provider_sid == sid)
        if sub is not None:
            conditions.append(t.c.provider_sub == sub)
        with self.transaction() as conn:
            if once is not None and not self.remember_once(*once, conn=conn):
                return None
            if self.is_mysql:  # no UPDATE ... RETURNING: lock the rows, then end them
                ended = conn.execute(sa.select(t.c.family).where(*conditions).with_for_update()).fetchall()
                if ended:
                    conn.execute(
                        t.update()
                        .where(t.c.family.in_([family for (family,) in ended]), t.c.revoked_at.is_(None))
                        .values(revoked_at=time.time())
                    )
            else:
                ended = conn.execute(
                    t.update().where(*conditions).values(revoked_at=time.time()).returning(t.c.family)
                ).fetchall()
            for (family,) in ended:
                self._event(conn, "fid", family)
            return len(ended)

    def remember_once(self, key: str, expires_at: int, conn: Connection) -> bool:
        """Record ``key``; False if it was recorded before (a replay), in any process.

        The record joins the caller's transaction, so it is only kept if the
        work it guards is committed too.
        """
        return self._insert_new(conn, self.tables.seen, {"key": key, "expires_at": expires_at})

    def record_tokens(self, conn: Connection, rows: Sequence[TokenRow]) -> None:
        conn.execute(
            self.tables.tokens.insert(),
            [
                {
                    "jti": r.jti,
                    "typ": r.typ,
                    "subject": r.subject,
                    "family": r.family,
                    "client_id": r.client_id,
                    "generation": r.generation,
                    "issued_at": r.issued_at,
                    "expires_at": r.expires_at,
                }
                for r in rows
            ],
        )

    def _lookup_statement(self) -> sa.Select[Any]:
        tok, fam, sub, cli = self.tables.tokens, self.tables.families, self.tables.subjects, self.tables.clients
        return (
            sa.select(
                tok.c.typ,
                tok.c.subject,
                tok.c.family,
                tok.c.generation,
                sub.c.generation,
                tok.c.revoked_at,
                fam.c.revoked_at,
                cli.c.allowed_cidrs,
                tok.c.replaced_by,
                tok.c.expires_at,
            )
            .select_from(
                tok.outerjoin(fam, fam.c.family == tok.c.family)
                .outerjoin(sub, sub.c.subject == tok.c.subject)
                .outerjoin(cli, cli.c.client_id == tok.c.client_id)
            )
            .where(tok.c.jti == sa.bindparam("jti"))
        )

    def lookup(self, jti: str, conn: Connection | None = None) -> TokenState | None:
        """One indexed query: the token, its family, its subject, its client.

        Outside a transaction it runs on the fast path (:class:`_RawLookup`)
        where the backend allows it.
        """
        if conn is not None:
            row = conn.execute(self._lookup, {"jti": jti}).first()
        elif self._raw is not None:
            row = self._raw.fetch(jti)
        else:
            with self.connect() as own:
                row = own.execute(self._lookup, {"jti": jti}).first()
        if row is None:
            return None
        typ, subject, family, gen, current, tok_revoked, fam_revoked, cidrs, replaced_by, expires_at = row
        return TokenState(
            typ=typ,
            subject=subject,
            family=family,
            generation=int(gen),
            current_generation=int(current or 0),
            token_revoked=tok_revoked is not None,
            family_revoked=fam_revoked is not None,
            allowed_cidrs=cidrs,
            revoked_at=tok_revoked,
            replaced_by=replaced_by,
            expires_at=int(expires_at),
        )

    def revoke_token(
        self, jti: str, conn: Connection, *, replaced_by: str | None = None, access_expires_at: int | None = None
    ) -> bool:
        """Mark one token revoked; False if it already was (or is unknown).

        The ``revoked_at IS NULL`` guard makes a rotation race-free: of two
        requests refreshing with the same token, exactly one wins. Revoking an
        access token (``access_expires_at`` given) is also logged for the
        replicas; rotating a refresh token is not, as refresh tokens are
        always checked against the store.
        """
        t = self.tables.tokens
        result = conn.execute(
            t.update()
            .where(t.c.jti == jti, t.c.revoked_at.is_(None))
            .values(revoked_at=time.time(), replaced_by=replaced_by)
        )
        changed = bool(result.rowcount == 1)
        if changed and access_expires_at is not None:
            self._event(conn, "jti", jti, expires_at=access_expires_at)
        return changed

    def revoke_family(self, family: str) -> bool:
        t = self.tables.families
        with self.transaction() as conn:
            result = conn.execute(
                t.update().where(t.c.family == family, t.c.revoked_at.is_(None)).values(revoked_at=time.time())
            )
            changed = bool(result.rowcount == 1)
            if changed:
                self._event(conn, "fid", family)
            return changed

    def live_sessions(self, subject: str, now: int) -> list[SessionInfo]:
        """The sign-ins of ``subject`` that can still be refreshed, oldest first.

        A session lives while its family is not revoked, it was issued under
        the subject's current generation, and one of its refresh tokens is
        neither rotated out nor expired.
        """
        tok, fam, sub = self.tables.tokens, self.tables.families, self.tables.subjects
        query = (
            sa.select(fam.c.family, fam.c.created_at, sa.func.max(tok.c.expires_at), fam.c.user_agent, fam.c.ip)
            .select_from(fam.join(tok, tok.c.family == fam.c.family).outerjoin(sub, sub.c.subject == fam.c.subject))
            .where(
                fam.c.subject == subject,
                fam.c.revoked_at.is_(None),
                tok.c.typ == "refresh",
                tok.c.revoked_at.is_(None),
                tok.c.expires_at > now,
                tok.c.generation == sa.func.coalesce(sub.c.generation, 0),
            )
            .group_by(fam.c.family, fam.c.created_at, fam.c.user_agent, fam.c.ip)
            .order_by(fam.c.created_at)
        )
        with self.connect() as conn:
            return [SessionInfo(row[0], float(row[1]), int(row[2]), row[3], row[4]) for row in conn.execute(query)]

    # -- clients ----------------------------------------------------------

    def put_client(
        self,
        client_id: str,
        secret_hash: str,
        allowed_cidrs: Sequence[str],
        *,
        same_secret: Callable[[str], bool] | None = None,
    ) -> int | None:
        """Create or replace an API client.

        ``same_secret(stored_hash)`` says whether the secret being stored is
        the one already stored; when it is not, every token of the client is
        revoked (its generation bumped) in the same transaction, and the new
        generation is returned (``None`` otherwise).
        """
        t = self.tables.clients
        values = {"secret_hash": secret_hash, "allowed_cidrs": json.dumps(list(allowed_cidrs))}
        generation = None
        with self.transaction() as conn:
            # Insert-if-new, else update: two workers seeding the same client at
            # start-up must not both try to INSERT it.
            row = {"client_id": client_id, "created_at": time.time(), **values}
            while not self._insert_new(conn, t, row):
                old = conn.execute(
                    sa.select(t.c.secret_hash).where(t.c.client_id == client_id).with_for_update()
                ).scalar()
                if old is None:
                    continue  # deleted meanwhile: insert it afresh
                conn.execute(t.update().where(t.c.client_id == client_id).values(**values))
                if same_secret is not None and not same_secret(old):
                    generation = self._bump_generation(conn, principal_key(client_id, client_id))
                break
            self._event(conn, "client", client_id)
        return generation

    def update_client_secret_hash(self, client_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace a client's stored hash by an equivalent one (a re-hash), unless it changed meanwhile."""
        t = self.tables.clients
        with self.transaction() as conn:
            result = conn.execute(
                t.update().where(t.c.client_id == client_id, t.c.secret_hash == old_hash).values(secret_hash=new_hash)
            )
            return bool(result.rowcount == 1)

    def get_client(self, client_id: str) -> ClientRecord | None:
        t = self.tables.clients
        with self.connect() as conn:
            row = conn.execute(sa.select(t.c.secret_hash, t.c.allowed_cidrs).where(t.c.client_id == client_id)).first()
        if row is None:
            return None
        return ClientRecord(client_id, row[0], tuple(json.loads(row[1] or "[]")))

    def delete_client(self, client_id: str) -> int | None:
        """Delete an API client and revoke every token of it, in one transaction.

        Returns the client's new generation, or ``None`` if there was no such
        client (then nothing changes).
        """
        t = self.tables.clients
        with self.transaction() as conn:
            if not conn.execute(t.delete().where(t.c.client_id == client_id)).rowcount:
                return None
            generation = self._bump_generation(conn, principal_key(client_id, client_id))
            self._event(conn, "client", client_id)
            return generation
