"""The testing helpers shipped for users of the library, used as a user would."""

from __future__ import annotations

from typing import Any

import pytest

from flask_logout.testing import TokenFactory, assert_refused

from .conftest import build_app


@pytest.fixture
def app(database_uri: str) -> Any:
    from flask_logout import get_service

    app = build_app(database_uri)
    yield app
    get_service(app).close()


def test_every_bad_token_is_refused(app: Any, logout_tokens: TokenFactory) -> None:
    """The pytest plugin's fixture, built from this module's ``app`` fixture."""
    client = app.test_client()
    good = client.get(
        "/api/me", headers=logout_tokens.header(logout_tokens.valid("demo-client", client_id="demo-client"))
    )
    assert good.status_code == 200
    assert_refused(
        client.get("/api/me", headers=logout_tokens.header(logout_tokens.expired())), message="Token expired"
    )
    for bad in (logout_tokens.revoked(), logout_tokens.unknown(), logout_tokens.forged()):
        assert_refused(client.get("/api/me", headers=logout_tokens.header(bad)), message="Invalid token")
    assert_refused(client.get("/api/me"), message="Authorization header required")


def test_assert_refused_fails_on_acceptance(app: Any) -> None:
    tokens = TokenFactory(app)
    client = app.test_client()
    ok = client.get("/api/me", headers=tokens.header(tokens.valid("demo-client", client_id="demo-client")))
    with pytest.raises(AssertionError, match="expected 401, got 200"):
        assert_refused(ok)
    refused = client.get("/api/me")
    with pytest.raises(AssertionError, match="expected message 'Invalid token'"):
        assert_refused(refused, message="Invalid token")
