"""The official ``descope`` Python SDK against the example app over real HTTP.

The SDK's ``validate_session`` verifies a session JWT locally (signature and
expiry, with keys from ``/v2/keys/<ProjectID>``); it cannot know about a
revocation. So after sign-out the session token is shown to be refused by
the application itself (``GET /api/me``), and the refresh token by the SDK's
own ``refresh_session``.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("descope", reason="the descope SDK is in the test extra: pip install -e '.[test]'")

import httpx
from descope import AuthException, DescopeClient

from example_app import PROJECT_ID

from .conftest import INVALID, LiveServer


def _app_says(server: LiveServer, session_jwt: str) -> tuple[int, Any]:
    response = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {session_jwt}"})
    return response.status_code, response.json()


def _sdk(server: LiveServer) -> DescopeClient:
    return DescopeClient(project_id=PROJECT_ID, base_url=server.url)


def test_sign_in_validate_refresh_logout(live_example: LiveServer) -> None:
    client = _sdk(live_example)
    signed_in = client.password.sign_in("alice@example.com", "wonderland")
    session = signed_in["sessionToken"]["jwt"]
    refresh = signed_in["refreshSessionToken"]["jwt"]
    assert signed_in["userId"] == "U-alice"
    assert signed_in["projectId"] == PROJECT_ID
    assert signed_in["user"]["email"] == "alice@example.com"

    validated = client.validate_session(session)
    assert validated["userId"] == "U-alice"
    assert _app_says(live_example, session) == (200, {"success": True, "data": {"user_id": "U-alice"}})

    refreshed = client.refresh_session(refresh)
    new_session = refreshed["sessionToken"]["jwt"]
    new_refresh = refreshed["refreshSessionToken"]["jwt"]
    assert new_refresh == refresh  # no rotation by default, as in Descope
    assert new_session != session
    again = client.refresh_session(refresh)  # the original refresh token keeps working
    assert again["sessionToken"]["jwt"] not in (session, new_session)

    response = client.logout(new_refresh)
    assert response.status_code == 200
    assert response.json()["sessionJwt"] == "" and response.json()["cookieMaxAge"] == 0

    with pytest.raises(AuthException) as refused:
        client.refresh_session(new_refresh)
    assert refused.value.status_code == 401
    assert '"errorCode":"E064001"' in refused.value.error_message.replace(" ", "")
    assert _app_says(live_example, new_session) == (401, INVALID)
    with pytest.raises(AuthException) as again:
        client.logout(new_refresh)
    assert again.value.status_code == 401


def test_logout_all_across_two_sign_ins(live_example: LiveServer) -> None:
    laptop, phone = _sdk(live_example), _sdk(live_example)
    first = laptop.password.sign_in("alice@example.com", "wonderland")
    second = phone.password.sign_in("alice@example.com", "wonderland")
    for signed_in in (first, second):
        assert _app_says(live_example, signed_in["sessionToken"]["jwt"])[0] == 200

    assert laptop.logout_all(first["refreshSessionToken"]["jwt"]).status_code == 200

    for client, signed_in in ((laptop, first), (phone, second)):
        assert _app_says(live_example, signed_in["sessionToken"]["jwt"]) == (401, INVALID)
        with pytest.raises(AuthException) as refused:
            client.refresh_session(signed_in["refreshSessionToken"]["jwt"])
        assert refused.value.status_code == 401
    assert phone.password.sign_in("alice@example.com", "wonderland")["userId"] == "U-alice"


def test_wrong_password_through_the_sdk(live_example: LiveServer) -> None:
    with pytest.raises(AuthException) as refused:
        _sdk(live_example).password.sign_in("alice@example.com", "not-the-password")
    assert refused.value.status_code == 401
