"""Throughput under a real server: gunicorn (2 workers) loaded by wrk on loopback.

The three apps of ``benchmarks/apps.py`` (same routes, same ``SECRET_KEY``),
loaded one at a time in interleaved rounds.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(target: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning", target],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"gunicorn did not start for {target}")


def _wrk(url: str, token: str | None, seconds: int) -> float:
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run([*command, f"{url}/api/me"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    return float(match.group(1))


def measure(quick: bool = False) -> dict[str, Any]:
    """Requests per second of the three apps (same routes, same ``SECRET_KEY``).

    The apps are loaded one at a time, in rounds, in a shuffled order; a
    round's ratio compares runs made moments apart. The figures are medians
    of the rounds; the ratios are medians of the per-round ratios.
    """
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    from .apps import fje_memory_app, logout_app

    seconds, rounds = (2, 3) if quick else (3, 15)
    database_uri = f"sqlite:///{tempfile.mkdtemp()}/throughput.sqlite3"
    _, service = logout_app(database_uri)
    logout_token = service.issue_tokens("bench", client_id="bench").access_token
    service.close()
    _, fje_token = fje_memory_app()
    env = {**os.environ, "BENCH_DATABASE_URI": database_uri}
    servers = {
        # The bare app gets the same header, so that the requests are the same bytes.
        "bare": ("benchmarks.wsgi_apps:bare()", logout_token),
        "flask_logout": ("benchmarks.wsgi_apps:flask_logout()", logout_token),
        "flask_jwt_extended": ("benchmarks.wsgi_apps:flask_jwt_extended()", fje_token),
    }
    names = list(servers)
    results: dict[str, list[float]] = {name: [] for name in servers}
    running = {}
    try:
        for name, (target, _) in servers.items():
            running[name] = _serve(target, env)
        for name, (_, token) in servers.items():
            _wrk(running[name][1], token, 1)  # warm up both workers (first sight of the token)
        shuffle = random.Random(0).shuffle
        for _ in range(rounds):
            shuffle(names)  # no app is always loaded right after the same other one
            for name in names:
                results[name].append(_wrk(running[name][1], servers[name][1], seconds))
    finally:
        for process, _ in running.values():
            process.terminate()
            process.wait(timeout=10)
    figures: dict[str, Any] = {name: statistics.median(values) for name, values in results.items()}
    for name in ("flask_logout", "flask_jwt_extended"):
        figures[f"{name}_ratio"] = statistics.median(
            ours / bare for ours, bare in zip(results[name], results["bare"], strict=True)
        )
    figures["rounds"], figures["seconds"] = rounds, seconds
    return figures
