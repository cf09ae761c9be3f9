"""Throughput under a real server: gunicorn (2 workers) loaded by wrk on loopback."""

from __future__ import annotations

import os
import re
import shutil
import socket
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
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    from .apps import fje_memory_app, logout_app

    seconds = 3 if quick else 8
    database_uri = f"sqlite:///{tempfile.mkdtemp()}/throughput.sqlite3"
    _, service = logout_app(database_uri)
    logout_token = service.issue_tokens("bench", client_id="bench").access_token
    service.close()
    _, fje_token = fje_memory_app()
    env = {**os.environ, "BENCH_DATABASE_URI": database_uri}
    servers = {
        "bare": ("benchmarks.wsgi_apps:bare()", None),
        "flask_logout": ("benchmarks.wsgi_apps:flask_logout()", logout_token),
        "flask_jwt_extended": ("benchmarks.wsgi_apps:flask_jwt_extended()", fje_token),
    }
    results: dict[str, list[float]] = {name: [] for name in servers}
    running = {}
    try:
        for name, (target, _) in servers.items():
            running[name] = _serve(target, env)
        for name, (_, token) in servers.items():
            _wrk(running[name][1], token, 1)  # warm up both workers (first sight of the token)
        for _ in range(2 if quick else 3):  # interleaved rounds
            for name, (_, token) in servers.items():
                results[name].append(_wrk(running[name][1], token, seconds))
    finally:
        for process, _ in running.values():
            process.terminate()
            process.wait(timeout=10)
    return {name: sorted(values)[len(values) // 2] for name, values in results.items()}
