"""Per-request cost, in one process, each configuration called as a WSGI app.

Rows: bare Flask; flask-logout hot (a token seen before), cold (first sight:
decode + one SQLite query), strict (a query every request); raw
``jwt.decode``; Flask-JWT-Extended with an in-memory blocklist and with its
documented SQLAlchemy blocklist (SQLite, 100k rows). Overhead = the
configuration minus the same app called beneath the middleware.
"""

from __future__ import annotations

from typing import Any

import jwt

from .apps import SECRET, bare_app, fje_memory_app, fje_sqlalchemy_app, logout_app
from .harness import environ, per_call_ns, per_item_ns, wsgi_call


def measure(quick: bool = False) -> dict[str, Any]:
    number, repeats = (1000, 5) if quick else (3000, 11)
    bare = bare_app()
    app, service = logout_app()
    strict_app, strict_service = logout_app(LOGOUT_STRICT=True)
    for svc in (service, strict_service):
        svc.register_client("bench", "bench-secret")  # a client token needs its client
    pair = service.issue_tokens("bench", client_id="bench")
    strict_pair = strict_service.issue_tokens("bench", client_id="bench")
    fje_memory, fje_memory_token = fje_memory_app()
    fje_sql, fje_sql_token = fje_sqlalchemy_app(20_000 if quick else 100_000)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def noop(environ_: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    from flask_logout import BearerMiddleware

    calls = {
        "bare_flask": wsgi_call(bare.wsgi_app, environ("/api/me")),
        "same_app_beneath": wsgi_call(app.wsgi_app.app, environ("/api/me", bearer(pair.access_token))),
        "hot": wsgi_call(app.wsgi_app, environ("/api/me", bearer(pair.access_token))),
        "strict": wsgi_call(strict_app.wsgi_app, environ("/api/me", bearer(strict_pair.access_token))),
        "fje_memory": wsgi_call(fje_memory.wsgi_app, environ("/api/me", bearer(fje_memory_token))),
        "fje_sqlalchemy": wsgi_call(fje_sql.wsgi_app, environ("/api/me", bearer(fje_sql_token))),
        "jwt_decode": lambda: jwt.decode(pair.access_token, SECRET, algorithms=["HS256"]),
        "noop_wsgi": wsgi_call(noop, environ("/api/me", bearer(pair.access_token))),
        "middleware_noop": wsgi_call(
            BearerMiddleware(noop, service, ["/api"]), environ("/api/me", bearer(pair.access_token))
        ),
    }
    figures = per_call_ns(calls, number=number, repeats=repeats)

    # Cold: every request carries a token this process has never seen.
    batch = 300 if quick else 1000

    def cold_calls() -> list[Any]:
        tokens = [service.issue_tokens("bench", client_id="bench").access_token for _ in range(batch)]
        return [wsgi_call(app.wsgi_app, environ("/api/me", bearer(t))) for t in tokens]

    figures["cold"] = per_item_ns(cold_calls, repeats=3 if quick else 5)
    service.close()
    strict_service.close()
    return figures
