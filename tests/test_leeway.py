"""``LOGOUT_LEEWAY`` over real HTTP, and the hot path for end-user tokens.

Tokens are issued with ``_issued_at`` in the past or the future rather than
by waiting, as if by another host whose clock is a few seconds off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from flask_logout import get_service
from flask_logout.tokens import now

from .conftest import EXPIRED, INVALID, LiveServer, build_app


@pytest.fixture
def serve(database_uri: str) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def _serve(**settings: Any) -> LiveServer:
        server = LiveServer(build_app(database_uri, **settings))
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()
        get_service(server.app).close()


def _me(server: LiveServer, token: str) -> tuple[int, Any]:
    response = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


def _issued_at(server: LiveServer, issued_at: int) -> str:
    return get_service(server.app).issue_tokens("U-alice", _issued_at=issued_at).access_token


def test_a_token_from_a_host_whose_clock_is_two_seconds_fast(serve: Callable[..., LiveServer]) -> None:
    tolerant, strict = serve(LOGOUT_LEEWAY=5), serve(LOGOUT_LEEWAY=0)
    ok = {"success": True, "data": {"client_id": None, "sub": "U-alice"}}
    assert _me(tolerant, _issued_at(tolerant, now() + 2)) == (200, ok)
    assert _me(strict, _issued_at(strict, now() + 2)) == (401, INVALID)  # pyjwt refuses an iat in the future


def test_leeway_is_honoured_for_exp(serve: Callable[..., LiveServer]) -> None:
    tolerant, strict = serve(LOGOUT_LEEWAY=10), serve(LOGOUT_LEEWAY=0)
    ttl = get_service(tolerant.app).config.access_ttl
    expired_two_seconds_ago = now() - ttl - 2
    token = _issued_at(tolerant, expired_two_seconds_ago)
    assert [_me(tolerant, token)[0] for _ in range(2)] == [200, 200]  # the store's check, then the hot path
    assert _me(strict, _issued_at(strict, expired_two_seconds_ago)) == (401, EXPIRED)


def test_a_revoked_session_is_refused_at_once_on_the_hot_path(serve: Callable[..., LiveServer]) -> None:
    """An end-user token this process has checked before is answered from the
    hot path (replica, no store query); revoking its session ends it there."""
    server = serve()
    service = get_service(server.app)
    pair = service.issue_tokens("U-alice")
    assert _me(server, pair.access_token)[0] == 200
    assert _me(server, pair.access_token)[0] == 200
    assert service._hot.find(f"Bearer {pair.access_token}") is not None  # it is hot now (keyed by the header)
    service.revoke_family(pair.access.fid)
    assert _me(server, pair.access_token) == (401, INVALID)
