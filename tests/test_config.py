"""Settings are validated once, at start-up, with errors naming the setting and value."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from flask_logout import ConfigError, LogoutManager, LogoutService, load_config

from .conftest import FAST_HASH, SECRET


def _pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _start(tmp_path: Any, **settings: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        {"LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/s.sqlite3", "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH}
    )
    app.config.update(settings)
    LogoutManager(app)
    return app


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "LOGOUT_SECRET_KEY: missing: set LOGOUT_SECRET_KEY or SECRET_KEY for HS256"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY: 5 bytes is too short for HS256"),
        ({"LOGOUT_SECRET_KEY": "x" * 31}, "LOGOUT_SECRET_KEY: 31 bytes is too short for HS256"),
        ({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ALGORITHM": "none"}, "LOGOUT_ALGORITHM: unsupported algorithm 'none'"),
        ({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ALGORITHM": "HS257"}, "LOGOUT_ALGORITHM: unsupported algorithm 'HS257'"),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ACCESS_TOKEN_TTL": -5},
            "LOGOUT_ACCESS_TOKEN_TTL: must be a positive whole number of seconds, not -5",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_REFRESH_TOKEN_TTL": 0},
            "LOGOUT_REFRESH_TOKEN_TTL: must be a positive whole number of seconds, not 0",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ACCESS_TOKEN_TTL": "an hour"},
            "LOGOUT_ACCESS_TOKEN_TTL: must be a number of seconds or a timedelta, not 'an hour'",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ACCESS_TOKEN_TTL": timedelta(seconds=-1)},
            "LOGOUT_ACCESS_TOKEN_TTL: must be a positive whole number of seconds",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_LEEWAY": -1},
            "LOGOUT_LEEWAY: must be a non-negative whole number of seconds, not -1",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_TRUSTED_PROXY_CIDRS": ["10.0.0.0/33"]},
            "LOGOUT_TRUSTED_PROXY_CIDRS: malformed CIDR '10.0.0.0/33'",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_TRUSTED_PROXY_CIDRS": "10.0.0.1/8"},
            "LOGOUT_TRUSTED_PROXY_CIDRS: malformed CIDR '10.0.0.1/8'",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_TRUSTED_PROXIES": -1},
            "LOGOUT_TRUSTED_PROXIES: must be a non-negative integer, not -1",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_PROTECTED_PATHS": ["api"]},
            "LOGOUT_PROTECTED_PATHS: path 'api' must start with '/'",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_PROTECTED_PATHS": 5},
            "LOGOUT_PROTECTED_PATHS: must be a list of strings, not 5",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_DIALECTS": ["client", "soap"]},
            "LOGOUT_DIALECTS: unknown dialect 'soap'",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ALGORITHM": "RS256"},
            "LOGOUT_PRIVATE_KEY: missing: RS256 needs a PEM private key",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ALGORITHM": "RS256", "LOGOUT_PRIVATE_KEY": "not a key"},
            "LOGOUT_PRIVATE_KEY: not a readable unencrypted PEM private key",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_CLIENT_SECRET_HASH": "md5-please"},
            "LOGOUT_CLIENT_SECRET_HASH: unknown hash method 'md5-please'",
        ),
        (
            {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_TOKEN_CACHE_SIZE": "lots"},
            "LOGOUT_TOKEN_CACHE_SIZE: must be a non-negative integer, not 'lots'",
        ),
        ({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_ISSUER": 42}, "LOGOUT_ISSUER: must be a string, not 42"),
    ],
)
def test_bad_settings_fail_at_start_up(tmp_path: Any, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _start(tmp_path, **settings)
    assert str(info.value).startswith(message)
    assert info.value.setting in message


def test_secret_values_are_never_echoed(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as info:
        _start(tmp_path, LOGOUT_SECRET_KEY="hunter2-very-secret")
    assert "hunter2" not in str(info.value)


def test_wrong_key_type_for_algorithm(tmp_path: Any) -> None:
    ec_key = _pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="LOGOUT_PRIVATE_KEY: RS256 needs an RSA key pair"):
        _start(tmp_path, LOGOUT_ALGORITHM="RS256", LOGOUT_PRIVATE_KEY=ec_key)
    with pytest.raises(ConfigError, match="LOGOUT_PRIVATE_KEY: ES384 needs an EC key pair on curve secp384r1"):
        _start(tmp_path, LOGOUT_ALGORITHM="ES384", LOGOUT_PRIVATE_KEY=ec_key)
    short_rsa = _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 (testing the refusal)
    with pytest.raises(ConfigError, match="RSA key of 1024 bits is too short"):
        _start(tmp_path, LOGOUT_ALGORITHM="RS256", LOGOUT_PRIVATE_KEY=short_rsa)


@pytest.mark.parametrize("name", ["LOGOUT_SECRET_KEY", "SECRET_KEY"])
def test_public_key_as_hmac_secret_fails_at_start_up(tmp_path: Any, name: str) -> None:
    # RFC 8725 section 2.1: an HMAC secret anyone can read (a public key) lets anyone sign.
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError) as info:
        _start(tmp_path, **{name: pem.decode()})
    assert str(info.value) == (
        f"{name}: is an asymmetric key or certificate, not an HMAC secret; use random bytes, or an RS/ES/PS algorithm"
    )
    assert info.value.setting == name


def test_mismatched_public_key(tmp_path: Any) -> None:
    one, two = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    public = two.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="LOGOUT_PUBLIC_KEY: does not match LOGOUT_PRIVATE_KEY"):
        _start(tmp_path, LOGOUT_ALGORITHM="ES256", LOGOUT_PRIVATE_KEY=_pem(one), LOGOUT_PUBLIC_KEY=public)


def test_defaults() -> None:
    config = load_config({"SECRET_KEY": SECRET})
    assert config.algorithm == "HS256"
    assert config.signing_key == SECRET.encode()
    assert (config.access_ttl, config.refresh_ttl, config.leeway) == (3600, 30 * 24 * 3600, 0)
    assert config.key_id is None
    assert config.exempt_methods == frozenset({"OPTIONS"})
    assert config.dialects == ("client",)
    assert (config.trusted_proxies, config.trusted_proxy_cidrs) == (0, None)


def test_logout_secret_key_wins_over_secret_key() -> None:
    config = load_config({"SECRET_KEY": "a" * 40, "LOGOUT_SECRET_KEY": "b" * 40})
    assert config.signing_key == b"b" * 40


def test_settings_from_the_environment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``app.config.from_prefixed_env()`` gives strings or JSON values; both are understood."""
    monkeypatch.setenv("FLASK_LOGOUT_SECRET_KEY", SECRET)
    monkeypatch.setenv("FLASK_LOGOUT_ACCESS_TOKEN_TTL", "60")
    monkeypatch.setenv("FLASK_LOGOUT_PROTECTED_PATHS", '["/api", "/admin"]')
    monkeypatch.setenv("FLASK_LOGOUT_TRUSTED_PROXY_CIDRS", "10.0.0.0/8, fd00::/8")
    monkeypatch.setenv("FLASK_LOGOUT_TRUSTED_PROXIES", "1")
    app = Flask(__name__)
    app.config.from_prefixed_env()
    config = load_config(app.config)
    assert config.access_ttl == 60
    assert config.protected_paths == ("/api", "/admin")
    assert config.trusted_proxy_cidrs is not None and config.trusted_proxy_cidrs.networks == ("10.0.0.0/8", "fd00::/8")
    assert config.trusted_proxies == 1


def test_timedelta_ttls() -> None:
    config = load_config({"SECRET_KEY": SECRET, "LOGOUT_ACCESS_TOKEN_TTL": timedelta(minutes=5)})
    assert config.access_ttl == 300


def test_unknown_setting_warns_with_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_logout"):
        load_config({"SECRET_KEY": SECRET, "LOGOUT_ACCESS_TOKEN_TLL": 5, "LOGOUT_REDIRECT_TO": "/bye"})
    assert "Unknown setting LOGOUT_ACCESS_TOKEN_TLL ignored; did you mean LOGOUT_ACCESS_TOKEN_TTL?" in caplog.text
    assert "LOGOUT_REDIRECT_TO" not in caplog.text  # an app's own setting, not a typo of ours


def test_config_is_frozen() -> None:
    config = load_config({"SECRET_KEY": SECRET})
    with pytest.raises(AttributeError):
        config.access_ttl = 5  # type: ignore[misc]


def test_malformed_client_whitelist_is_refused(tmp_path: Any) -> None:
    service = LogoutService.from_settings(
        {
            "SECRET_KEY": SECRET,
            "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/s.sqlite3",
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
        }
    )
    with pytest.raises(ValueError, match=r"malformed CIDR '300\.1\.1\.0/24'"):
        service.register_client("c", "s", ["10.0.0.0/8", "300.1.1.0/24"])
    assert service.store.get_client("c") is None


def test_extension_registers_itself(tmp_path: Any) -> None:
    app = _start(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    state = app.extensions["flask_logout"]
    assert state.service.config.algorithm == "HS256"
    assert "flask_logout_client_api" in app.blueprints


def test_init_app_for_factories(tmp_path: Any) -> None:
    manager = LogoutManager()
    apps = []
    for index in range(2):
        app = Flask(f"app{index}")
        app.config.update(
            {
                "LOGOUT_SECRET_KEY": SECRET * (index + 1),
                "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
                "LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/{index}.sqlite3",
            }
        )
        manager.init_app(app)
        apps.append(app)
    for app in apps:
        with app.app_context():
            assert manager.service is app.extensions["flask_logout"].service
    assert apps[0].extensions["flask_logout"].service is not apps[1].extensions["flask_logout"].service


def test_client_secret_hash_settings(tmp_path: Any, rsa_pem: str) -> None:
    """hmac-sha256 (the default) needs a key; werkzeug methods need none; both are checked at start-up."""
    rs256 = {"LOGOUT_ALGORITHM": "RS256", "LOGOUT_PRIVATE_KEY": rsa_pem, "LOGOUT_CLIENT_SECRET_HASH": "hmac-sha256"}
    with pytest.raises(ConfigError) as info:
        _start(tmp_path, **rs256)
    assert str(info.value) == (
        "LOGOUT_CLIENT_SECRET_HASH: hmac-sha256 needs a key: set LOGOUT_CLIENT_SECRET_KEY (or LOGOUT_SECRET_KEY "
        "or SECRET_KEY), or choose a werkzeug method such as 'scrypt'"
    )
    with pytest.raises(ConfigError) as info:
        _start(tmp_path, **rs256, LOGOUT_CLIENT_SECRET_KEY="short-secret")
    assert str(info.value) == (
        "LOGOUT_CLIENT_SECRET_KEY: 12 characters is too short to key client-secret hashes; use 16 or more"
    )
    with pytest.raises(ConfigError, match="LOGOUT_CLIENT_SECRET_KEY: must be str or bytes, not int"):
        _start(tmp_path, **rs256, LOGOUT_CLIENT_SECRET_KEY=12345678901234567)
    keyed = load_config({**rs256, "SECRET_KEY": "k" * 32})
    assert keyed.client_secret_key is not None and keyed.client_secret_key != b"k" * 32  # derived, not the key
    assert load_config({**rs256, "LOGOUT_CLIENT_SECRET_HASH": "scrypt"}).secret_hash_method == "scrypt"
    default = load_config({"LOGOUT_SECRET_KEY": SECRET})
    assert default.secret_hash_method == "hmac-sha256"
    # A dedicated key survives a change of the signing key: same stored hash.
    one = load_config({"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_CLIENT_SECRET_KEY": "c" * 32})
    two = load_config({"LOGOUT_SECRET_KEY": SECRET[::-1], "LOGOUT_CLIENT_SECRET_KEY": "c" * 32})
    assert one.client_secret_key == two.client_secret_key
    assert (
        load_config({"LOGOUT_SECRET_KEY": SECRET}).client_secret_key
        != load_config({"LOGOUT_SECRET_KEY": SECRET[::-1]}).client_secret_key
    )


@pytest.mark.parametrize(
    ("settings", "setting", "message"),
    [
        ({"LOGOUT_REDIS_URL": "http://user:hunter2@cache:6379/0"}, "LOGOUT_REDIS_URL", "must be a redis://"),
        ({"LOGOUT_REDIS_URL": 6379}, "LOGOUT_REDIS_URL", "must be a redis://"),
        ({"LOGOUT_PUSH_CHANNEL": ""}, "LOGOUT_PUSH_CHANNEL", "must be 1 to 100 letters"),
        ({"LOGOUT_PUSH_CHANNEL": "a b"}, "LOGOUT_PUSH_CHANNEL", "must be 1 to 100 letters"),
    ],
)
def test_push_channel_settings_are_checked_at_start_up(settings: dict[str, Any], setting: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"LOGOUT_SECRET_KEY": SECRET, **settings})
    assert raised.value.setting == setting
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_redis_push_settings() -> None:
    config = load_config(
        {"LOGOUT_SECRET_KEY": SECRET, "LOGOUT_REDIS_URL": "redis://:hunter2@cache:6379/0", "LOGOUT_PUSH_CHANNEL": "a.b"}
    )
    assert (config.redis_url, config.push_channel) == ("redis://:hunter2@cache:6379/0", "a.b")
    assert "hunter2" not in repr(config)
    default = load_config({"LOGOUT_SECRET_KEY": SECRET})
    assert (default.redis_url, default.push_channel) == (None, "flask_logout")
