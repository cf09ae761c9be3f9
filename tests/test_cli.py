"""``flask logout`` commands: exact output and exit status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_logout import LogoutManager, get_service
from flask_logout.errors import TokenRevoked

from .conftest import FAST_HASH, SECRET


@pytest.fixture
def app(database_uri: str) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(LOGOUT_SECRET_KEY=SECRET, LOGOUT_DATABASE_URI=database_uri, LOGOUT_CLIENT_SECRET_HASH=FAST_HASH)
    LogoutManager(app)
    yield app
    get_service(app).close()


def run(app: Flask, *args: str, **kwargs: Any) -> Any:
    return app.test_cli_runner().invoke(args=["logout", *args], **kwargs)


def dead(app: Flask, token: str, typ: str = "access") -> bool:
    """Revoked: exactly :class:`TokenRevoked` (a store outage or an expiry is not "dead")."""
    try:
        get_service(app).verify(token, expected_type=typ)
    except TokenRevoked:
        return True
    return False


def test_revoke_token(app: Flask) -> None:
    service = get_service(app)
    access, refresh = service.issue_tokens("u"), service.issue_tokens("u")
    result = run(app, "revoke-token", access.access_token)
    assert (result.exit_code, result.output) == (0, "revoked\n")
    assert dead(app, access.access_token) and not dead(app, access.refresh_token, "refresh")
    assert run(app, "revoke-token", refresh.refresh_token).output == "revoked\n"
    assert dead(app, refresh.access_token)  # the refresh token took its session with it
    bad = run(app, "revoke-token", "not-a-token")
    assert bad.exit_code == 1
    assert bad.output == "Error: not a token issued by this application (bad signature or malformed)\n"


def test_revoke_session(app: Flask) -> None:
    service = get_service(app)
    pair = service.issue_tokens("u")
    result = run(app, "revoke-session", pair.access.fid)
    assert (result.exit_code, result.output) == (0, f"revoked session {pair.access.fid}\n")
    assert dead(app, pair.access_token)
    again = run(app, "revoke-session", pair.access.fid)
    assert (again.exit_code, again.output) == (1, f"Error: no live session '{pair.access.fid}'\n")


def test_revoke_user_and_client(app: Flask) -> None:
    service = get_service(app)
    service.register_client("c1", "s1")
    user, client = service.issue_tokens("u1"), service.issue_tokens("c1", client_id="c1")
    assert run(app, "revoke-user", "u1").output == "revoked every token of user u1\n"
    assert dead(app, user.access_token) and not dead(app, client.access_token)
    assert run(app, "revoke-client", "c1").output == "revoked every token of client c1\n"
    assert dead(app, client.access_token)
    missing = run(app, "revoke-client", "nobody")
    assert (missing.exit_code, missing.output) == (1, "Error: no API client 'nobody'\n")


def test_delete_client(app: Flask) -> None:
    service = get_service(app)
    service.register_client("c1", "s1")
    service.register_client("c2", "s2")
    first, second = service.login_client("c1", "s1"), service.login_client("c2", "s2")
    result = run(app, "delete-client", "c1")
    assert (result.exit_code, result.output) == (0, "deleted client c1 and revoked every token of it\n")
    assert dead(app, first.access_token) and dead(app, first.refresh_token, "refresh")
    assert not dead(app, second.access_token)  # other clients are untouched
    assert service.store.get_client("c1") is None
    again = run(app, "delete-client", "c1")
    assert (again.exit_code, again.output) == (1, "Error: no API client 'c1'\n")
    service.register_client("c1", "s1")  # created again: the old tokens stay dead
    assert dead(app, first.access_token) and dead(app, first.refresh_token, "refresh")
    assert not dead(app, service.login_client("c1", "s1").access_token)


def test_create_client_with_a_new_secret_revokes_its_tokens(app: Flask) -> None:
    service = get_service(app)
    run(app, "create-client", "api", "--secret", "first-secret")
    pair = service.login_client("api", "first-secret")
    same = run(app, "create-client", "api", "--secret", "first-secret", "--cidr", "10.0.0.0/8")
    assert (same.exit_code, same.output) == (0, "client api saved, allowed from 10.0.0.0/8\n")
    assert not dead(app, pair.access_token)
    changed = run(app, "create-client", "api", "--secret", "second-secret")
    assert (changed.exit_code, changed.output) == (0, "client api saved\n")
    assert dead(app, pair.access_token) and dead(app, pair.refresh_token, "refresh")


def test_sessions(app: Flask) -> None:
    service = get_service(app)
    first, second = service.issue_tokens("u2"), service.issue_tokens("u2")
    service.revoke_family(first.access.fid)
    result = run(app, "sessions", "--user", "u2")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "1 live session(s) for user u2:"
    assert lines[1].startswith(f"  {second.access.fid}  signed in ")
    assert run(app, "sessions", "--user", "nobody").output == "no live sessions for user nobody\n"
    both = run(app, "sessions", "--user", "a", "--client", "b")
    assert both.exit_code == 2 and "give exactly one of --user and --client" in both.output


def test_create_client(app: Flask) -> None:
    result = run(app, "create-client", "api", "--secret", "s3cret", "--cidr", "10.0.0.0/8", "--cidr", "::1/128")
    assert (result.exit_code, result.output) == (0, "client api saved, allowed from 10.0.0.0/8, ::1/128\n")
    assert get_service(app).authenticate_client("api", "s3cret", ip="10.1.1.1").client_id == "api"
    bad = run(app, "create-client", "api", "--secret", "x", "--cidr", "10.0.0.1/8")
    assert bad.exit_code == 2 and "malformed CIDR '10.0.0.1/8'" in bad.output
    prompted = run(app, "create-client", "api2", input="pw\npw\n")
    assert prompted.exit_code == 0 and "client api2 saved" in prompted.output


def test_purge(app: Flask) -> None:
    service = get_service(app)
    pair = service.issue_tokens("u")
    service.revoke_family(pair.access.fid)
    result = run(app, "purge")
    assert (result.exit_code, result.output) == (
        0,
        "purged 0 log entries, 0 token rows, 0 sessions, 0 logout-token ids, 0 signing keys\n",
    )
    assert dead(app, pair.refresh_token, "refresh")  # live revocations stay
    bad = run(app, "purge", "--grace", "-1")
    assert bad.exit_code == 2 and "Invalid value for '--grace'" in bad.output


def test_store_down_is_a_clear_error(app: Flask) -> None:
    import sqlalchemy as sa

    engine = get_service(app).store.engine

    def down(*_args: Any) -> None:
        raise sa.exc.OperationalError("UPDATE", {}, Exception("could not connect"))

    sa.event.listen(engine, "before_cursor_execute", down)
    try:
        result = run(app, "revoke-user", "u")
    finally:
        sa.event.remove(engine, "before_cursor_execute", down)
    assert (result.exit_code, result.output) == (1, "Error: the token store cannot be reached; nothing was changed\n")


@pytest.mark.parametrize(
    "args",
    [
        ("revoke-session", "some-session"),
        ("revoke-client", "c1"),
        ("delete-client", "c1"),
        ("create-client", "c2", "--secret", "s"),
        ("sessions", "--user", "u"),
    ],
)
def test_every_command_reports_a_store_outage_cleanly(app: Flask, args: tuple[str, ...]) -> None:
    import sqlalchemy as sa

    engine = get_service(app).store.engine

    def down(*_args: Any) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("could not connect"))

    sa.event.listen(engine, "before_cursor_execute", down)
    try:
        result = run(app, *args)
    finally:
        sa.event.remove(engine, "before_cursor_execute", down)
    assert (result.exit_code, result.output) == (1, "Error: the token store cannot be reached; nothing was changed\n")


def test_ids_never_look_like_options(app: Flask) -> None:
    """Session ids are CLI arguments: one starting with '-' would be parsed as an option."""
    service = get_service(app)
    for _ in range(200):
        pair = service.issue_tokens("u")
        assert not pair.access.fid.startswith("-") and not pair.access.jti.startswith("-")
