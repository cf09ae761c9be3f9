"""Instructions per request, counted by valgrind's callgrind: where the hot path's cost goes.

    python -m benchmarks.instructions [--requests 400] [--runs 3] [--jobs 2]

Timings on a shared machine move by tens of percent; instruction counts do
not. Each configuration runs in a child process under
``valgrind --tool=callgrind``: set-up and warm-up first, then a call of
``os.getppid()`` (callgrind zeroes its counters there:
``--zero-before=getppid``), then ``N`` requests, then ``os._exit``. The main
thread's count divided by ``N`` is the count per request, with nothing of
the set-up in it (subtracting a run of ``N`` from a run of ``2 N`` carried the
set-up's own variation, a few million instructions, into the result) and
nothing of the replica's sync thread (it wakes on wall-clock time, which
valgrind stretches). The median of ``--runs`` child processes is kept:
between processes a configuration still moves by about 3,000 instructions
(the GIL hand-offs to that thread, collections of the garbage collector).
``PYTHONHASHSEED=0`` keeps dict layouts alike between runs. Needs valgrind
(Debian: ``apt-get install valgrind``); about half a minute per run.

The configurations separate the parts of the documented setup: the bare app;
the bare app with the library's routes registered (routing); the bare app
whose view calls ``current_token()``; the flask-logout app called beneath its
middleware (everything the extension adds to the app itself); the whole
protected request; and the middleware around a no-op WSGI app.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from .harness import Call, environ, wsgi_call


def _bare_with_library_routes(setup: Any) -> Call:
    from flask_logout.dialects.client_api import bp

    from .apps import bare_app
    from .overhead import PATH, bearer

    app = bare_app()
    app.register_blueprint(bp)
    return wsgi_call(app, environ(PATH, bearer(setup.token)))


def _bare_with_current_token(setup: Any) -> Call:
    from flask import Flask, jsonify

    from flask_logout import current_token_or_none

    from .apps import FLASK_SECRET, _public_routes
    from .overhead import PATH, bearer

    app = Flask("bare")
    app.config["SECRET_KEY"] = FLASK_SECRET
    _public_routes(app)

    @app.get(PATH)
    def me() -> Any:
        token = current_token_or_none()  # None: nothing verified a token
        return jsonify({"success": True, "data": {"client_id": token.cid if token else "bench"}})

    return wsgi_call(app, environ(PATH, bearer(setup.token)))


def configurations() -> dict[str, Callable[[Any], Call]]:
    from . import overhead

    return {
        "bare_flask": overhead.bare_flask,
        "bare_with_library_routes": _bare_with_library_routes,
        "bare_with_current_token": _bare_with_current_token,
        "same_app_beneath": overhead.same_app_beneath,
        "flask_logout": overhead.flask_logout_hot,
        "noop_wsgi": overhead.noop_wsgi,
        "middleware_noop": overhead.middleware_noop,
        "fje_memory": overhead.fje_memory,
        "bare_page": overhead.bare_page,
        "cookie_session": overhead.cookie_session,
        "cookie_required": overhead.cookie_required,
        "flask_login": overhead.flask_login,
        "flask_login_sessions": overhead.flask_login_sessions,
    }


def _child(name: str, requests: int) -> None:
    from .overhead import Setup

    call = configurations()[name](Setup(quick=True))
    for _ in range(300):
        call()
    os.getppid()  # the marker: callgrind zeroes its counters here
    for _ in range(requests):
        call()
    os._exit(0)  # skip interpreter shutdown: it is not part of a request


def _count(name: str, requests: int, cache_sim: bool = False) -> dict[str, float]:
    """Callgrind's events per request of one configuration, in one child process: ``Ir``
    (instructions), and with ``cache_sim`` the simulated cache misses and branch mispredictions."""
    with tempfile.TemporaryDirectory() as tmp:
        simulate = ["--cache-sim=yes", "--branch-sim=yes"] if cache_sim else []
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                "--zero-before=getppid",
                *simulate,
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                "-m",
                "benchmarks.instructions",
                "--child",
                name,
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=True,
            timeout=1800,  # about half a minute here: a hung child fails the run instead of holding it
        )
        with open(f"{tmp}/callgrind.out-01", encoding="ascii") as main_thread:  # the main thread's file
            text = main_thread.read()
    events = re.search(r"^events: (.*)$", text, re.MULTILINE)
    summary = re.search(r"^summary: (.*)$", text, re.MULTILINE)
    if events is None or summary is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{result.stderr[-2000:]}")
    names, values = events.group(1).split(), summary.group(1).split()
    return {event: int(value) / requests for event, value in zip(names, values, strict=True)}


def measure(requests: int = 400, runs: int = 3, jobs: int = 2, cache_sim: bool = False) -> dict[str, dict[str, float]]:
    """Events per request of each configuration, each the median of ``runs`` child processes
    (``jobs`` valgrind runs at a time)."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    names = list(configurations())
    work = [name for _ in range(runs) for name in names]
    with ThreadPoolExecutor(jobs) as pool:
        counts = list(pool.map(lambda name: _count(name, requests, cache_sim), work))
    medians: dict[str, dict[str, float]] = {}
    for name in names:
        mine = [c for n, c in zip(work, counts, strict=True) if n == name]
        medians[name] = {event: statistics.median(c[event] for c in mine) for event in mine[0]}
    return medians


#: Simulated (``--cache-sim``) events summed into the table's extra columns.
MISSES = ("I1mr", "D1mr", "D1mw")
MISPREDICTS = ("Bcm", "Bim")


def table(events: dict[str, dict[str, float]]) -> str:
    """The Markdown table of docs/performance.md; with simulated events, two more columns."""
    simulated = "I1mr" in next(iter(events.values()))

    def of(name: str) -> tuple[float, float, float]:
        counted = events[name]
        if not simulated:
            return counted["Ir"], 0.0, 0.0
        return counted["Ir"], sum(counted[e] for e in MISSES), sum(counted[e] for e in MISPREDICTS)

    def minus(a: str, b: str) -> tuple[float, float, float]:
        return tuple(x - y for x, y in zip(of(a), of(b), strict=True))  # type: ignore[return-value]

    bare = of("bare_flask")
    parts = [
        ("Bare Flask request (same routes, same `SECRET_KEY`)", bare),
        ("The library's routes registered (routing)", minus("bare_with_library_routes", "bare_flask")),
        ("`current_token()` in the view", minus("bare_with_current_token", "bare_flask")),
        ("Everything the extension adds to the app (beneath the middleware)", minus("same_app_beneath", "bare_flask")),
        ("The middleware inside Flask (hot path, environ keys)", minus("flask_logout", "same_app_beneath")),
        ("Whole protected request minus bare", minus("flask_logout", "bare_flask")),
        ("Plain WSGI: the middleware around a no-op app", minus("middleware_noop", "noop_wsgi")),
        ("Flask-JWT-Extended (in-memory blocklist) minus bare", minus("fje_memory", "bare_flask")),
        ("Browser session (`LOGOUT_COOKIE_AUTH`) minus the same page without it", minus("cookie_session", "bare_page")),
        ("A `@cookie_required` page minus the same page without it", minus("cookie_required", "bare_page")),
        ("Flask-Login with `LoginSessions` minus Flask-Login alone", minus("flask_login_sessions", "flask_login")),
    ]
    if simulated:
        lines = [
            "| Part | Instructions per request | Of a bare request | L1 misses (simulated)"
            " | Mispredicted branches (simulated) |",
            "|---|---|---|---|---|",
        ]
    else:
        lines = ["| Part | Instructions per request | Of a bare request |", "|---|---|---|"]
    for what, (instructions, misses, mispredicts) in parts:
        row = f"| {what} | {instructions:,.0f} | {instructions / bare[0]:.3f} |"
        if simulated:
            row += f" {misses:,.0f} | {mispredicts:,.0f} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3, help="child processes per configuration (the median is kept)")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at a time")
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="also simulate the caches and branch predictors (L1 misses, mispredictions; about 3x slower)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    events = measure(args.requests, args.runs, args.jobs, args.cache_sim)
    for name, counted in events.items():
        print(f"{name}: " + ", ".join(f"{e} {v:,.0f}" for e, v in counted.items()), file=sys.stderr)
    print(table(events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
