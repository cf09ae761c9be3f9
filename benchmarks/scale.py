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
