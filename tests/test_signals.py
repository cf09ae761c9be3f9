"""Signals sent after each change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flask_logout import LogoutService, signals

from .conftest import FAST_HASH, SECRET


@pytest.fixture
def service(tmp_path: Any) -> Iterator[LogoutService]:
    service = LogoutService.from_settings(
        {
            "LOGOUT_SECRET_KEY": SECRET,
            "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/s.sqlite3",
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
            "LOGOUT_REUSE_GRACE_SECONDS": 0,
        }
    )
    yield service
    service.close()


@pytest.fixture
def received(service: LogoutService) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name in ("token_issued", "token_refreshed", "logged_out", "reuse_detected", "backchannel_logout_received"):

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            assert sender is service
            seen.append((_name, kwargs))

        getattr(signals, name).connect(receiver, sender=service)
        receivers.append((name, receiver))
    yield seen
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver, sender=service)


def test_issue_refresh_and_every_logout_scope(service: LogoutService, received: list[Any]) -> None:
    pair = service.issue_tokens("alice")
    assert received[-1] == ("token_issued", {"pair": pair, "subject": "alice", "client_id": None})
    new = service.refresh(pair.refresh_token)
    assert received[-1] == ("token_refreshed", {"pair": new, "previous_jti": pair.refresh.jti})
    service.revoke_token(new.access.jti, access_expires_at=new.access.exp)
    assert received[-1] == ("logged_out", {"scope": "token", "key": new.access.jti})
    service.revoke_family(new.access.fid)
    assert received[-1] == ("logged_out", {"scope": "family", "key": new.access.fid})
    service.revoke_user("alice")
    assert received[-1] == ("logged_out", {"scope": "user", "key": "alice"})
    service.revoke_client("api")
    assert received[-1] == ("logged_out", {"scope": "client", "key": "api"})


def test_reuse_detected(service: LogoutService, received: list[Any]) -> None:
    from flask_logout import ReuseDetected

    pair = service.issue_tokens("bob")
    service.refresh(pair.refresh_token)
    import time

    time.sleep(0.01)  # past the (zero) grace window; no timing is asserted
    with pytest.raises(ReuseDetected):
        service.refresh(pair.refresh_token)
    names = [name for name, _ in received]
    assert names[-2:] == ["logged_out", "reuse_detected"]
    assert received[-1][1]["token"].jti == pair.refresh.jti


def test_backchannel_signal(service: LogoutService, received: list[Any]) -> None:
    from flask_logout import SsoLogin

    service.issue_tokens("carol", sso=SsoLogin("idp", sid="s-1", sub="x"))
    ended = service.revoke_provider_sessions("idp", sid="s-1", sub=None, once=("idp|jti-1", 2**31))
    assert ended == 1
    assert received[-1] == ("backchannel_logout_received", {"provider": "idp", "sid": "s-1", "sub": None, "ended": 1})
