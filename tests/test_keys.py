"""Signing keys kept in the store (LOGOUT_KEYRING): rotation without cutting off live tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from flask_logout import ConfigError, InvalidToken, LogoutManager, LogoutService, get_service

from .conftest import FAST_HASH


def _settings(database_uri: str, **extra: Any) -> dict[str, Any]:
    return {
        "LOGOUT_ALGORITHM": "ES256",
        "LOGOUT_KEYRING": True,
        "LOGOUT_DATABASE_URI": database_uri,
        "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        "LOGOUT_SYNC_INTERVAL": 3600,
        "LOGOUT_MAX_STALENESS": 10800,
        "LOGOUT_PUSH": False,
        **extra,
    }


@pytest.fixture
def two(database_uri: str) -> Iterator[tuple[LogoutService, LogoutService]]:
    first = LogoutService.from_settings(_settings(database_uri))
    second = LogoutService.from_settings(_settings(database_uri))  # another process on the same store
    yield first, second
    first.close()
    second.close()


def _kids(service: LogoutService) -> list[str]:
    return sorted(key["kid"] for key in service.jwks()["keys"])


def test_first_start_creates_one_key_shared_by_every_process(two: tuple[LogoutService, LogoutService]) -> None:
    first, second = two
    assert len(_kids(first)) == 1
    assert _kids(first) == _kids(second)
    token = first.issue_tokens("u").access_token
    assert second.verify(token)[0].sub == "u"


def test_rotation_keeps_old_tokens_working_and_reaches_other_processes(
    two: tuple[LogoutService, LogoutService],
) -> None:
    first, second = two
    old_token = first.issue_tokens("u").access_token
    old_kid = _kids(first)[0]
    new_kid = first.rotate_keys()
    assert new_kid != old_kid
    assert _kids(first) == sorted([old_kid, new_kid])  # the old key stays published
    new_token = first.issue_tokens("u").access_token
    import jwt

    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert first.verify(old_token)[0].sub == "u"
    second.replica.sync()  # the rotation travels through the replication log
    assert _kids(second) == sorted([old_kid, new_kid])
    assert jwt.get_unverified_header(second.issue_tokens("v").access_token)["kid"] == new_kid
    assert second.verify(new_token)[0].sub == "u"
    assert second.verify(old_token)[0].sub == "u"


def test_retired_keys_leave_once_their_tokens_have_expired(two: tuple[LogoutService, LogoutService]) -> None:
    first, _ = two
    old_token = first.issue_tokens("u").access_token
    first.rotate_keys()
    later = int(time.time()) + first.store.key_ttl + 10
    counts = first.store.purge(later)
    assert counts["keys"] == 1
    first._load_keyring()
    assert len(_kids(first)) == 1
    with pytest.raises(InvalidToken):
        first.verify(old_token)


def test_keys_are_encrypted_with_the_passphrase(database_uri: str) -> None:
    service = LogoutService.from_settings(_settings(database_uri, LOGOUT_KEYRING_PASSPHRASE="correct horse battery"))
    try:
        (stored,) = service.store.signing_keys()
        assert "ENCRYPTED PRIVATE KEY" in stored.private_pem
        with pytest.raises(ConfigError, match="LOGOUT_KEYRING_PASSPHRASE: cannot decrypt the signing keys"):
            LogoutService.from_settings(_settings(database_uri, LOGOUT_KEYRING_PASSPHRASE="a wrong passphrase!"))
    finally:
        service.close()


def test_configured_key_is_imported_as_the_first(database_uri: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    service = LogoutService.from_settings(_settings(database_uri, LOGOUT_PRIVATE_KEY=pem, LOGOUT_KEY_ID="given"))
    try:
        assert _kids(service) == ["given"]
    finally:
        service.close()


def test_keyring_settings_are_checked(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="LOGOUT_KEYRING: needs an asymmetric LOGOUT_ALGORITHM"):
        LogoutService.from_settings(
            {"LOGOUT_KEYRING": True, "SECRET_KEY": "s" * 40, "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/k.sqlite3"}
        )
    with pytest.raises(ConfigError, match="LOGOUT_KEYRING_PASSPHRASE: must be a string of at least 16"):
        LogoutService.from_settings(_settings(f"sqlite:///{tmp_path}/k.sqlite3", LOGOUT_KEYRING_PASSPHRASE="short"))


def test_cli(database_uri: str) -> None:
    app = Flask(__name__)
    app.config.update(_settings(database_uri))
    LogoutManager(app)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["logout", "keys", "list"])
    assert listed.exit_code == 0
    assert listed.output.count("signs new tokens, published") == 1
    rotated = runner.invoke(args=["logout", "keys", "rotate"])
    assert rotated.exit_code == 0
    lines = rotated.output.splitlines()
    assert lines[0].startswith("new signing key ")
    new_kid = lines[0].removeprefix("new signing key ")
    assert any(new_kid in line and "signs new tokens" in line for line in lines[1:])
    assert any("retired, published until" in line for line in lines[1:])
    get_service(app).close()

    plain = Flask("plain")
    plain.config.update(
        LOGOUT_SECRET_KEY="s" * 48, LOGOUT_DATABASE_URI=database_uri, LOGOUT_CLIENT_SECRET_HASH=FAST_HASH
    )
    LogoutManager(plain)
    refused = plain.test_cli_runner().invoke(args=["logout", "keys", "rotate"])
    assert (refused.exit_code, refused.output) == (
        1,
        "Error: signing keys are not kept in the store: set LOGOUT_KEYRING = True\n",
    )
    get_service(plain).close()


def test_keyring_waits_for_its_table(database_uri: str) -> None:
    """With migrations owning the schema, the app and its CLI start before the table exists."""
    app = Flask("migrating")
    app.config.update(_settings(database_uri, LOGOUT_CREATE_TABLES=False))
    LogoutManager(app)  # no logout_keys table yet: must not fail
    service = get_service(app)
    from flask_logout import StoreUnavailable

    with pytest.raises(StoreUnavailable):
        service.issue_tokens("u")
    service.store.create_all()  # the migration runs
    token = service.issue_tokens("u").access_token
    assert service.verify(token)[0].sub == "u"
    service.close()
