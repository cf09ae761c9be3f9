"""``LOGOUT_COOKIE_AUTH``: the bearer middleware accepts the browser's session cookie.

With it on, a protected request without ``Authorization`` is authenticated
by the ``DS`` cookie; a lapsed one is renewed with ``DSR`` (both new cookies
on the answer); when both are dead the answer clears them; and a
state-changing method must come from the site's own origin. Checked around a
plain WSGI app, in a Flask app, and over real HTTP with a cookie jar.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, jsonify
from werkzeug.test import Client

from flask_logout import BearerMiddleware, LogoutManager, LogoutService, current_token, get_service

from .conftest import INVALID, MISSING, SECRET, LiveServer, base_settings

FORBIDDEN_ORIGIN = {"error": {"name": "ForbiddenError", "code": "FORBIDDEN", "message": "Cross-origin request refused"}}


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    token = environ.get("flask_logout.token")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [(token.sub if token is not None else "-").encode()]


@pytest.fixture
def service(database_uri: str) -> Iterator[LogoutService]:
    service = LogoutService.from_settings({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DATABASE_URI": database_uri})
    yield service
    service.close()


def _set_cookies(response: Any) -> dict[str, str]:
    """Name -> the whole Set-Cookie value, for the cookies the answer sets or deletes."""
    return {value.split("=", 1)[0]: value for value in response.headers.getlist("Set-Cookie")}


def _client(service: LogoutService, cookies: bool = True) -> Client:
    return Client(BearerMiddleware(_echo, service, ["/api"], cookies=cookies))


def test_the_session_cookie_authenticates(service: LogoutService) -> None:
    pair = service.issue_tokens("alice")
    client = _client(service)
    client.set_cookie("DS", pair.access_token)
    response = client.get("/api/me")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "alice")
    assert "Set-Cookie" not in response.headers  # nothing to renew


def test_a_lapsed_session_cookie_is_renewed_with_the_refresh_cookie(service: LogoutService) -> None:
    import time

    stale = service.issue_tokens("alice", _issued_at=int(time.time()) - service.config.access_ttl - 5)
    client = _client(service)
    client.set_cookie("DS", stale.access_token)
    client.set_cookie("DSR", stale.refresh_token)
    response = client.get("/api/me")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "alice")
    renewed = _set_cookies(response)
    assert set(renewed) == {"DS", "DSR"}
    assert "HttpOnly" in renewed["DS"] and "HttpOnly" in renewed["DSR"]
    new_refresh = renewed["DSR"].split(";", 1)[0].split("=", 1)[1]
    assert new_refresh != stale.refresh_token  # rotated: the old one is spent
    service.verify(new_refresh, expected_type="refresh")


def test_dead_cookies_are_refused_and_cleared(service: LogoutService) -> None:
    pair = service.issue_tokens("alice")
    client = _client(service)
    client.set_cookie("DS", pair.access_token)
    client.set_cookie("DSR", pair.refresh_token)
    for _ in range(3):  # first sight, then the hot path (the Cookie header parsed before, the token hot)
        assert client.get("/api/me").status_code == 200
    service.revoke_family(pair.access.fid)  # signed out elsewhere
    response = client.get("/api/me")
    assert (response.status_code, response.get_json()) == (401, INVALID)
    cleared = _set_cookies(response)
    assert set(cleared) == {"DS", "DSR"}
    assert all("Max-Age=0" in value for value in cleared.values())


def test_a_state_change_from_another_origin_is_refused(service: LogoutService) -> None:
    pair = service.issue_tokens("alice")
    client = _client(service)
    client.set_cookie("DS", pair.access_token)
    for _ in range(2):  # the session is hot: no shortcut past the origin check for a state change
        assert client.get("/api/me").status_code == 200
    foreign = client.post("/api/me", headers={"Origin": "https://evil.example"})
    assert (foreign.status_code, foreign.get_json()) == (403, FORBIDDEN_ORIGIN)
    own = client.post("/api/me", headers={"Origin": "http://localhost"})
    assert (own.status_code, own.get_data(as_text=True)) == (200, "alice")
    assert client.get("/api/me", headers={"Origin": "https://evil.example"}).status_code == 200  # reads are safe


def test_no_cookie_and_no_header_is_missing_authorization(service: LogoutService) -> None:
    response = _client(service).get("/api/me")
    assert (response.status_code, response.get_json()) == (401, MISSING)


def test_a_bearer_header_wins_over_the_cookie(service: LogoutService) -> None:
    alice, bob = service.issue_tokens("alice"), service.issue_tokens("bob")
    client = _client(service)
    client.set_cookie("DS", alice.access_token)
    response = client.get("/api/me", headers={"Authorization": f"Bearer {bob.access_token}"})
    assert response.get_data(as_text=True) == "bob"
    # ...and a bad header is refused, not rescued by a good cookie.
    assert client.get("/api/me", headers={"Authorization": "Bearer nope"}).get_json() == INVALID


def test_without_cookie_mode_the_cookie_is_ignored(service: LogoutService) -> None:
    pair = service.issue_tokens("alice")
    client = _client(service, cookies=False)
    client.set_cookie("DS", pair.access_token)
    response = client.get("/api/me")
    assert (response.status_code, response.get_json()) == (401, MISSING)


@pytest.fixture
def cookie_app(database_uri: str) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(base_settings(database_uri, LOGOUT_COOKIE_AUTH=True, LOGOUT_COOKIE_SECURE=False))
    LogoutManager(app)

    @app.get("/api/me")
    def me() -> Any:
        return jsonify({"sub": current_token().sub})

    yield app
    get_service(app).close()


def test_over_http_a_browser_session_renews_then_ends(cookie_app: Flask) -> None:
    """A real cookie jar: the lapsed cookie is renewed, then a sign-out elsewhere ends it and clears the jar."""
    import time

    service = get_service(cookie_app)
    stale = service.issue_tokens("alice", _issued_at=int(time.time()) - service.config.access_ttl - 5)
    server = LiveServer(cookie_app)
    try:
        browser = requests.Session()
        host = server.url.split("//", 1)[1].split(":", 1)[0]
        browser.cookies.set("DS", stale.access_token, domain=host)
        browser.cookies.set("DSR", stale.refresh_token, domain=host)
        first = browser.get(f"{server.url}/api/me", timeout=10)
        assert (first.status_code, first.json()) == (200, {"sub": "alice"})
        assert browser.cookies.get("DS") not in (None, stale.access_token)
        again = browser.get(f"{server.url}/api/me", timeout=10)
        assert (again.status_code, again.json()) == (200, {"sub": "alice"})
        assert not again.headers.get("Set-Cookie")  # the renewed cookie is used as it is
        service.revoke_user("alice")  # "sign out everywhere", from another device
        ended = browser.get(f"{server.url}/api/me", timeout=10)
        assert (ended.status_code, ended.json()) == (401, INVALID)
        assert "DS" not in browser.cookies and "DSR" not in browser.cookies  # the jar dropped them
    finally:
        server.stop()


def test_an_authorization_header_without_its_scheme_is_refused_even_for_a_hot_cookie_token(
    service: LogoutService,
) -> None:
    """RFC 6750: ``Authorization: <token>`` is not a bearer credential, even when that token
    is a live session cookie this process has just checked (the two are cached apart)."""
    pair = service.issue_tokens("alice")
    client = _client(service)
    client.set_cookie("DS", pair.access_token)
    for _ in range(2):
        assert client.get("/api/me").get_data(as_text=True) == "alice"
    bare = Client(BearerMiddleware(_echo, service, ["/api"], cookies=True))
    refused = bare.get("/api/me", headers={"Authorization": pair.access_token})
    assert (refused.status_code, refused.get_json()) == (401, INVALID)
    schemed = bare.get("/api/me", headers={"Authorization": f"Bearer {pair.access_token}"})
    assert (schemed.status_code, schemed.get_data(as_text=True)) == (200, "alice")


def _raw_client(service: LogoutService) -> Client:
    """A client that sends the ``Cookie`` header as given (no cookie jar of its own)."""
    return Client(BearerMiddleware(_echo, service, ["/api"], cookies=True), use_cookies=False)


def _get(client: Client, cookie: str, **headers: str) -> tuple[int, Any]:
    response = client.get("/api/me", headers={"Cookie": cookie, **headers})
    body = response.get_json() if response.is_json else response.get_data(as_text=True)
    return response.status_code, body


def test_the_hot_path_finds_the_session_cookie_without_parsing_the_header(
    service: LogoutService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser's header changes whenever any cookie of the site does (another
    app's session, a tracker's timestamp); a hot session must stay hot without
    the header being parsed again, wherever DS stands among the cookies."""
    import flask_logout.middleware as middleware

    pair = service.issue_tokens("alice")
    client = _raw_client(service)
    assert _get(client, f"DS={pair.access_token}") == (200, "alice")  # first sight
    parsed: list[str] = []

    def counting(header: str) -> Any:
        parsed.append(header)
        return middleware.parse_cookie.__wrapped__(header)  # type: ignore[attr-defined]

    counting.__wrapped__ = middleware.parse_cookie  # type: ignore[attr-defined]
    monkeypatch.setattr(middleware, "parse_cookie", counting)
    monkeypatch.setattr(middleware, "_cookie_jars", {})
    for n in range(5):
        for cookie in (
            f"tracker={n}; DS={pair.access_token}; DSR={pair.refresh_token}",
            f"DSR={pair.refresh_token}; DS={pair.access_token}; seen={n}",
            f"XDS={n};DS={pair.access_token}",
            f"a=DS; DS={pair.access_token}",
        ):
            assert _get(client, cookie) == (200, "alice")
    assert parsed == []


def test_a_header_of_another_shape_is_decided_by_the_parser(service: LogoutService) -> None:
    """Shapes the quick reading leaves to werkzeug's parse get werkzeug's answer:
    a quoted cookie, blanks around the key, and a first ``DS`` without a value."""
    pair = service.issue_tokens("alice")
    client = _raw_client(service)
    token = pair.access_token
    for _ in range(2):  # first sight, then hot
        assert _get(client, f'q="a; b"; DS={token}') == (200, "alice")
        assert _get(client, f"DS ={token}") == (200, "alice")
        assert _get(client, f"a=1;  DS={token}") == (200, "alice")
        # werkzeug reads the first DS, "" here: no session, so the later one is not used
        assert _get(client, f"DS; DS={token}") == (401, MISSING)


def test_an_entry_is_used_only_for_its_own_header_or_cookie(service: LogoutService) -> None:
    """Hot entries are filed under their key's last characters: a header or a
    cookie ending like a hot token, but not that token, gets no hot answer."""
    pair = service.issue_tokens("alice")
    token = pair.access_token
    client = _raw_client(service)
    for _ in range(2):
        assert _get(client, f"DS={token}") == (200, "alice")
        assert _get(client, "", Authorization=f"Bearer {token}") == (200, "alice")
    forged = "x" * 40 + token[-20:]
    assert _get(client, f"DS={forged}") == (401, INVALID)
    assert _get(client, f"DS=A{token}") == (401, INVALID)
    assert _get(client, f"DS={token}{token[-16:]}") == (401, INVALID)  # the token, then its own tail
    assert _get(client, f"DS={token[:-1]}") == (401, INVALID)  # the token less its last character
    assert _get(client, f"DS={token[-10:]}") == (401, INVALID)  # a value shorter than the tail
    assert _get(client, f"DS={token[-16:]}; a=1") == (401, INVALID)  # the tail alone, another cookie after
    assert _get(client, "", Authorization=f"Bearer {forged}") == (401, INVALID)
    assert _get(client, "", Authorization=f"Bearer A{token}") == (401, INVALID)
    assert _get(client, "", Authorization=f"Bearer {token}{token[-16:]}") == (401, INVALID)
    assert _get(client, f"DS={token}") == (200, "alice")  # the genuine ones are still hot
    assert _get(client, "", Authorization=f"Bearer {token}") == (200, "alice")
    assert service._hot_tokens.find(token) is not None and service._hot.find(f"Bearer {token}") is not None
