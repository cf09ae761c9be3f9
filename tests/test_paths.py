"""Every spelling of a protected path is protected: ``//api/me``, ``/%2fapi/me``, dot segments, ...

Over real HTTP with raw request lines, against werkzeug's server and against
gunicorn (sync worker), then a property over generated spellings through the
Flask test client.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask, jsonify
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_logout import BearerMiddleware, LogoutService, get_service

from .conftest import FAST_HASH, MISSING, SECRET, LiveServer, bearer, build_app, example_settings

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 30.0

#: Request targets that every server routes (or may route) to the protected
#: ``/api/me``; each must answer the 401 of a missing token.
SPELLINGS = [
    "/api/me",
    "//api/me",
    "///api/me",
    "/%2fapi/me",
    "/%2Fapi/me",
    "/%2f%2fapi/me",
    "/api%2fme",
    "/%61pi/me",
    "/x/../api/me",
    "/x/%2e%2e/api/me",
    "/%2e%2e/api/me",
    "/./api/me",
    "/%2e/api/me",
    "/api/./me",
    "/api//me",
    "/api/me/",
    "/%252fapi/me",
    "/api/me?next=%2f",
    "http://127.0.0.1//api/me",  # absolute form
    "http://127.0.0.1/%2fapi/me",
]


@dataclass
class Server:
    name: str
    port: int

    def request(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send ``GET <target> HTTP/1.1`` exactly as written; return status and body."""
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response.status, response.read()

    def get(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """Status and JSON body (the raw bytes when the body is not JSON, e.g. an HTML error page)."""
        status, body = self.request(target, headers)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def login(self) -> str:
        body = json.dumps({"client_id": "demo-client", "client_secret": "demo-secret"}).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.settimeout(10)
            head = (
                "POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200
            return str(json.loads(response.read())["data"]["access_token"])


@pytest.fixture(scope="module")
def werkzeug_server(tmp_path_factory: pytest.TempPathFactory, rsa_pem: str) -> Iterator[Server]:
    from example_app import create_app

    database = tmp_path_factory.mktemp("werkzeug") / "store.sqlite3"
    app = create_app(example_settings(f"sqlite:///{database}", rsa_pem))
    server = LiveServer(app)
    yield Server("werkzeug", server.server.server_port)
    server.stop()
    get_service(app).close()


def _wait_until_serving(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.settimeout(2)
                sock.sendall(b"GET /openapi.yaml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if sock.recv(12).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer within {STARTUP_SECONDS} s")


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory, rsa_pem: str) -> Iterator[Server]:
    """``example_app`` under a real gunicorn (one sync worker) on a socket bound here: no port race."""
    database = tmp_path_factory.mktemp("gunicorn") / "store.sqlite3"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "FLASK_SECRET_KEY": SECRET,
        "FLASK_LOGOUT_PRIVATE_KEY": rsa_pem,
        "FLASK_LOGOUT_DATABASE_URI": f"sqlite:///{database}",
        "FLASK_LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
    }
    command = [sys.executable, "-m", "gunicorn", "-k", "sync", "-w", "1", "-b", f"fd://{listener.fileno()}"]
    process = subprocess.Popen(
        [*command, "--log-level", "warning", "example_app:create_app()"],
        cwd=ROOT,
        env=env,
        pass_fds=(listener.fileno(),),
    )
    try:
        _wait_until_serving(process, port)
        yield Server("gunicorn", port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        listener.close()


@pytest.fixture(params=["werkzeug", "gunicorn"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


@pytest.mark.parametrize("target", SPELLINGS)
def test_every_spelling_of_a_protected_path_needs_a_token(server: Server, target: str) -> None:
    assert server.get(target) == (401, MISSING)


def test_a_target_without_leading_slash_is_protected_or_refused(server: Server) -> None:
    """werkzeug passes ``GET api/me`` on as ``PATH_INFO = "api/me"`` and routes it to ``/api/me``."""
    status, body = server.request("api/me")
    if server.name == "gunicorn":
        assert status == 400  # gunicorn refuses the request line itself
    else:
        assert (status, json.loads(body)) == (401, MISSING)


def test_the_usual_spelling_and_odd_ones_still_work_with_a_token(server: Server) -> None:
    token = server.login()
    ok = (200, {"success": True, "data": {"client_id": "demo-client"}})
    assert server.get("/api/me", bearer(token)) == ok
    # A protected odd spelling is served as the router sees it once the token is good.
    assert server.get("/%2fapi/me", bearer(token)) == ok
    assert server.get("//api/me", bearer(token)) == ok
    assert server.get("//api/me", {"Authorization": "Bearer not-a-token"})[0] == 401


def test_unprotected_paths_stay_open(server: Server) -> None:
    status, _ = server.request("/openapi.yaml")
    assert status == 200
    status, _ = server.request("//openapi.yaml")
    assert status == 200


# --- the property, through the Flask test client --------------------------------------------


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Flask, list[str]]]:
    """``build_app`` with ``/api/me`` and ``/api/<path>`` recording each call, and a catch-all."""
    app = build_app(f"sqlite:///{tmp_path}/store.sqlite3")
    calls: list[str] = []
    me = app.view_functions["me"]

    def recording_me() -> Any:
        calls.append("/api/me")
        return me()

    app.view_functions["me"] = recording_me

    @app.get("/api/<path:rest>")
    def api_anything(rest: str) -> Any:
        calls.append(f"/api/{rest}")
        return jsonify({"api": rest})

    @app.get("/<path:rest>")
    def anything(rest: str) -> Any:
        return jsonify({"public": rest})

    yield app, calls
    get_service(app).close()


_SEPARATORS = ["/", "//", "///", "/%2f", "/%2F", "%2f", "/./", "/%2e/", "/%252f", "/x/../", "/x/%2e%2e/", "/a/b/../../"]
_LEADING = ["", "/.", "/x/..", "/%2e", "/%2e%2e", "/..", "//..", "/a/%2e%2e"]


def _encode(text: str, how: list[int]) -> str:
    """Percent-encode some characters of ``text``, once (1) or twice (2)."""
    out = []
    for char, mode in zip(text, (how + [0] * len(text))[: len(text)], strict=True):
        once = f"%{ord(char):02x}"
        out.append(char if mode == 0 else once if mode == 1 else once.replace("%", "%25"))
    return "".join(out)


@st.composite
def spellings(draw: st.DrawFn) -> str:
    segments = draw(st.sampled_from([["api", "me"], ["api", "x", "y"], ["api"]]))
    spelled = draw(st.sampled_from(_LEADING))
    for segment in segments:
        how = draw(st.lists(st.integers(0, 2), max_size=len(segment)))
        spelled += draw(st.sampled_from(_SEPARATORS)) + _encode(segment, how)
    return spelled + draw(st.sampled_from(["", "/", "/.", "//", "%2f", "?q=%2f"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spelling=spellings(), raw_uri=st.booleans(), decode=st.booleans())
def test_property_no_spelling_reaches_a_protected_view_without_a_token(
    recorded: tuple[Flask, list[str]], spelling: str, raw_uri: bool, decode: bool
) -> None:
    """The server passes the target on as ``PATH_INFO`` (decoded once, or kept as is), with or without ``RAW_URI``."""
    app, calls = recorded
    calls.clear()
    path = spelling.split("?", 1)[0]
    environ: dict[str, Any] = {
        "PATH_INFO": unquote(path, encoding="latin-1") if decode else path,
        "RAW_URI": spelling if raw_uri else None,
        "REQUEST_URI": spelling if raw_uri else None,
    }
    response = app.test_client().get("/", environ_overrides=environ)
    assert (response.status_code, response.get_json(), calls) == (401, MISSING, []), (spelling, environ)


def test_odd_spellings_do_reach_the_view_with_a_token(recorded: tuple[Flask, list[str]]) -> None:
    """So the property above is not vacuous: these spellings are routed to the protected views."""
    app, calls = recorded
    token = get_service(app).login_client("demo-client", "demo-secret", ip="127.0.0.1").access_token
    client = app.test_client()
    for path_info in ("//api/me", "///api/me", "api/me", "/api/./me"):
        calls.clear()
        response = client.get("/", environ_overrides={"PATH_INFO": path_info, "REMOTE_ADDR": "127.0.0.1"})
        assert (response.status_code, calls) == (401, []), path_info
        response = client.get(
            "/", headers=bearer(token), environ_overrides={"PATH_INFO": path_info, "REMOTE_ADDR": "127.0.0.1"}
        )
        assert response.status_code == 200, path_info
        assert len(calls) == 1, path_info


# --- the rule itself, on BearerMiddleware.protects ------------------------------------------


@pytest.fixture
def middleware(tmp_path: Path) -> Iterator[BearerMiddleware]:
    service = LogoutService.from_settings(
        {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/s.sqlite3"}
    )
    yield BearerMiddleware(lambda environ, start_response: [], service, ["/api", "/caf\u00e9", "/admin/"])
    service.close()


PROTECTS_RULE = [
    ("/api/me", None, "", True),
    ("/api", None, "", True),
    ("/apix", None, "", False),
    ("/public", "/public?next=/api/..%2f", "", False),  # the query is not the path
    ("/api/..", None, "", True),  # werkzeug routes it to /api/<path>
    ("/x/../api", None, "", True),
    ("/x/..%2fapi", None, "", True),
    ("api", "api", "", True),
    ("/me", "//api/me", "", True),  # a raw target that decodes under /api
    ("/me", "/api/me", "/api", False),  # mounted at /api: the app sees /me
    ("/api/me", "/mnt/api/me", "/mnt", True),
    ("/me", "/mnt//me", "/mnt", False),
    ("/caf\u00c3\u00a9/x", None, "", True),  # PATH_INFO is UTF-8 bytes as latin-1
    ("/admin", None, "", True),
    ("/ADMIN", None, "", False),  # case-sensitive, like werkzeug's router
    ("", None, "", False),
]


@pytest.mark.parametrize(("path", "raw_uri", "script_name", "protected"), PROTECTS_RULE)
def test_protects_rule(
    middleware: BearerMiddleware, path: str, raw_uri: str | None, script_name: str, protected: bool
) -> None:
    assert middleware.protects(path, raw_uri, script_name) is protected


def _refused(middleware: BearerMiddleware, path: str, raw_uri: str | None, script_name: str) -> bool:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": script_name}
    if raw_uri is not None:
        environ["RAW_URI"] = raw_uri
    statuses: list[str] = []
    middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type,misc]
    return bool(statuses) and statuses[0].startswith("401")


@pytest.mark.parametrize(("path", "raw_uri", "script_name", "protected"), PROTECTS_RULE)
def test_requests_follow_the_rule_when_their_path_was_seen_before(
    middleware: BearerMiddleware, path: str, raw_uri: str | None, script_name: str, protected: bool
) -> None:
    """The middleware remembers the answer for a clean path it has seen; a
    request whose raw target differs is still decided by the whole rule."""
    assert _refused(middleware, path, raw_uri, script_name) is protected
    for seen in ("/me", "/public", "/api/me", path):
        _refused(middleware, seen, seen, "")  # now remembered, if clean
    assert _refused(middleware, path, raw_uri, script_name) is protected


def test_empty_path_info_is_the_root(tmp_path: Path) -> None:
    service = LogoutService.from_settings(
        {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/s.sqlite3"}
    )
    try:
        everything = BearerMiddleware(lambda environ, start_response: [], service, ["/"])
        for path, raw in (("", None), ("", "/mnt"), ("*", "*"), ("//", None), ("/..", None)):
            assert everything.protects(path, raw, "/mnt"), (path, raw)
    finally:
        service.close()


def test_a_non_ascii_protected_path_is_protected(tmp_path: Path) -> None:
    """``PATH_INFO`` holds the UTF-8 bytes as latin-1 (PEP 3333); ``/café`` must still match."""
    app = build_app(f"sqlite:///{tmp_path}/store.sqlite3", LOGOUT_PROTECTED_PATHS=["/caf\u00e9"])
    calls: list[str] = []

    @app.get("/caf\u00e9/menu")
    def menu() -> Any:
        calls.append("menu")
        return jsonify({"menu": True})

    try:
        response = app.test_client().get("/caf%C3%A9/menu")
        assert (response.status_code, response.get_json(), calls) == (401, MISSING, [])
    finally:
        get_service(app).close()
