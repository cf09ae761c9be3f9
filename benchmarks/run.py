"""Run every benchmark and print one markdown table: ``make bench``.

    python -m benchmarks.run [--quick] [--write docs/performance.md] [--only overhead,scale,...]

With ``--only`` and ``--write``, only the rows of the parts run are replaced.

Every figure stands beside the baseline it is compared with, measured in the
same run; the ratio is what to read, the absolute times vary with the load
of the machine.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from collections.abc import Callable
from typing import Any

PARTS = ("overhead", "scale", "throughput", "propagation")


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} us"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str, str]]:
    """(what, flask-logout, baseline, ratio, target, met) rows."""
    out: list[tuple[str, str, str, str, str, str]] = []

    def add(what: str, ours: str, base: str, value: float, target: str, ok: Callable[[float], bool]) -> None:
        out.append((what, ours, base, f"{value:.3f}", target, "yes" if ok(value) else "**no**"))

    o = results.get("overhead")
    if o:
        over, bare = o["overhead"], o["bare_flask"]
        hot, strict = over["flask_logout"], over["strict"]
        add(
            "Hot path: protected request through Flask (documented setup), overhead per request",
            _us(hot),
            f"bare Flask request {_us(bare)}",
            hot / bare,
            "<= 0.05",
            lambda v: v <= 0.05,
        )
        add(
            "Hot path vs Flask-JWT-Extended (in-memory blocklist) overhead",
            _us(hot),
            f"FJE overhead {_us(over['fje_memory'])}",
            over["fje_memory"] / hot,
            ">= 40 (times smaller)",
            lambda v: v >= 40,
        )
        for name, what in (
            ("cookie_session", "Browser session: `LOGOUT_COOKIE_AUTH` (the middleware reads the session cookie)"),
            ("cookie_required", "Browser session: a `@cookie_required` page"),
            ("flask_login_sessions", "Flask-Login with `LoginSessions`, over Flask-Login alone"),
        ):
            if name in over:
                add(
                    f"{what}, overhead per request",
                    _us(over[name]),
                    f"bare Flask request {_us(bare)}",
                    over[name] / bare,
                    "<= 0.05",
                    lambda v: v <= 0.05,
                )
        if "flask_login_sessions" in over and o.get("flask_login"):
            add(
                "Flask-Login with `LoginSessions`, of the Flask-Login request itself",
                _us(over["flask_login_sessions"]),
                f"Flask-Login request {_us(o['flask_login'])}",
                over["flask_login_sessions"] / o["flask_login"],
                "(information)",
                lambda v: True,
            )
        add(
            "Cold path (first sight: decode + SQLite look-up), overhead per request",
            _us(o["cold_overhead"]),
            f"raw jwt.decode in the same request {_us(o['decode_overhead'])}",
            o["cold_overhead"] / o["decode_overhead"],
            "<= 2",
            lambda v: v <= 2,
        )
        add(
            "Cold path overhead vs raw jwt.decode in a tight loop (cache-warm)",
            _us(o["cold_overhead"]),
            f"raw jwt.decode alone {_us(o['jwt_decode'])}",
            o["cold_overhead"] / o["jwt_decode"],
            "(information)",
            lambda v: True,
        )
        add(
            "Strict mode overhead (store query every request, SQLite)",
            _us(strict),
            f"FJE SQLAlchemy blocklist overhead {_us(over['fje_sqlalchemy'])}",
            strict / over["fje_sqlalchemy"],
            "<= 0.5",
            lambda v: v <= 0.5,
        )
        add(
            "Plain WSGI: BearerMiddleware around a no-op app",
            _us(o["middleware_alone"]),
            f"bare Flask request {_us(bare)}",
            o["middleware_alone"] / bare,
            "(information)",
            lambda v: True,
        )
        beneath = over["flask_logout"] - over["same_app_beneath"]
        add(
            "Old figure: protected request minus the same app beneath the middleware",
            _us(beneath),
            f"bare Flask request {_us(bare)}",
            beneath / bare,
            "(information)",
            lambda v: True,
        )
    s = results.get("scale")
    if s:
        sizes = sorted(int(k.split("_")[1]) for k in s if k.startswith("revocations_"))
        base = s["revocations_0"]
        for size in sizes[1:]:
            add(
                f"Hot path with {size:,} live revocations",
                _us(s[f"revocations_{size}"]),
                f"with none {_us(base)}",
                s[f"revocations_{size}"] / base,
                "<= 1.2",
                lambda v: v <= 1.2,
            )
        add(
            "Hot path with a 100-range whitelist",
            _us(s["whitelist_100"]),
            f"no whitelist {_us(base)}",
            s["whitelist_100"] / base,
            "(information)",
            lambda v: True,
        )
        many = s["logout_all_tokens"]
        add(
            f"Logout-all with {many:,} live tokens",
            _us(s[f"logout_all_{many}"]),
            f"with 1 token {_us(s['logout_all_1'])}",
            s[f"logout_all_{many}"] / s["logout_all_1"],
            "<= 2",
            lambda v: v <= 2,
        )
        out.append(("Replica memory per live revocation", f"{s['bytes_per_revocation']:.0f} bytes", "", "", "", ""))
    t = results.get("throughput")
    if t and "skipped" not in t:
        runs = f"median of {t['rounds']} interleaved {t['seconds']} s runs"
        add(
            f"gunicorn (2 workers) + wrk: throughput with flask-logout ({runs})",
            f"{t['flask_logout']:.0f} req/s",
            f"without {t['bare']:.0f} req/s",
            t["flask_logout_ratio"],
            ">= 0.95",
            lambda v: v >= 0.95,
        )
        add(
            "gunicorn + wrk: Flask-JWT-Extended (in-memory blocklist)",
            f"{t['flask_jwt_extended']:.0f} req/s",
            f"without {t['bare']:.0f} req/s",
            t["flask_jwt_extended_ratio"],
            "(information)",
            lambda v: True,
        )
    elif t:
        out.append(("gunicorn + wrk throughput", "skipped", t["skipped"], "", "", ""))
    p = results.get("propagation")
    if p:
        interval = p["interval"]
        add(
            f"Propagation by push (LISTEN/NOTIFY), p50 / p99 of {p['revocations']}",
            f"{_ms(p['push_p50'])} / {_ms(p['push_p99'])}",
            "target 50 ms",
            p["push_p99"] / 0.050,
            "p99 / 50 ms <= 1",
            lambda v: v <= 1,
        )
        if "redis_p50" in p:
            add(
                f"Propagation by push (Redis pub/sub, PostgreSQL store), p50 / p99 of {p['revocations']}",
                f"{_ms(p['redis_p50'])} / {_ms(p['redis_p99'])}",
                "target 50 ms",
                p["redis_p99"] / 0.050,
                "p99 / 50 ms <= 1",
                lambda v: v <= 1,
            )
        add(
            f"Propagation by polling every {interval * 1000:.0f} ms, p50 / p99 of {p['revocations']}",
            f"{_ms(p['poll_p50'])} / {_ms(p['poll_p99'])}",
            f"interval + 100 ms = {_ms(interval + 0.1)}",
            p["poll_p99"] / (interval + 0.1),
            "p99 / bound <= 1",
            lambda v: v <= 1,
        )
    return out


def machine() -> str:
    """The CPU the figures were measured on: its model, cores and caches (as one core sees them).

    The same code's hot path measured 0.054 of a bare request on one machine
    of this kind and 0.040 on another (same Python, same packages): the
    overhead is mostly cache misses inside a large Flask request, so the
    caches' sizes belong beside the figures.
    """
    import os
    from pathlib import Path

    model = platform.processor() or "CPU model unknown"  # the architecture is in the stamp already
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text(encoding="ascii").strip()
            kind = (index / "type").read_text(encoding="ascii").strip()
            size = (index / "size").read_text(encoding="ascii").strip()
        except OSError:
            continue
        label = f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''}"
        caches.append(f"{label} {size}")
    cores = os.cpu_count() or 0
    return f"{model}, {cores} cores" + (f" (caches {', '.join(caches)})" if caches else "")


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| Measure | flask-logout | Baseline (same run) | Ratio | Target | Met |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, noisier)")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    parser.add_argument("--write", metavar="PATH", help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    for part in args.only.split(","):
        if part not in PARTS:
            parser.error(f"unknown part {part!r}")
        module = __import__(f"benchmarks.{part}", fromlist=["measure"])
        print(f"running {part} ...", file=sys.stderr, flush=True)
        results[part] = module.measure(quick=args.quick)
    output = table(results)
    today = datetime.date.today().isoformat()
    stamp = f"{today}, Python {platform.python_version()}, {platform.machine()}, {machine()}"
    print(output)
    if args.write:
        _write(args.write, output, stamp, args.quick, list(results))
    return 0


#: Which part an existing row of the table belongs to, by how its measure starts (else "overhead").
_ROW_PARTS = (("Hot path with", "scale"), ("Logout-all", "scale"), ("Replica memory", "scale"))
_ROW_PARTS += (("Propagation", "propagation"), ("gunicorn", "throughput"))


def _part_of(row: str) -> str:
    measure = row.strip("| ")
    return next((part for prefix, part in _ROW_PARTS if measure.startswith(prefix)), "overhead")


def _write(path: str, output: str, stamp: str, quick: bool, ran: list[str]) -> None:
    """Write the table between the bench markers; rows of parts not run (``--only``) are kept as they were."""
    import re

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    heading = f"Measured {stamp}{' (quick run)' if quick else ''}"
    if set(ran) != set(PARTS):
        old = re.search(r"<!-- bench:start -->(.*?)<!-- bench:end -->", text, flags=re.DOTALL)
        old_rows = [line for line in (old.group(1) if old else "").splitlines() if line.startswith("| ")][1:]
        new_lines = output.splitlines()
        new_rows = {part: [r for r in new_lines[2:] if _part_of(r) == part] for part in ran}
        merged = new_lines[:2]
        for part in PARTS:
            merged += new_rows[part] if part in ran else [r for r in old_rows if _part_of(r) == part]
        output = "\n".join(merged)
        heading += f" for the {', '.join(ran)} rows; the other rows are from an earlier run"
    block = f"<!-- bench:start -->\n{heading}:\n\n{output}\n<!-- bench:end -->"
    text, count = re.subn(r"<!-- bench:start -->.*?<!-- bench:end -->", block, text, flags=re.DOTALL)
    if count != 1:
        raise SystemExit(f"{path}: no <!-- bench:start --> ... <!-- bench:end --> block to replace")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__":
    raise SystemExit(main())
