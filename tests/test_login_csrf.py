"""No login CSRF: the cookie-setting sign-in takes JSON only, and not from another origin (real HTTP).

``tests/test_browser.py`` shows the attack from a real browser; here each
rule is pinned with exact answers. The official SDK (JSON, no ``Origin``)
keeps working: ``tests/test_descope_sdk.py``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from example_app import PROJECT_ID, create_app
from flask_logout import get_service

from .conftest import LiveServer, example_settings

CREDENTIALS = '{"loginId": "alice@example.com", "password": "wonderland"}'
CROSS_ORIGIN = {
    "errorCode": "E901007",
    "errorDescription": "Cross-origin request refused",
    "errorMessage": "Sign-in requests must come from this site's origin",
}
NOT_JSON = {
    "errorCode": "E011001",
    "errorDescription": "Bad request",
    "errorMessage": "The request body must be JSON (Content-Type: application/json)",
}


def _sign_in(server: LiveServer, content_type: str | None, **headers: str) -> httpx.Response:
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(f"{server.url}/v1/auth/password/signin", content=CREDENTIALS, headers=headers)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json"],
)
def test_a_body_not_declared_json_sets_no_cookie(live_example: LiveServer, content_type: str | None) -> None:
    response = _sign_in(live_example, content_type)
    assert (response.status_code, response.json()) == (400, NOT_JSON)
    assert response.headers.get_list("set-cookie") == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost"},  # another site: localhost is not 127.0.0.1
        {"Origin": "null"},  # a sandboxed page
        {"Referer": "http://evil.example/trap.html"},  # an old browser, no Origin
    ],
)
def test_a_json_sign_in_from_another_origin_sets_no_cookie(live_example: LiveServer, headers: dict[str, str]) -> None:
    response = _sign_in(live_example, "application/json", **headers)
    assert (response.status_code, response.json()) == (403, CROSS_ORIGIN)
    assert response.headers.get_list("set-cookie") == []


def test_another_port_of_the_same_host_is_another_origin(live_example: LiveServer) -> None:
    same_site = live_example.url.rsplit(":", 1)[0] + ":1"
    response = _sign_in(live_example, "application/json", Origin=same_site)
    assert (response.status_code, response.json()) == (403, CROSS_ORIGIN)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # an SDK or a server: neither Origin nor Referer
        {"Authorization": f"Bearer {PROJECT_ID}"},
        {"Origin": "SAME"},
        {"Referer": "SAME/page"},
    ],
)
def test_json_from_this_origin_or_without_one_signs_in(live_example: LiveServer, headers: dict[str, str]) -> None:
    headers = {k: v.replace("SAME", live_example.url) for k, v in headers.items()}
    response = _sign_in(live_example, "application/json; charset=utf-8", **headers)
    assert response.status_code == 200
    assert response.json()["user"]["userId"] == "U-alice"
    assert {c.split("=", 1)[0] for c in response.headers.get_list("set-cookie")} == {"DS", "DSR"}


def test_a_trusted_origin_may_sign_in(database_uri: str, rsa_pem: str) -> None:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_TRUSTED_ORIGINS=["https://app.example"]))
    server = LiveServer(app)
    try:
        trusted = _sign_in(server, "application/json", Origin="https://app.example")
        assert trusted.status_code == 200
        other: Any = _sign_in(server, "application/json", Origin="https://other.example")
        assert (other.status_code, other.json()) == (403, CROSS_ORIGIN)
    finally:
        server.stop()
        get_service(app).close()
