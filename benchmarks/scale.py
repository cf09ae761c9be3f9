"""How the hot path scales with live revocations and whitelist size; logout-all cost."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from typing import Any

from flask_logout.store import Event

from .apps import logout_app
from .harness import environ, per_call_ns, wsgi_call


def _fill(service: Any, count: int) -> None:
    expires = int(time.time()) + 3600
    replica = service.replica
    for seq in range(count):
        replica.apply(Event(seq, "jti", f"bench-revoked-{seq:012d}", None, expires))


def _noop(environ_: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


def measure(quick: bool = False) -> dict[str, Any]:
    """The middleware alone (around a no-op WSGI app), so Flask's own time does not hide a difference."""
    from flask_logout import BearerMiddleware

    sizes = (0, 10_000, 100_000) if quick else (0, 10_000, 1_000_000)
    calls = {}
    services = []
    for size in sizes:
        _, service = logout_app()
        services.append(service)
        _fill(service, size)
        service.register_client("bench", "bench-secret")  # a client token needs its client
        pair = service.issue_tokens("bench", client_id="bench")
        calls[f"revocations_{size}"] = wsgi_call(
            BearerMiddleware(_noop, service, ["/api"]),
            environ("/api/me", {"Authorization": f"Bearer {pair.access_token}"}),
        )
    # A client whose whitelist has 100 disjoint ranges; the request matches the last.
    _, service = logout_app()
    services.append(service)
    ranges = [f"10.{i}.0.0/16" for i in range(100)]
    service.register_client("ranged", "ranged-secret", ranges)
    pair = service.issue_tokens("ranged", client_id="ranged")
    calls["whitelist_100"] = wsgi_call(
        BearerMiddleware(_noop, service, ["/api"]),
        environ("/api/me", {"Authorization": f"Bearer {pair.access_token}"}, remote_addr="10.99.1.1"),
    )
    number, repeats = (5000, 5) if quick else (20000, 9)
    figures: dict[str, Any] = per_call_ns(calls, number=number, repeats=repeats)
    for service in services:
        service.close()

    # Memory of the replica per live revocation.
    _, service = logout_app()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    count = 100_000
    _fill(service, count)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    figures["bytes_per_revocation"] = sum(s.size_diff for s in after.compare_to(before, "filename")) / count
    service.close()

    # Logout-all: one client with 1 live token pair vs one with N.
    many = 10_000 if quick else 100_000
    _, service = logout_app()
    _bulk_issue(service, "one", 1)
    _bulk_issue(service, "many", many)
    samples: dict[str, list[float]] = {"logout_all_1": [], f"logout_all_{many}": []}
    for _ in range(5 if quick else 15):
        for client, key in (("one", "logout_all_1"), ("many", f"logout_all_{many}")):
            start = time.perf_counter_ns()
            service.revoke_client(client)
            samples[key].append(time.perf_counter_ns() - start)
    figures.update({k: statistics.median(v) for k, v in samples.items()})
    figures["logout_all_tokens"] = many
    service.close()
    return figures


def _bulk_issue(service: Any, client_id: str, pairs: int) -> None:
    """Record ``pairs`` live sessions for a client straight into the store (issuing one by one takes minutes)."""
    import secrets

    from flask_logout.store import TokenRow

    service.register_client(client_id, "secret")
    now = int(time.time())
    principal = f"client:{client_id}"
    with service.store.transaction() as conn:
        generation = service.store.current_generation(conn, principal)
        rows = []
        for _ in range(pairs):
            family = secrets.token_urlsafe(16)
            service.store.record_family(conn, family, principal)
            for typ, ttl in (("access", 3600), ("refresh", 30 * 86400)):
                rows.append(
                    TokenRow(secrets.token_urlsafe(16), typ, principal, family, client_id, generation, now, now + ttl)
                )
            if len(rows) >= 20_000:
                service.store.record_tokens(conn, rows)
                rows = []
        if rows:
            service.store.record_tokens(conn, rows)


# -- the store at scale (PostgreSQL) -------------------------------------------
#
# Not part of benchmarks.run (it writes a million rows or more): run alone,
#
#     .venv/bin/python -m benchmarks.scale --store [--rows 1000000]
#
# It fills a fresh schema with ``rows`` token rows (half access, half refresh,
# two per session), their sessions, 100 k subjects and 100 k log entries with
# generate_series, then reads the sizes of each table and its indexes, times
# first-sight look-ups, and times a purge that deletes ``rows`` expired token
# rows (a second batch, inserted already expired) and their sessions.


def store_scale(rows: int = 1_000_000, lookups: int = 2000) -> dict[str, Any]:
    import os
    import random
    import uuid

    import sqlalchemy as sa

    from flask_logout.store import SQLStore, make_engine

    base = os.environ.get("FLASK_LOGOUT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = sa.create_engine(base)
    schema = "scale_" + uuid.uuid4().hex[:10]
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    store = SQLStore(make_engine(f"{base}{sep}options=-csearch_path%3D{schema}", timeout=600.0), timeout=600.0)
    store.create_all()
    now = int(time.time())
    figures: dict[str, Any] = {"rows": rows}

    def fill(first: int, count: int, *, expired: bool) -> float:
        """``count`` token rows (``first``..), their sessions; seconds taken."""
        started = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO logout_families (family, subject, created_at) "
                    "SELECT md5('f' || i), 'user:u' || (i % 100000), :now - 90000 "
                    "FROM generate_series(:first / 2, (:first + :count) / 2 - 1) AS i"
                ),
                {"first": first, "count": count, "now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO logout_tokens "
                    "(jti, typ, subject, family, client_id, generation, issued_at, expires_at) "
                    "SELECT md5(i::text), CASE WHEN i % 2 = 0 THEN 'access' ELSE 'refresh' END, "
                    "'user:u' || ((i / 2) % 100000), md5('f' || (i / 2)), NULL, 0, :now - 90000, "
                    "CASE WHEN :expired THEN :now - 90000 WHEN i % 2 = 0 THEN :now + 3600 ELSE :now + 2592000 END "
                    "FROM generate_series(:first, :first + :count - 1) AS i"
                ),
                {"first": first, "count": count, "now": now, "expired": expired},
            )
        return time.perf_counter() - started

    try:
        figures["insert_s"] = fill(0, rows, expired=False)
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO logout_subjects (subject, generation, updated_at) "
                    "SELECT 'user:u' || i, 0, :now FROM generate_series(0, 99999) AS i"
                ),
                {"now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO logout_events (kind, key, value, expires_at, created_at) "
                    "SELECT 'fid', md5('f' || i), NULL, :now + 3720, :now FROM generate_series(1, 100000) AS i"
                ),
                {"now": now},
            )
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("logout_tokens", "logout_families", "logout_subjects", "logout_events"):
                conn.execute(sa.text(f"VACUUM ANALYZE {schema}.{table}"))
            for table in ("logout_tokens", "logout_families", "logout_subjects", "logout_events"):
                heap, indexes = conn.execute(
                    sa.text("SELECT pg_relation_size(CAST(:t AS regclass)), pg_indexes_size(CAST(:t AS regclass))"),
                    {"t": f"{schema}.{table}"},
                ).one()
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(sa.table(table, schema=schema))
                ).scalar_one()
                figures[table] = {"rows": int(count), "heap_bytes": int(heap), "index_bytes": int(indexes)}
            index_rows = conn.execute(
                sa.text(
                    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                    "WHERE schemaname = :schema AND relname = 'logout_tokens' ORDER BY indexrelname"
                ),
                {"schema": schema},
            ).all()
            figures["token_indexes"] = {name: int(size) for name, size in index_rows}

        # First-sight look-ups among `rows` tokens: the raw path, one indexed query each.
        with store.engine.connect() as conn:
            sample = [
                r[0]
                for r in conn.execute(
                    sa.text("SELECT md5(i::text) FROM generate_series(0, :n - 1) AS i"), {"n": rows}
                ).all()[:: max(1, rows // lookups)]
            ]
        random.shuffle(sample)
        jtis = sample[:lookups]
        store.lookup(jtis[0])  # open the connection
        timings = []
        for jti in jtis:
            started = time.perf_counter()
            assert store.lookup(jti) is not None
            timings.append(time.perf_counter() - started)
        timings.sort()
        figures["lookup_p50_ms"] = statistics.median(timings) * 1000
        figures["lookup_p99_ms"] = timings[int(0.99 * (len(timings) - 1))] * 1000

        # Purge: `rows` more token rows, expired for over the grace, and their sessions.
        fill(rows, rows, expired=True)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"VACUUM ANALYZE {schema}.logout_tokens"))
            conn.execute(sa.text(f"VACUUM ANALYZE {schema}.logout_families"))
        started = time.perf_counter()
        counts = store.purge(now)
        figures["purge_s"] = time.perf_counter() - started
        figures["purged"] = counts
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return figures


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="The store at scale, on PostgreSQL (see the comment above).")
    parser.add_argument("--store", action="store_true", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(store_scale(args.rows), indent=2))
