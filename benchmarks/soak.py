"""A bounded soak: mixed traffic against gunicorn, then every revoked token replayed.

    python -m benchmarks.soak [--seconds 60] [--write docs/reliability.md]

The example app runs under gunicorn (2 workers) on PostgreSQL, each worker
with its own replica kept current by LISTEN/NOTIFY. Client threads on
loopback mix session sign-ins, refreshes, protected requests, sign-outs and
API-client logins and logouts. Afterwards every token that was signed out
(or rotated out) is replayed against both workers: not one may be accepted.
The workers' memory is read from /proc after warm-up and at the end.
Exit status 1 if any request got a 5xx or any revoked token was accepted.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("FLASK_LOGOUT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _workers(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class Traffic:
    """Client threads and everything they saw."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.sessions: list[dict[str, str]] = []  # live session-dialect token pairs
        self.revoked_access: list[str] = []
        self.revoked_refresh: list[str] = []
        self.lock = threading.Lock()

    def record(self, what: str, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            # The session dialect answers a store failure with HTTP 200 and Cloudreve's CodeDBError.
            if response.status_code >= 500 or (what in _SESSION_CALLS and response.json().get("code") == 50001):
                self.server_errors.append(f"{what}: {response.status_code} {response.text[:200]}")

    def worker(self, seed: int, stop: threading.Event) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not stop.is_set():
                action = rng.random()
                with self.lock:
                    session = rng.choice(self.sessions) if self.sessions else None
                if action < 0.15 or session is None:
                    r = http.post("/session/token", json={"email": "alice@example.com", "password": "wonderland"})
                    self.record("sign-in", r)
                    if _session_ok(r):
                        with self.lock:
                            self.sessions.append(r.json()["data"]["token"])
                elif action < 0.30:
                    r = http.post("/session/token/refresh", json={"refresh_token": session["refresh_token"]})
                    self.record("refresh", r)
                    if _session_ok(r):
                        with self.lock:
                            if session in self.sessions:
                                self.sessions.remove(session)
                            self.sessions.append(r.json()["data"])
                            self.revoked_refresh.append(session["refresh_token"])  # rotated out
                elif action < 0.40:
                    r = http.request("DELETE", "/session/token", json={"refresh_token": session["refresh_token"]})
                    self.record("sign-out", r)
                    if _session_ok(r):
                        with self.lock:
                            if session in self.sessions:
                                self.sessions.remove(session)
                            self.revoked_access.append(session["access_token"])
                            self.revoked_refresh.append(session["refresh_token"])
                elif action < 0.45:
                    login = http.post("/auth/login", json={"client_id": "demo-client", "client_secret": "demo-secret"})
                    self.record("client login", login)
                    if login.status_code == 200 and rng.random() < 0.5:
                        token = login.json()["data"]["access_token"]
                        out = http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
                        self.record("client logout", out)
                        if out.status_code == 200:
                            with self.lock:
                                self.revoked_access.append(token)
                else:
                    r = http.get("/api/me", headers={"Authorization": f"Bearer {session['access_token']}"})
                    self.record("protected", r)


_SESSION_CALLS = frozenset({"sign-in", "refresh", "sign-out", "replay refresh"})


def _session_ok(response: Any) -> bool:
    """Success in the session dialect: Cloudreve's protocol answers failures with HTTP 200 too."""
    return response.status_code == 200 and response.json().get("code") == 0


def run(seconds: float, clients: int = 6) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(PG)
    schema = "soak_" + uuid.uuid4().hex[:10]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    port = _free_port()
    env = {
        **os.environ,
        "FLASK_SECRET_KEY": "soak-secret-key-0123456789-abcdefghijklmnop",
        "FLASK_LOGOUT_PRIVATE_KEY": _rsa_pem(),
        "FLASK_LOGOUT_DATABASE_URI": f"{PG}?options=-csearch_path%3D{schema}",
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": "pbkdf2:sha256:1000",
        "FLASK_LOGOUT_SYNC_INTERVAL": "0.5",
    }
    master = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "example_app:create_app()",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/openapi.yaml", timeout=1).status_code in (200, 404):
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        traffic = Traffic(url)
        stop = threading.Event()
        threads = [threading.Thread(target=traffic.worker, args=(seed, stop)) for seed in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(max(1.0, seconds * 0.2))  # warm-up
        workers = _workers(master.pid)
        memory_start = {pid: _rss_kib(pid) for pid in workers}
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        memory_end = {pid: _rss_kib(pid) for pid in workers}
        time.sleep(1.0)  # let every replica catch up (push is milliseconds; polling 0.5 s)
        accepted = 0
        replayed = 0
        with httpx.Client(base_url=url, timeout=30) as http:
            for token in traffic.revoked_access:
                for _ in range(2):  # gunicorn spreads requests over both workers
                    replayed += 1
                    r = http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
                    traffic.record("replay access", r)
                    accepted += r.status_code == 200
            for token in traffic.revoked_refresh:
                replayed += 1
                r = http.post("/session/token/refresh", json={"refresh_token": token})
                traffic.record("replay refresh", r)
                accepted += _session_ok(r)
        requests = sum(traffic.statuses.values())
        return {
            "seconds": round(time.monotonic() - started, 1),
            "requests": requests,
            "per_second": round(requests / max(1e-9, time.monotonic() - started)),
            "statuses": dict(sorted(traffic.statuses.items())),
            "server_errors": len(traffic.server_errors),
            "first_errors": traffic.server_errors[:5],
            "revoked_tokens": len(traffic.revoked_access) + len(traffic.revoked_refresh),
            "replayed": replayed,
            "wrongly_accepted": accepted,
            "memory_kib_start": sum(memory_start.values()),
            "memory_kib_end": sum(memory_end.values()),
            "workers": len(workers),
        }
    finally:
        master.terminate()
        master.wait(timeout=30)
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def summary(result: dict[str, Any]) -> str:
    growth = result["memory_kib_end"] - result["memory_kib_start"]
    return "\n".join(
        [
            "| Figure | Value |",
            "|---|---|",
            f"| Duration | {result['seconds']} s, 6 client threads, gunicorn 2 workers, PostgreSQL |",
            f"| Requests | {result['requests']} ({result['per_second']} per second) |",
            f"| Answers by status | {', '.join(f'{k}: {v}' for k, v in result['statuses'].items())} |",
            f"| 5xx answers | {result['server_errors']} |",
            f"| Revoked or rotated tokens | {result['revoked_tokens']} |",
            f"| Replays of them | {result['replayed']} |",
            f"| Wrongly accepted | {result['wrongly_accepted']} |",
            f"| Workers' memory (RSS, both) after warm-up | {result['memory_kib_start'] / 1024:.1f} MiB |",
            f"| Workers' memory at the end | {result['memory_kib_end'] / 1024:.1f} MiB ({growth / 1024:+.1f} MiB) |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--write", metavar="PATH", help="write the summary into this markdown file")
    args = parser.parse_args(argv)
    result = run(args.seconds)
    table = summary(result)
    print(table)
    if result["first_errors"]:
        print("\n".join(result["first_errors"]), file=sys.stderr)
    if args.write:
        text = Path(args.write).read_text(encoding="utf-8")
        stamp = time.strftime("%Y-%m-%d")
        block = f"<!-- soak:start -->\nLast soak, {stamp}:\n\n{table}\n<!-- soak:end -->"
        text, count = re.subn(r"<!-- soak:start -->.*?<!-- soak:end -->", block, text, flags=re.DOTALL)
        if count != 1:
            raise SystemExit(f"{args.write}: no <!-- soak:start --> ... <!-- soak:end --> block")
        Path(args.write).write_text(text, encoding="utf-8")
    return 1 if result["server_errors"] or result["wrongly_accepted"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
