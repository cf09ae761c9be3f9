"""Token encoding and verification (RFC 8725)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from flask_logout import InvalidToken, LogoutService

from .conftest import FAST_HASH, SECRET


def _service(tmp_path: Any, **settings: Any) -> LogoutService:
    base = {"LOGOUT_DATABASE_URI": f"sqlite:///{tmp_path}/t.sqlite3", "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH}
    base.update(settings)
    return LogoutService.from_settings(base)


def _pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_claims(tmp_path: Any) -> None:
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET, LOGOUT_ISSUER="https://issuer.test", LOGOUT_AUDIENCE="api")
    pair = service.issue_tokens("api-client", client_id="api-client")
    header = jwt.get_unverified_header(pair.access_token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(pair.access_token, SECRET, algorithms=["HS256"], audience="api")
    assert set(claims) == {"jti", "typ", "sub", "cid", "fid", "gen", "iat", "exp", "iss", "aud"}
    assert (claims["typ"], claims["sub"], claims["cid"], claims["gen"]) == ("access", "api-client", "api-client", 0)
    assert (claims["iss"], claims["aud"], claims["exp"] - claims["iat"]) == ("https://issuer.test", "api", 3600)
    refresh = jwt.decode(pair.refresh_token, SECRET, algorithms=["HS256"], audience="api")
    assert refresh["typ"] == "refresh"
    assert refresh["fid"] == claims["fid"]
    assert refresh["jti"] != claims["jti"]


def test_user_tokens_have_no_client(tmp_path: Any) -> None:
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    pair = service.issue_tokens("alice")
    assert "cid" not in pair.access.claims
    assert pair.access.principal == "user:alice"
    assert service.issue_tokens("alice", client_id="alice").access.principal == "client:alice"


def test_wrong_issuer_or_audience_is_invalid(tmp_path: Any) -> None:
    issuer_a = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET, LOGOUT_ISSUER="a", LOGOUT_AUDIENCE="x")
    issuer_b = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET, LOGOUT_ISSUER="b", LOGOUT_AUDIENCE="x")
    audience_y = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET, LOGOUT_ISSUER="a", LOGOUT_AUDIENCE="y")
    token = issuer_a.issue_tokens("s").access_token
    assert issuer_a.verify(token)[0].sub == "s"
    for other in (issuer_b, audience_y):
        with pytest.raises(InvalidToken):
            other.verify(token)


def test_alg_none_is_refused(tmp_path: Any) -> None:
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    real = service.issue_tokens("s", client_id="s").access
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(real.claims)}."
    with pytest.raises(InvalidToken):
        service.verify(unsigned)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the app's own 46-byte key
def test_other_hmac_algorithm_is_refused(tmp_path: Any) -> None:
    """Signed with the right secret, so only the fixed algorithm list (RFC 8725) refuses it."""
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    real = service.issue_tokens("s", client_id="s").access
    hs512 = jwt.encode(real.claims, SECRET, algorithm="HS512")
    assert jwt.decode(hs512, SECRET, algorithms=["HS512"])["jti"] == real.jti  # a genuine HS512 signature
    with pytest.raises(InvalidToken):
        service.verify(hs512)


def test_hmac_secret_is_checked_once_other_keys_every_time(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyjwt's is-it-an-asymmetric-key checks run for the configured secret
    once, at start-up, not on every token; any other key still gets them on
    every call; the module-level pyjwt is left as it was."""
    from jwt.algorithms import HMACAlgorithm

    from flask_logout.tokens import PreparedHMAC

    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    checked: list[bytes] = []
    original = HMACAlgorithm._is_der_key
    monkeypatch.setattr(HMACAlgorithm, "_is_der_key", staticmethod(lambda key: checked.append(key) or original(key)))
    pair = service.issue_tokens("s")
    assert service.verify(pair.access_token)[0].sub == "s"
    assert checked == []

    prepared = service.codec._hmac
    assert isinstance(prepared, PreparedHMAC)
    other = b"another secret, long enough for HS256 use"
    assert prepared.prepare_key(other) == other
    assert prepared.prepare_key(other) == other
    assert checked == [other, other]
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(jwt.InvalidKeyError):
        prepared.prepare_key(public_pem)
    assert type(jwt.get_algorithm_by_name("HS256")) is HMACAlgorithm


def test_rs256_public_key_used_as_hmac_secret_is_refused(tmp_path: Any) -> None:
    """The classic algorithm-confusion attack (RFC 8725 section 2.1)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    service = _service(tmp_path, LOGOUT_ALGORITHM="RS256", LOGOUT_PRIVATE_KEY=_pem(key))
    real = service.issue_tokens("s", client_id="s").access
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": service.config.key_id})
    payload = _b64(real.claims)
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken):
        service.verify(forged)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "PS256", "ES384"])
def test_asymmetric_round_trip_with_kid(tmp_path: Any, algorithm: str) -> None:
    if algorithm.startswith("ES"):
        curve = ec.SECP256R1() if algorithm == "ES256" else ec.SECP384R1()
        key: Any = ec.generate_private_key(curve)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    service = _service(tmp_path, LOGOUT_ALGORITHM=algorithm, LOGOUT_PRIVATE_KEY=_pem(key))
    pair = service.issue_tokens("user-1")
    header = jwt.get_unverified_header(pair.access_token)
    assert header["alg"] == algorithm
    assert header["kid"] == service.config.key_id and len(header["kid"]) == 43  # base64url SHA-256
    verified, _ = service.verify(pair.access_token)
    assert verified.sub == "user-1"
    public = key.public_key()
    assert jwt.decode(pair.access_token, public, algorithms=[algorithm])["sub"] == "user-1"


def test_token_with_another_kid_is_refused(tmp_path: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    service = _service(tmp_path, LOGOUT_ALGORITHM="ES256", LOGOUT_PRIVATE_KEY=_pem(key), LOGOUT_KEY_ID="key-1")
    real = service.issue_tokens("s").access
    other_kid = jwt.encode(real.claims, key, algorithm="ES256", headers={"kid": "key-2"})
    with pytest.raises(InvalidToken):
        service.verify(other_kid)
    same_kid = jwt.encode(real.claims, key, algorithm="ES256", headers={"kid": "key-1"})
    assert service.verify(same_kid)[0].jti == real.jti


@pytest.mark.parametrize(
    "change",
    [{"typ": "id"}, {"gen": "0"}, {"gen": True}, {"exp": "soon"}, {"sub": 5}, {"cid": 7}, {"jti": None}],
)
def test_malformed_claims_are_invalid(tmp_path: Any, change: dict[str, Any]) -> None:
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    claims = dict(service.issue_tokens("s", client_id="s").access.claims, **change)
    with pytest.raises(InvalidToken):
        service.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("missing", ["jti", "typ", "sub", "fid", "gen", "iat", "exp"])
def test_missing_claims_are_invalid(tmp_path: Any, missing: str) -> None:
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    claims = dict(service.issue_tokens("s", client_id="s").access.claims)
    del claims[missing]
    with pytest.raises(InvalidToken):
        service.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_claims_must_match_the_issued_record(tmp_path: Any) -> None:
    """Even with the signing key, a live jti cannot carry other claims."""
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    service.register_client("victim", "victim-secret")  # a client token needs its client
    mine = service.issue_tokens("victim", client_id="victim").access
    for change in ({"sub": "attacker", "cid": "attacker"}, {"fid": "other-family"}, {"gen": 7}, {"typ": "refresh"}):
        forged = jwt.encode(dict(mine.claims, **change), SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken):
            service.verify(forged, expected_type=change.get("typ", "access"))
    assert service.verify(jwt.encode(dict(mine.claims), SECRET, algorithm="HS256"))[0].sub == "victim"


def test_jwks_publishes_nothing_under_hmac(tmp_path: Any) -> None:
    service = _service(tmp_path, LOGOUT_SECRET_KEY=SECRET)
    assert service.jwks() == {"keys": []}
