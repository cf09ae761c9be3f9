"""Per-request cost, in one process, each configuration called as a WSGI app.

What a user pays is the whole protected request through a Flask app that
uses flask-logout the documented way (``LogoutManager`` with
``LOGOUT_PROTECTED_PATHS``, ``current_token()`` in the view) minus the same
request through the same app without flask-logout (same routes, same
``SECRET_KEY``, the view minus the token): that difference is the overhead.
Flask-JWT-Extended's overheads are measured the same way against the same
bare app. Every overhead is the median of differences paired round by round
(see :func:`benchmarks.harness.paired_ns`).

Each configuration is a function below that builds its app and returns one
request as a zero-argument call; :data:`CONFIGURATIONS` lists them. A new
row (say, a cookie-authenticated page, or a Flask-Login view) is one more
function returning a call, one more entry, and a row in ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jwt

from .apps import (
    BROWSER,
    SECRET,
    bare_app,
    bare_page_app,
    cookie_middleware_app,
    cookie_required_app,
    fje_memory_app,
    fje_sqlalchemy_app,
    flask_login_app,
    logout_app,
)
from .harness import INSTANCE, Call, configuration_of, environ, paired_ns, per_item_ns, wsgi_call

PATH = "/api/me"
PAGE = "/page"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _decoding(app: Any) -> Any:
    """``app`` behind a WSGI function that verifies the bearer token with raw ``jwt.decode``."""

    def decode_then_call(environ_: dict[str, Any], start_response: Any) -> Any:
        jwt.decode(environ_["HTTP_AUTHORIZATION"][7:], SECRET, algorithms=["HS256"])
        return app(environ_, start_response)

    return decode_then_call


def _noop(environ_: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b""]


class Setup:
    """What the configurations share: the flask-logout apps, built once, and what to close."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.app, self.service = logout_app()
        self.token = self.service.issue_tokens("bench", client_id="bench").access_token
        self.strict_app, self.strict_service = logout_app(LOGOUT_STRICT=True)
        self.strict_token = self.strict_service.issue_tokens("bench", client_id="bench").access_token

        # Browser sessions: the cookies a browser signed in through the library sends.
        self.cookie_app, self.cookie_service = cookie_middleware_app()
        self.cookie_required_app, self.cookie_required_service = cookie_required_app()
        self.session_cookies = _session_cookies(self.cookie_service)
        self.required_cookies = _session_cookies(self.cookie_required_service)

    def close(self) -> None:
        for service in (self.service, self.strict_service, self.cookie_service, self.cookie_required_service):
            service.close()


def _session_cookies(service: Any) -> dict[str, str]:
    """The ``Cookie`` header of a browser signed in with the library's session cookies (DS and DSR)."""
    pair = service.issue_tokens("bench-user")
    names = service.config.cookies
    return {"Cookie": f"{names.session_name}={pair.access_token}; {names.refresh_name}={pair.refresh_token}"}


def bare_flask(setup: Setup) -> Call:
    """The baseline: the same app without flask-logout (the request carries the same header)."""
    return wsgi_call(bare_app(), environ(PATH, bearer(setup.token)))


def flask_logout_hot(setup: Setup) -> Call:
    """The documented way, a token this process has checked before."""
    return wsgi_call(setup.app, environ(PATH, bearer(setup.token)))


def flask_logout_strict(setup: Setup) -> Call:
    """``LOGOUT_STRICT = True``: the store is queried on every request (SQLite)."""
    return wsgi_call(setup.strict_app, environ(PATH, bearer(setup.strict_token)))


def same_app_beneath(setup: Setup) -> Call:
    """The flask-logout app called beneath its middleware (the old baseline; information)."""
    return wsgi_call(setup.app.wsgi_app.__self__.app, environ(PATH, bearer(setup.token)))


def fje_memory(setup: Setup) -> Call:
    """Flask-JWT-Extended with its documented in-memory (set) blocklist."""
    app, token = fje_memory_app()
    return wsgi_call(app, environ(PATH, bearer(token)))


def fje_sqlalchemy(setup: Setup) -> Call:
    """Flask-JWT-Extended with its documented SQLAlchemy blocklist (SQLite, 100k rows)."""
    app, token = fje_sqlalchemy_app(20_000 if setup.quick else 100_000)
    return wsgi_call(app, environ(PATH, bearer(token)))


def noop_wsgi(setup: Setup) -> Call:
    """A WSGI app that does nothing: the baseline of the plain-WSGI row."""
    return wsgi_call(_noop, environ(PATH, bearer(setup.token)))


def middleware_noop(setup: Setup) -> Call:
    """``BearerMiddleware`` (plain WSGI, no Flask) around the no-op app, hot token."""
    from flask_logout import BearerMiddleware

    return wsgi_call(BearerMiddleware(_noop, setup.service, ["/api"]), environ(PATH, bearer(setup.token)))


def bare_page(setup: Setup) -> Call:
    """The browser-session baseline: the bare app's page, the same cookies sent."""
    return wsgi_call(bare_page_app(), environ(PAGE, setup.session_cookies))


def cookie_session(setup: Setup) -> Call:
    """``LOGOUT_COOKIE_AUTH``: the middleware verifies the session cookie (seen before)."""
    return wsgi_call(setup.cookie_app, environ(PAGE, setup.session_cookies))


def cookie_required(setup: Setup) -> Call:
    """``@cookie_required`` on the page (session cookie seen before)."""
    return wsgi_call(setup.cookie_required_app, environ(PAGE, setup.required_cookies))


def flask_login(setup: Setup) -> Call:
    """Flask-Login alone, a signed-in user's ``@login_required`` page (the Flask-Login baseline)."""
    app, cookie = flask_login_app(with_sessions=False)
    return wsgi_call(app, environ(PAGE, {"Cookie": cookie, "User-Agent": BROWSER}))


def flask_login_sessions(setup: Setup) -> Call:
    """The same Flask-Login app with ``LoginSessions`` (its session checked on every request)."""
    app, cookie = flask_login_app(with_sessions=True)
    return wsgi_call(app, environ(PAGE, {"Cookie": cookie, "User-Agent": BROWSER}))


def jwt_decode(setup: Setup) -> Call:
    """Raw ``jwt.decode`` of the same kind of token (the cold path's baseline)."""
    token = setup.token
    return lambda: jwt.decode(token, SECRET, algorithms=["HS256"])


#: name -> configuration; ``bare_flask`` is the baseline of every overhead.
CONFIGURATIONS: dict[str, Callable[[Setup], Call]] = {
    "bare_flask": bare_flask,
    "flask_logout": flask_logout_hot,
    "strict": flask_logout_strict,
    "same_app_beneath": same_app_beneath,
    "fje_memory": fje_memory,
    "fje_sqlalchemy": fje_sqlalchemy,
    "noop_wsgi": noop_wsgi,
    "middleware_noop": middleware_noop,
    "jwt_decode": jwt_decode,
    "bare_page": bare_page,
    "cookie_session": cookie_session,
    "cookie_required": cookie_required,
    "flask_login": flask_login,
    "flask_login_sessions": flask_login_sessions,
}

#: The baseline a configuration's overhead is taken against, when not ``bare_flask``:
#: what the same app costs without flask-logout (the browser pages: the same
#: page and cookies; Flask-Login: the same app with Flask-Login alone).
BASELINES: dict[str, str] = {
    "cookie_session": "bare_page",
    "cookie_required": "bare_page",
    "flask_login_sessions": "flask_login",
}


#: Processes the overhead is measured in (the median of their figures is kept).
PROCESSES = 5
#: Copies of every app in each process; a round's time of a configuration is the
#: mean over its copies. Two copies of the very same bare app, built one after
#: the other in one process, differed by up to 3 us per request (a few percent:
#: where their objects landed in memory), more than the hot path's whole
#: overhead; one copy of each app made that difference part of every figure.
INSTANCES = 3
#: Seconds one of them may take (about a minute here): a hung child fails the run instead of holding it.
CHILD_TIMEOUT = 1800


def measure(quick: bool = False, processes: int = PROCESSES) -> dict[str, Any]:
    """The figures of :func:`measure_once`, each the median over ``processes`` fresh processes.

    Within one process the paired rounds cancel the machine's noise, but not
    the process's own memory layout: where its objects landed decides cache
    conflicts, and one process's figures for a few-microsecond overhead moved
    by a factor of two between runs of the same code (instruction counts did
    not move). A median over five processes is what a run reports.
    """
    if quick:
        return measure_once(quick=True)
    runs = []
    for _ in range(processes):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.overhead", "--once", "--rounds", str(max(151 // processes, 21))],
            capture_output=True,
            text=True,
            check=True,
            timeout=CHILD_TIMEOUT,
        )
        runs.append(json.loads(done.stdout))
    return _median_of(runs)


def _median_of(runs: list[Any]) -> Any:
    """Element-wise median of figures shaped alike (numbers, nested in dicts)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: _median_of([run[key] for run in runs]) for key in first}
    return statistics.median(runs)


def measure_once(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    number, rounds = (100, 21) if quick else (100, rounds or 151)
    instances = 1 if quick else INSTANCES
    setups = [Setup(quick) for _ in range(instances)]
    setup = setups[0]
    calls = {
        f"{name}{INSTANCE}{i}": build(each) for i, each in enumerate(setups) for name, build in CONFIGURATIONS.items()
    }
    medians, overheads = paired_ns(calls, "bare_flask", number=number, rounds=rounds, baselines=BASELINES)
    figures: dict[str, Any] = dict(medians)
    figures["overhead"] = {name: overheads[name] for name in CONFIGURATIONS}
    # The plain-WSGI row pairs the middleware with the no-op app, not with Flask.
    _, noop_pair = paired_ns(
        {name: call for name, call in calls.items() if configuration_of(name) in ("noop_wsgi", "middleware_noop")},
        "noop_wsgi",
        number=number * 10,
        rounds=rounds // 3,
        warmup=100,
    )
    figures["middleware_alone"] = noop_pair["middleware_noop"]

    # Cold: every request carries a token this process has never seen. Its
    # baseline is the same bare app behind a WSGI function that decodes the
    # same kind of fresh token with raw jwt.decode: both run a decode between
    # Flask requests, with the caches of the CPU as cold for one as the other.
    batch = 300 if quick else 1000
    bare = bare_app()

    def fresh_tokens() -> list[str]:
        return [setup.service.issue_tokens("bench", client_id="bench").access_token for _ in range(batch)]

    def cold_calls() -> list[Call]:
        return [wsgi_call(setup.app, environ(PATH, bearer(t))) for t in fresh_tokens()]

    def decode_calls() -> list[Call]:
        return [wsgi_call(_decoding(bare), environ(PATH, bearer(t))) for t in fresh_tokens()]

    def bare_calls() -> list[Call]:
        return [wsgi_call(bare, environ(PATH, bearer(t))) for t in fresh_tokens()]

    cold, decode, base = [], [], []
    for _ in range(3 if quick else 7):  # interleaved
        cold.append(per_item_ns(cold_calls, repeats=1))
        decode.append(per_item_ns(decode_calls, repeats=1))
        base.append(per_item_ns(bare_calls, repeats=1))
    figures["cold"] = statistics.median(cold)
    figures["cold_overhead"] = statistics.median(c - b for c, b in zip(cold, base, strict=True))
    figures["decode_overhead"] = statistics.median(d - b for d, b in zip(decode, base, strict=True))
    for each in setups:
        each.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    """``--once``: one process's figures as JSON (what :func:`measure` runs in each child)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="measure in this process only, print JSON")
    parser.add_argument("--rounds", type=int, default=151)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    figures = measure_once(args.quick, args.rounds) if args.once else measure(args.quick)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
