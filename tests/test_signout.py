"""A sign-out ends the session it names, whoever refreshed first (over real HTTP).

A refresh token rotated out by a refresh (in another tab, or by a thief who
copied it) still signs its session out: ``POST /v1/auth/logout``,
``/v1/auth/logoutall`` and ``DELETE /session/token`` revoke the session (or,
for logout-all, every session of the user) and answer success, inside and
after the reuse grace window, and never raise the reuse alarm.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from example_app import PROJECT_ID
from flask_logout import signals

from .conftest import INVALID, LiveServer

pytest.importorskip("descope", reason="the descope SDK is in the test extra: pip install -e '.[test]'")

from descope import AuthException, DescopeClient

SIGNED_OUT = {"data": None, "code": 0, "msg": ""}
#: Cloudreve's answer to a dead refresh token on refresh: HTTP 200, CodeCredentialInvalid.
REVOKED = {"data": None, "code": 40020, "msg": "Failed to issue token pair"}


@pytest.fixture
def live_example(database_uri: str, rsa_pem: str) -> Iterator[LiveServer]:
    """The example app with refresh-token rotation on in the descope dialect too."""
    from example_app import create_app
    from flask_logout import get_service

    from .conftest import example_settings

    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_DESCOPE_REFRESH_ROTATION=True))
    server = LiveServer(app)
    yield server
    server.stop()
    get_service(app).close()


@pytest.fixture
def alarms(live_example: LiveServer) -> Iterator[list[Any]]:
    """Every ``reuse_detected`` signal the live app sends."""
    from flask_logout import get_service

    seen: list[Any] = []

    def receiver(_sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    service = get_service(live_example.app)
    signals.reuse_detected.connect(receiver, sender=service)
    yield seen
    signals.reuse_detected.disconnect(receiver, sender=service)


def _me(server: LiveServer, access: str) -> tuple[int, Any]:
    response = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {access}"})
    return response.status_code, response.json()


def _session_sign_in(server: LiveServer) -> dict[str, str]:
    response = httpx.post(f"{server.url}/session/token", json={"email": "alice@example.com", "password": "wonderland"})
    assert (response.status_code, response.json()["code"]) == (200, 0)
    return response.json()["data"]["token"]  # type: ignore[no-any-return]


def _session_refresh(server: LiveServer, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/session/token/refresh", json={"refresh_token": refresh_token})


def _session_sign_out(server: LiveServer, refresh_token: str) -> httpx.Response:
    return httpx.request("DELETE", f"{server.url}/session/token", json={"refresh_token": refresh_token})


def _body(response: httpx.Response) -> Any:
    body = response.json()
    body.pop("correlation_id", None)
    return body


def test_sdk_logout_with_the_refresh_token_that_was_rotated_out(live_example: LiveServer, alarms: list[Any]) -> None:
    """The official SDK: sign in, refresh (a thief, say), then log out with the original token."""
    victim, thief = (DescopeClient(project_id=PROJECT_ID, base_url=live_example.url) for _ in range(2))
    signed_in = victim.password.sign_in("alice@example.com", "wonderland")
    original = signed_in["refreshSessionToken"]["jwt"]
    stolen = thief.refresh_session(original)
    thief_session, thief_refresh = stolen["sessionToken"]["jwt"], stolen["refreshSessionToken"]["jwt"]
    assert _me(live_example, thief_session)[0] == 200

    response = victim.logout(original)
    assert response.status_code == 200
    assert response.json()["refreshJwt"] == "" and response.json()["cookieMaxAge"] == 0

    with pytest.raises(AuthException) as refused:
        thief.refresh_session(thief_refresh)
    assert refused.value.status_code == 401
    assert '"errorCode":"E064001"' in refused.value.error_message.replace(" ", "")
    assert _me(live_example, thief_session) == (401, INVALID)
    assert _me(live_example, signed_in["sessionToken"]["jwt"]) == (401, INVALID)
    assert alarms == []


def test_logoutall_with_a_rotated_out_refresh_token(live_example: LiveServer, alarms: list[Any]) -> None:
    sdk = DescopeClient(project_id=PROJECT_ID, base_url=live_example.url)
    stale_tab = sdk.password.sign_in("alice@example.com", "wonderland")
    phone = sdk.password.sign_in("alice@example.com", "wonderland")
    fresh_tab = sdk.refresh_session(stale_tab["refreshSessionToken"]["jwt"])

    response = httpx.post(
        f"{live_example.url}/v1/auth/logoutall",
        headers={"Authorization": f"Bearer {PROJECT_ID}:{stale_tab['refreshSessionToken']['jwt']}"},
    )
    assert response.status_code == 200
    assert response.json()["sessionJwt"] == ""
    for signed_in in (fresh_tab, phone):
        assert _me(live_example, signed_in["sessionToken"]["jwt"]) == (401, INVALID)
        with pytest.raises(AuthException) as refused:
            sdk.refresh_session(signed_in["refreshSessionToken"]["jwt"])
        assert refused.value.status_code == 401
    assert alarms == []


def test_session_sign_out_with_a_rotated_out_token_inside_the_grace_window(
    live_example: LiveServer, alarms: list[Any]
) -> None:
    first = _session_sign_in(live_example)
    second = _session_refresh(live_example, first["refresh_token"]).json()["data"]
    other = _session_sign_in(live_example)

    response = _session_sign_out(live_example, first["refresh_token"])  # rotated out a moment ago
    assert (response.status_code, response.json()) == (200, SIGNED_OUT)
    refused = _session_refresh(live_example, second["refresh_token"])
    assert (refused.status_code, _body(refused)) == (200, REVOKED)
    assert _me(live_example, second["access_token"]) == (401, INVALID)
    assert _me(live_example, other["access_token"])[0] == 200  # the user's other session lives on
    assert alarms == []


def test_session_sign_out_with_a_rotated_out_token_after_the_grace_window(
    live_example: LiveServer, alarms: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_logout.service as service_module

    first = _session_sign_in(live_example)
    second = _session_refresh(live_example, first["refresh_token"]).json()["data"]
    real_time = service_module.time.time
    monkeypatch.setattr(service_module.time, "time", lambda: real_time() + 6)  # default grace: 5 s

    response = _session_sign_out(live_example, first["refresh_token"])
    assert (response.status_code, response.json()) == (200, SIGNED_OUT)
    refused = _session_refresh(live_example, second["refresh_token"])
    assert (refused.status_code, _body(refused)) == (200, REVOKED)
    assert alarms == []

    # Once the session has ended, signing out again is still success (idempotent, as in
    # Cloudreve), and raises no alarm either.
    again = _session_sign_out(live_example, first["refresh_token"])
    assert (again.status_code, again.json()) == (200, SIGNED_OUT)
    assert alarms == []


def test_rotated_token_replayed_after_sign_out_is_plainly_revoked(
    live_example: LiveServer, alarms: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reuse detection is for live sessions: after a sign-out a replayed
    rotated token is refused as revoked, without the alarm."""
    import flask_logout.service as service_module

    first = _session_sign_in(live_example)
    second = _session_refresh(live_example, first["refresh_token"]).json()["data"]
    assert _session_sign_out(live_example, second["refresh_token"]).json() == SIGNED_OUT
    real_time = service_module.time.time
    monkeypatch.setattr(service_module.time, "time", lambda: real_time() + 6)  # past the grace window
    replay = _session_refresh(live_example, first["refresh_token"])
    assert (replay.status_code, _body(replay)) == (200, REVOKED)
    assert alarms == []


def test_sign_out_after_sign_out_everywhere_is_success(live_example: LiveServer) -> None:
    """A rotated-out token whose user signed out everywhere since has nothing left to end:
    success (idempotent), and the session stays ended."""
    first = _session_sign_in(live_example)
    second = _session_refresh(live_example, first["refresh_token"]).json()["data"]
    logout_all = httpx.post(
        f"{live_example.url}/v1/auth/logoutall",
        headers={"Authorization": f"Bearer {PROJECT_ID}:{second['refresh_token']}"},
    )
    assert logout_all.status_code == 200
    response = _session_sign_out(live_example, first["refresh_token"])
    assert (response.status_code, response.json()) == (200, SIGNED_OUT)
    refused = _session_refresh(live_example, second["refresh_token"])
    assert (refused.status_code, _body(refused)) == (200, REVOKED)
