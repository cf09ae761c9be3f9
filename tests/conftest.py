"""Shared fixtures.

Store and endpoint tests run three times: on an SQLite file, on the real
PostgreSQL server named by ``FLASK_LOGOUT_TEST_POSTGRES_URL`` and on the real
MariaDB (or MySQL) server named by ``FLASK_LOGOUT_TEST_MARIADB_URL``. Each
PostgreSQL test gets a schema of its own, each MariaDB test a database of its
own, dropped afterwards. Without a server those runs skip with the reason,
except under ``CI=true``, where a missing server fails them.

Under ``CI=true`` no test may skip, for any reason: the hooks at the end of
this file turn every skip (``pytest.skip``, ``skipif``, a module-level
``importorskip`` at collection time) into a failure that names the reason.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify

from flask_logout import LogoutManager, LogoutService, current_token, get_service

PG_URL = os.environ.get("FLASK_LOGOUT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get(
    "FLASK_LOGOUT_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
)
SECRET = "test-secret-key-that-is-long-enough-for-hs256!"
FAST_HASH = "pbkdf2:sha256:1000"  # real hashing, cheap enough for hundreds of logins

DEMO = ("demo-client", "demo-secret", ("127.0.0.0/8", "::1/128"))
OTHER = ("other-client", "other-secret", ())
LOCKED = ("locked-client", "locked-secret", ("203.0.113.0/24",))
V6_ONLY = ("v6-client", "v6-secret", ("2001:db8::/32",))

_pg_state: dict[str, Any] = {}
_mariadb_state: dict[str, Any] = {}
REDIS_URL = os.environ.get("FLASK_LOGOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_redis_state: dict[str, Any] = {}


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason"); anything else as text.
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``CI=true`` a skipped test (setup, call or teardown) is a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"CI=true forbids skipping {item.nodeid}: {_skip_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Under ``CI=true`` a module that skips at collection (``importorskip``) is a collection error."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if _ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"CI=true forbids skipping {collector.nodeid}: {_skip_reason(report.longrepr)}"


def _postgres_engine() -> sa.Engine:
    if "engine" not in _pg_state:
        # pre-ping: a test that cuts the database's connections (a simulated
        # restart) must not leave this pool holding dead ones.
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3}, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
        except Exception as exc:  # any failure to reach the server
            _pg_state["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        _pg_state["engine"] = engine
    if "error" in _pg_state:
        reason = f"PostgreSQL not reachable at {PG_URL} ({_pg_state['error']}); set FLASK_LOGOUT_TEST_POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and " + reason)
        pytest.skip(reason)
    return _pg_state["engine"]  # type: ignore[no-any-return]


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema."""
    engine = _postgres_engine()
    schema = "t_" + uuid.uuid4().hex[:12]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    # The schema's name is also the connections' application_name, so a test
    # can cut its own connections without touching anyone else's.
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    with engine.begin() as conn:
        # Connections the test left behind (a fault proxy's half-open ones can
        # sit idle in a transaction) would block the DROP for ever: end them.
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": schema},
        )
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def _mariadb_engine() -> sa.Engine:
    if "engine" not in _mariadb_state:
        engine = sa.create_engine(MARIADB_URL, connect_args={"connect_timeout": 3}, pool_size=1)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
        except Exception as exc:  # any failure to reach the server (or PyMySQL missing)
            _mariadb_state["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        _mariadb_state["engine"] = engine
    if "error" in _mariadb_state:
        reason = (
            f"MariaDB not reachable at {sa.engine.make_url(MARIADB_URL).render_as_string(hide_password=True)} "
            f"({_mariadb_state['error']}); set FLASK_LOGOUT_TEST_MARIADB_URL"
        )
        if _ci():
            pytest.fail("CI=true and " + reason)
        pytest.skip(reason)
    return _mariadb_state["engine"]  # type: ignore[no-any-return]


@pytest.fixture
def mariadb_uri() -> Iterator[str]:
    """A MariaDB (MySQL) URL naming a fresh database, dropped afterwards."""
    engine = _mariadb_engine()
    name = "t_" + uuid.uuid4().hex[:12]
    with engine.begin() as conn:
        # The server's default collation, as a deployment has it: the store must not rely on the database's.
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield sa.engine.make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name}"))


def _redis_reachable() -> None:
    if "checked" not in _redis_state:
        _redis_state["checked"] = True
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
            client.ping()
            client.close()
        except Exception as exc:  # any failure to reach the server (or redis-py missing)
            _redis_state["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if "error" in _redis_state:
        reason = f"Redis not reachable at {REDIS_URL} ({_redis_state['error']}); set FLASK_LOGOUT_TEST_REDIS_URL"
        if _ci():
            pytest.fail("CI=true and " + reason)
        pytest.skip(reason)


@pytest.fixture
def redis_settings() -> dict[str, str]:
    """LOGOUT_REDIS_URL for the test Redis, and a channel no other test uses."""
    _redis_reachable()
    return {"LOGOUT_REDIS_URL": REDIS_URL, "LOGOUT_PUSH_CHANNEL": "t_" + uuid.uuid4().hex[:12]}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def database_uri(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    if request.param == "mariadb":
        return str(request.getfixturevalue("mariadb_uri"))
    return str(request.getfixturevalue("postgres_uri"))


def base_settings(database_uri: str, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "TESTING": True,
        "LOGOUT_SECRET_KEY": SECRET,
        "LOGOUT_DATABASE_URI": database_uri,
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "LOGOUT_PROTECTED_PATHS": ["/api"],
    }
    settings.update(overrides)
    return settings


def build_app(database_uri: str, **overrides: Any) -> Flask:
    """A small app: the extension, four API clients, and ``GET /api/me``."""
    app = Flask(__name__)
    app.config.update(base_settings(database_uri, **overrides))
    LogoutManager(app)
    service = get_service(app)
    for client_id, secret, cidrs in (DEMO, OTHER, LOCKED, V6_ONLY):
        service.register_client(client_id, secret, cidrs)

    @app.get("/api/me")
    def me() -> Any:
        token = current_token()
        assert token is not None
        return jsonify({"success": True, "data": {"client_id": token.cid, "sub": token.sub}})

    @app.get("/public")
    def public() -> Any:
        return jsonify({"public": True})

    return app


@pytest.fixture
def app(database_uri: str) -> Iterator[Flask]:
    app = build_app(database_uri)
    yield app
    get_service(app).close()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def service(app: Flask) -> LogoutService:
    return get_service(app)


@pytest.fixture
def login(client: Any) -> Callable[..., dict[str, Any]]:
    """Log an API client in from 127.0.0.1 and return the ``data`` object."""

    def _login(client_id: str = DEMO[0], secret: str = DEMO[1], ip: str = "127.0.0.1") -> dict[str, Any]:
        response = client.post(
            "/auth/login",
            json={"client_id": client_id, "client_secret": secret},
            environ_base={"REMOTE_ADDR": ip},
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]  # type: ignore[no-any-return]

    return _login


_REAL_TIME = time.time


def move_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the wall clock the library reads (``time.time``) ``seconds`` from the real one.

    The one seam for "time passes": the hot path compares expiry with
    ``time.time()`` itself, so patching a helper such as ``tokens.now`` alone
    would not reach it.
    """
    monkeypatch.setattr(time, "time", lambda: _REAL_TIME() + seconds)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(name: str, code: str, message: str) -> dict[str, Any]:
    return {"error": {"name": name, "code": code, "message": message}}


MISSING = error("UnauthorizedError", "UNAUTHORIZED", "Authorization header required")
INVALID = error("UnauthorizedError", "UNAUTHORIZED", "Invalid token")
EXPIRED = error("UnauthorizedError", "UNAUTHORIZED", "Token expired")
FORBIDDEN = error("ForbiddenError", "FORBIDDEN", "IP address not authorized")


def bad_request(message: str) -> dict[str, Any]:
    return error("BadRequestError", "BAD_REQUEST", message)


@pytest.fixture(scope="session")
def rsa_pem() -> str:
    """One RSA key for the whole run: generating one costs about 100 ms."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def example_settings(database_uri: str, rsa_pem: str, **overrides: Any) -> dict[str, Any]:
    """Settings for ``example_app.create_app`` that write nothing to its instance folder."""
    settings: dict[str, Any] = {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "LOGOUT_PRIVATE_KEY": rsa_pem,
        "LOGOUT_DATABASE_URI": database_uri,
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
    }
    settings.update(overrides)
    return settings


class LiveServer:
    """A real HTTP server (werkzeug, threaded) on a free loopback port."""

    def __init__(self, app: Flask, host: str = "127.0.0.1") -> None:
        import threading

        from werkzeug.serving import make_server

        self.app = app
        self.server = make_server(host, 0, app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_example(database_uri: str, rsa_pem: str) -> Iterator[LiveServer]:
    """The example app served over real HTTP on a free port."""
    from example_app import create_app

    app = create_app(example_settings(database_uri, rsa_pem))
    server = LiveServer(app)
    yield server
    server.stop()
    get_service(app).close()
