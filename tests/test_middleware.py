"""``BearerMiddleware`` around a plain WSGI callable (no Flask) and around Flask."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import pytest
from werkzeug.test import Client

from flask_logout import BearerMiddleware, LogoutService
from flask_logout.middleware import ENVIRON_CLAIMS
from flask_logout.service import ENVIRON_TOKEN

from .conftest import EXPIRED, FAST_HASH, FORBIDDEN, INVALID, MISSING, SECRET, bearer, move_clock


def legacy_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A WSGI app with no framework at all: echoes what the middleware handed it."""
    token = environ.get(ENVIRON_TOKEN)
    body = json.dumps(
        {
            "path": environ["PATH_INFO"],
            "sub": token.sub if token else None,
            "claims_typ": environ[ENVIRON_CLAIMS]["typ"] if ENVIRON_CLAIMS in environ else None,
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture
def wsgi_service(database_uri: str) -> Any:
    service = LogoutService.from_settings(
        {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": database_uri, "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH}
    )
    service.register_client("legacy", "legacy-secret", ["10.0.0.0/8", "fd00::/8"])
    service.register_client("open", "open-secret")
    yield service
    service.close()


@pytest.fixture
def wsgi(wsgi_service: LogoutService) -> Client:
    return Client(BearerMiddleware(legacy_app, wsgi_service, protected_paths=["/api", "/admin/"]))


def _get(wsgi: Client, path: str, headers: dict[str, str] | None = None, ip: str = "10.1.1.1") -> tuple[int, Any]:
    response = wsgi.get(path, headers=headers or {}, environ_base={"REMOTE_ADDR": ip})
    return response.status_code, json.loads(response.get_data())


def test_every_error_of_the_document_around_a_plain_wsgi_app(
    wsgi: Client, wsgi_service: LogoutService, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = wsgi_service.login_client("legacy", "legacy-secret", ip="10.0.0.1")
    assert _get(wsgi, "/api/things") == (401, MISSING)
    assert _get(wsgi, "/api/things", {"Authorization": "Basic eDp5"}) == (401, INVALID)
    assert _get(wsgi, "/api/things", bearer(pair.refresh_token)) == (401, INVALID)
    assert _get(wsgi, "/api/things", bearer(pair.access_token), ip="192.0.2.1") == (403, FORBIDDEN)
    assert _get(wsgi, "/api/things", bearer(pair.access_token)) == (
        200,
        {"path": "/api/things", "sub": "legacy", "claims_typ": "access"},
    )
    move_clock(monkeypatch, 7200)
    assert _get(wsgi, "/api/things", bearer(pair.access_token)) == (401, EXPIRED)
    move_clock(monkeypatch, 0)
    wsgi_service.logout_all(pair.access)
    assert _get(wsgi, "/api/things", bearer(pair.access_token)) == (401, INVALID)


def test_checks_run_in_the_documented_order(
    wsgi: Client, wsgi_service: LogoutService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked beats expired, expired beats a bad IP."""
    pair = wsgi_service.login_client("legacy", "legacy-secret", ip="10.0.0.1")
    move_clock(monkeypatch, 7200)
    assert _get(wsgi, "/api/x", bearer(pair.access_token), ip="192.0.2.1") == (401, EXPIRED)
    wsgi_service.revoke_client("legacy")
    assert _get(wsgi, "/api/x", bearer(pair.access_token), ip="192.0.2.1") == (401, INVALID)


def test_unprotected_paths_and_exempt_methods_pass_through(wsgi: Client) -> None:
    assert _get(wsgi, "/public") == (200, {"path": "/public", "sub": None, "claims_typ": None})
    assert _get(wsgi, "/apix")[0] == 200  # a prefix guards /api and /api/..., not /apix
    assert _get(wsgi, "/api")[0] == 401
    assert _get(wsgi, "/admin")[0] == 401
    assert _get(wsgi, "/admin/deep/path")[0] == 401
    assert wsgi.options("/api/things").status_code == 200


def test_answers_carry_json_and_www_authenticate(wsgi: Client) -> None:
    response = wsgi.get("/api/x")
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert response.status == "401 Unauthorized"


@pytest.mark.parametrize(
    "value",
    [
        "Bearer " + "a" * 9000,  # over the length bound
        "Bearer abc\u00e9def",  # not a b64token
        "Bearer a, Bearer b",  # two headers folded into one by the server
        "Bearer  ",
        "Digest abc",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # alg none
    ],
)
def test_malformed_authorization_values(wsgi: Client, value: str) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/x",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_AUTHORIZATION": value,
        "wsgi.input": io.BytesIO(),
    }
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status

    middleware = wsgi.application
    body = b"".join(middleware(environ, start_response))
    assert captured["status"] == "401 Unauthorized"
    assert json.loads(body) == INVALID


def test_blank_authorization_header_counts_as_missing(wsgi: Client) -> None:
    assert _get(wsgi, "/api/x", {"Authorization": "   "}) == (401, MISSING)


def test_around_a_flask_app(app: Any, login: Any) -> None:
    """The extension wraps app.wsgi_app when LOGOUT_PROTECTED_PATHS is set (with the
    middleware's bound __call__: Flask calls it more cheaply than an instance)."""
    assert isinstance(app.wsgi_app.__self__, BearerMiddleware)
    assert app.wsgi_app == app.wsgi_app.__self__.__call__
    client = app.test_client()
    assert (client.get("/api/me").status_code, client.get("/api/me").get_json()) == (401, MISSING)
    assert client.get("/public").get_json() == {"public": True}
    token = login()["access_token"]
    assert client.get("/api/me", headers=bearer(token)).get_json()["data"]["client_id"] == "demo-client"


def test_protected_path_must_be_absolute(wsgi_service: LogoutService) -> None:
    with pytest.raises(ValueError, match="'api' must start with '/'"):
        BearerMiddleware(legacy_app, wsgi_service, protected_paths=["api"])


def test_root_protects_everything(wsgi_service: LogoutService) -> None:
    client = Client(BearerMiddleware(legacy_app, wsgi_service, protected_paths=["/"]))
    assert client.get("/").status_code == 401
    assert client.get("/anything/at/all").status_code == 401


def test_custom_error_renderer(wsgi_service: LogoutService) -> None:
    def plain(error: Any) -> tuple[str, list[tuple[str, str]], bytes]:
        return f"{error.status} No", [("Content-Type", "text/plain")], error.message.encode()

    client = Client(BearerMiddleware(legacy_app, wsgi_service, protected_paths=["/api"], render_error=plain))
    response = client.get("/api/x")
    assert (response.status_code, response.get_data()) == (401, b"Authorization header required")


@pytest.mark.parametrize("scheme", ["Basic", "Digest", "Token", "JWT", "Bearer:"])
def test_a_valid_token_under_another_scheme_is_invalid(wsgi: Client, wsgi_service: LogoutService, scheme: str) -> None:
    pair = wsgi_service.login_client("legacy", "legacy-secret", ip="10.0.0.1")
    assert _get(wsgi, "/api/x", {"Authorization": f"{scheme} {pair.access_token}"}) == (401, INVALID)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(wsgi: Client, wsgi_service: LogoutService, scheme: str) -> None:
    """RFC 7235 section 2.1: the scheme name is case-insensitive."""
    pair = wsgi_service.login_client("legacy", "legacy-secret", ip="10.0.0.1")
    assert _get(wsgi, "/api/x", {"Authorization": f"{scheme} {pair.access_token}"}) == (
        200,
        {"path": "/api/x", "sub": "legacy", "claims_typ": "access"},
    )


def test_no_exempt_methods_means_options_needs_a_token(wsgi_service: LogoutService) -> None:
    client = Client(BearerMiddleware(legacy_app, wsgi_service, protected_paths=["/api"], exempt_methods=[]))
    response = client.options("/api/things")
    assert (response.status_code, json.loads(response.get_data())) == (401, MISSING)
    assert client.options("/public").status_code == 200


@pytest.mark.parametrize(
    ("remote_addr", "expected"),
    [("fe80::1%eth0", 200), ("fe80::1%25eth0", 200), ("fe80::1", 200), ("fec0::1%eth0", 403)],
)
def test_a_scoped_ipv6_remote_addr_is_matched_without_its_zone(
    wsgi: Client, wsgi_service: LogoutService, remote_addr: str, expected: int
) -> None:
    """A link-local peer arrives as ``fe80::1%eth0`` in REMOTE_ADDR; the zone id is not part of the address."""
    wsgi_service.register_client("link-local", "link-local-secret", ["fe80::/10"])
    token = wsgi_service.login_client("link-local", "link-local-secret", ip="fe80::2%eth1").access_token
    status, body = _get(wsgi, "/api/x", bearer(token), ip=remote_addr)
    assert (status, body) == (
        (200, {"path": "/api/x", "sub": "link-local", "claims_typ": "access"}) if expected == 200 else (403, FORBIDDEN)
    )


def test_the_inline_hot_path_still_checks_the_whitelist_and_revocations(
    wsgi: Client, wsgi_service: LogoutService
) -> None:
    """The middleware's own hot path (a token seen before, nothing changed) is no shortcut
    past the client's whitelist, a revocation made in this process, or one only the store knows."""
    pair = wsgi_service.login_client("legacy", "legacy-secret", ip="10.0.0.1")
    for _ in range(3):  # first sight, then hot
        assert _get(wsgi, "/api/x", bearer(pair.access_token))[0] == 200
    assert _get(wsgi, "/api/x", bearer(pair.access_token), ip="192.0.2.1") == (403, FORBIDDEN)
    assert _get(wsgi, "/api/x", bearer(pair.access_token))[0] == 200
    epoch = wsgi_service.replica.epoch
    wsgi_service.revoke_family(pair.access.fid)  # this process: seen here at once
    assert wsgi_service.replica.epoch > epoch  # what makes every hot entry look again
    assert _get(wsgi, "/api/x", bearer(pair.access_token)) == (401, INVALID)

    other = wsgi_service.login_client("open", "open-secret", ip="10.0.0.1")
    for _ in range(3):
        assert _get(wsgi, "/api/x", bearer(other.access_token))[0] == 200
    wsgi_service.store.revoke_family(other.access.fid)  # committed elsewhere: this replica learns it by syncing
    wsgi_service.replica.sync()
    assert _get(wsgi, "/api/x", bearer(other.access_token)) == (401, INVALID)
