"""Token attacks (RFC 8725), each refused with the documented answer, over real HTTP where it matters.

The example app signs with RS256; ``/api/me`` is behind the bearer middleware,
so every refusal here is the client-API body ``{"error": {..., "message": "Invalid token"}}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify

from flask_logout import get_service

from .conftest import EXPIRED, INVALID, LiveServer


def _b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _me(server: LiveServer, token: str) -> tuple[int, Any]:
    response = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


def _real(server: LiveServer) -> Any:
    """A live session token of the example app, decoded."""
    return get_service(server.app).issue_tokens("U-alice").access


def _sign(server: LiveServer, claims: dict[str, Any], headers: dict[str, Any]) -> str:
    """Sign with the app's own private key (what an attacker does not have)."""
    key = server.app.config["LOGOUT_PRIVATE_KEY"]
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def test_alg_none(live_example: LiveServer) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_real(live_example).claims)}."
    assert _me(live_example, token) == (401, INVALID)


def test_hs256_signed_with_the_rs256_public_key(live_example: LiveServer) -> None:
    """Algorithm confusion: the public key, which anyone can fetch, used as an HMAC secret."""
    service = get_service(live_example.app)
    public_jwk = httpx.get(f"{live_example.url}/v2/keys/P2flasklogoutdemo").json()["keys"][0]
    public_pem = jwt.PyJWK(public_jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": service.config.key_id})
    payload = _b64(_real(live_example).claims)
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert _me(live_example, f"{header}.{payload}.{_b64(signature)}") == (401, INVALID)


@pytest.mark.parametrize(
    "kid",
    ["no-such-key", "../../../../dev/null", "' OR '1'='1' --", "x" * 2000, "", "kid\u0000nul"],
)
def test_kid_that_does_not_exist_or_tries_tricks(live_example: LiveServer, kid: str) -> None:
    token = _sign(live_example, _real(live_example).claims, {"kid": kid})
    assert _me(live_example, token) == (401, INVALID)


def test_jku_and_x5u_headers_are_ignored(live_example: LiveServer) -> None:
    """A key URL in the header is never fetched: the attacker's key is not trusted."""
    fetched: list[str] = []
    attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker = Flask("attacker")

    @attacker.get("/jwks")
    def jwks() -> Any:
        fetched.append("jwks")
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(attacker_key.public_key(), as_dict=True)
        return jsonify({"keys": [{**jwk, "kid": "evil", "alg": "RS256"}]})

    evil = LiveServer(attacker)
    try:
        claims = _real(live_example).claims
        for header in ({"kid": "evil", "jku": f"{evil.url}/jwks"}, {"kid": "evil", "x5u": f"{evil.url}/cert"}):
            forged = jwt.encode(claims, attacker_key, algorithm="RS256", headers=header)
            assert _me(live_example, forged) == (401, INVALID)
        assert fetched == []
        # The same header on a genuine token changes nothing either.
        kid = get_service(live_example.app).config.key_id
        genuine = _sign(live_example, claims, {"kid": kid, "jku": f"{evil.url}/jwks", "x5u": f"{evil.url}/c"})
        assert _me(live_example, genuine)[0] == 200
        assert fetched == []
    finally:
        evil.stop()


def test_token_from_another_key(live_example: LiveServer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = get_service(live_example.app).config.key_id
    forged = jwt.encode(_real(live_example).claims, other, algorithm="RS256", headers={"kid": kid})
    assert _me(live_example, forged) == (401, INVALID)


@pytest.mark.parametrize("change", [{"iss": "https://other-issuer.example"}, {"aud": "another-api"}])
def test_token_for_another_issuer_or_audience(live_example: LiveServer, change: dict[str, str]) -> None:
    """The example app sets LOGOUT_ISSUER (its project id); a token naming anyone else is refused."""
    kid = get_service(live_example.app).config.key_id
    token = _sign(live_example, {**_real(live_example).claims, "iss": "P2flasklogoutdemo", **change}, {"kid": kid})
    assert _me(live_example, token) == (401, INVALID)


def test_nbf_in_the_future(live_example: LiveServer) -> None:
    kid = get_service(live_example.app).config.key_id
    claims = {**_real(live_example).claims, "iss": "P2flasklogoutdemo", "nbf": int(time.time()) + 3600}
    assert _me(live_example, _sign(live_example, claims, {"kid": kid})) == (401, INVALID)


def test_refresh_token_as_access_and_access_token_as_refresh(live_example: LiveServer) -> None:
    pair = get_service(live_example.app).issue_tokens("U-alice")
    assert _me(live_example, pair.refresh_token) == (401, INVALID)
    as_refresh = httpx.post(f"{live_example.url}/session/token/refresh", json={"refresh_token": pair.access_token})
    body = as_refresh.json()
    assert (as_refresh.status_code, body["code"], body["msg"]) == (200, 40020, "Failed to issue token pair")
    client_refresh = httpx.post(f"{live_example.url}/auth/refresh", json={"refresh_token": pair.access_token})
    assert (client_refresh.status_code, client_refresh.json()) == (401, INVALID)


def test_expired_token_is_expired(live_example: LiveServer) -> None:
    from flask_logout.testing import TokenFactory

    assert _me(live_example, TokenFactory(live_example.app).expired("U-alice")) == (401, EXPIRED)


def test_authorization_header_over_8_kb(live_example: LiveServer) -> None:
    assert _me(live_example, "A" * 9000) == (401, INVALID)
    real = get_service(live_example.app).issue_tokens("U-alice").access_token
    assert _me(live_example, real + "." + "B" * 9000) == (401, INVALID)


def _raw_get(server: LiveServer, headers: list[tuple[str, str]]) -> tuple[int, Any]:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    connection.putrequest("GET", "/api/me")
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


def test_duplicate_authorization_headers_are_refused(live_example: LiveServer) -> None:
    """Two Authorization headers are ambiguous, even when both carry the same valid token."""
    token = get_service(live_example.app).issue_tokens("U-alice").access_token
    assert _raw_get(live_example, [("Authorization", f"Bearer {token}")])[0] == 200
    twice = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    assert _raw_get(live_example, twice) == (401, INVALID)
