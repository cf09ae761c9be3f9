"""How long a logout made through one process takes to be refused by another.

Two example-app processes on separate ports share PostgreSQL. For each
revocation: log in on A, use the token on B twice (B now serves it from its
hot path), log out through A, then ask B as fast as it answers until it
refuses. The latency is from A's logout answer to B's first refusal.

Modes: ``push`` (LISTEN/NOTIFY), ``redis`` (Redis pub/sub, same PostgreSQL
store, ``FLASK_LOGOUT_TEST_REDIS_URL``), ``redis_mariadb`` (Redis pub/sub on
a MariaDB store, ``FLASK_LOGOUT_TEST_MARIADB_URL``; only with ``--mariadb``)
and ``poll``; the push modes poll only every 30 s. Run alone:

    .venv/bin/python -m benchmarks.propagation [--quick] [--mariadb]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAST_HASH = "pbkdf2:sha256:1000"


def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "example_app.serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    if not port.isdigit():
        process.kill()
        raise RuntimeError("example app did not start")
    return process, f"http://127.0.0.1:{port}"


def _schema_uri(base: str) -> tuple[str, Any]:
    import uuid

    import sqlalchemy as sa

    engine = sa.create_engine(base)
    schema = "bench_" + uuid.uuid4().hex[:10]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()

    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def _database_uri(base: str) -> tuple[str, Any]:
    """A fresh MariaDB database, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    engine = sa.create_engine(base)
    name = "bench_" + uuid.uuid4().hex[:10]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        engine.dispose()

    return sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False), drop


def run_mode(
    base_uri: str, *, push: bool, interval: float, revocations: int, extra: dict[str, str] | None = None
) -> list[float]:
    import httpx

    uri, drop = _database_uri(base_uri) if base_uri.startswith("mysql") else _schema_uri(base_uri)
    env = {
        **os.environ,
        **(extra or {}),
        "FLASK_SECRET_KEY": "propagation-benchmark-secret-key-0123456789",
        "FLASK_LOGOUT_PRIVATE_KEY": _rsa_pem(),
        "FLASK_LOGOUT_DATABASE_URI": uri,
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "FLASK_LOGOUT_PUSH": "true" if push else "false",
        "FLASK_LOGOUT_SYNC_INTERVAL": str(interval),
        "FLASK_LOGOUT_MAX_STALENESS": str(max(10.0, interval * 3)),
    }
    a, url_a = _start(env)
    b, url_b = _start(env)
    latencies = []
    try:
        with httpx.Client() as client:
            for _ in range(revocations):
                login = client.post(
                    f"{url_a}/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"}
                )
                token = login.json()["data"]["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(2):
                    assert client.get(f"{url_b}/api/me", headers=headers).status_code == 200
                assert client.post(f"{url_a}/auth/logout", headers=headers).status_code == 200
                answered = time.perf_counter()
                deadline = answered + interval + 5.0
                while client.get(f"{url_b}/api/me", headers=headers).status_code == 200:
                    if time.perf_counter() > deadline:
                        raise RuntimeError("the revocation never reached the other process")
                latencies.append(time.perf_counter() - answered)
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(timeout=10)
        drop()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(quick: bool = False, mariadb: bool = False) -> dict[str, Any]:
    import uuid

    base = os.environ.get("FLASK_LOGOUT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("FLASK_LOGOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    mariadb_url = os.environ.get(
        "FLASK_LOGOUT_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
    )
    redis = {"FLASK_LOGOUT_REDIS_URL": redis_url, "FLASK_LOGOUT_PUSH_CHANNEL": "bench_" + uuid.uuid4().hex[:8]}
    count = 40 if quick else 200
    interval = 0.25
    results: dict[str, Any] = {"interval": interval, "revocations": count}
    modes: list[tuple[str, str, bool, dict[str, str]]] = [
        ("push", base, True, {}),
        ("redis", base, True, redis),
        ("poll", base, False, {}),
    ]
    if mariadb:
        modes.insert(2, ("redis_mariadb", mariadb_url, True, redis))
    for mode, uri, push, extra in modes:
        latencies = run_mode(uri, push=push, interval=interval if not push else 30.0, revocations=count, extra=extra)
        results[f"{mode}_p50"] = statistics.median(latencies)
        results[f"{mode}_p99"] = percentile(latencies, 0.99)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mariadb", action="store_true", help="also Redis pub/sub on a MariaDB store")
    args = parser.parse_args()
    figures = measure(quick=args.quick, mariadb=args.mariadb)
    print(f"{figures['revocations']} revocations per mode, p50 / p99:")
    for mode in ("push", "redis", "redis_mariadb", "poll"):
        if f"{mode}_p50" in figures:
            print(f"  {mode:14} {figures[f'{mode}_p50'] * 1000:7.1f} ms / {figures[f'{mode}_p99'] * 1000:7.1f} ms")
