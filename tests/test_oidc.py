"""OIDC Back-Channel Logout 1.0 and discovery, against a provider simulated here.

The provider is a small Flask app served over real HTTP with its own EC key:
it publishes a discovery document and a JWKS, and signs logout tokens.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, jsonify

from flask_logout import LogoutManager, SsoLogin, get_service
from flask_logout.oidc import BACKCHANNEL_EVENT

from .conftest import FAST_HASH, SECRET, LiveServer

CLIENT_ID = "our-app"


class Provider:
    """A simulated OpenID provider: discovery, JWKS, signed logout tokens."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = "provider-key-1"
        self.requests: list[str] = []
        self.extra_keys: list[dict[str, Any]] = []
        self.failing: set[str] = set()  # "discovery" / "jwks": answer 500
        #: While set, these endpoints wait (at most 10 s) for ``release`` before answering.
        self.slow: set[str] = set()
        self.release = threading.Event()
        app = Flask("provider")

        def _gate(name: str) -> Any:
            self.requests.append(name)
            if name in self.slow:
                self.release.wait(timeout=10)
            if name in self.failing:
                return jsonify({"error": "server_error"}), 500
            return None

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            failed = _gate("discovery")
            if failed is not None:
                return failed
            return jsonify(
                {
                    "issuer": self.issuer,
                    "jwks_uri": f"{self.issuer}/jwks",
                    "end_session_endpoint": f"{self.issuer}/logout",
                }
            )

        @app.get("/jwks")
        def jwks() -> Any:
            failed = _gate("jwks")
            if failed is not None:
                return failed
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return jsonify({"keys": [{**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}, *self.extra_keys]})

        self.server = LiveServer(app)
        self.issuer = self.server.url

    def logout_token(self, key: Any = None, algorithm: str = "ES256", kid: str | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": str(uuid.uuid4()),
            "events": {BACKCHANNEL_EVENT: {}},
            "sid": "provider-session-1",
            "sub": "provider-user-1",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"kid": kid or self.kid, "typ": "logout+jwt"}
        return jwt.encode(claims, key if key is not None else self.key, algorithm=algorithm, headers=headers)


@pytest.fixture
def provider() -> Iterator[Provider]:
    provider = Provider()
    yield provider
    provider.server.stop()


@pytest.fixture
def app(database_uri: str, provider: Provider) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        {
            "LOGOUT_SECRET_KEY": SECRET,
            "LOGOUT_DATABASE_URI": database_uri,
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
            "LOGOUT_DIALECTS": ["session"],
            "LOGOUT_POST_LOGOUT_REDIRECT_URI": "https://app.example/bye",
            # Only issuer and client id: the rest is read from the discovery document.
            "LOGOUT_OIDC_PROVIDERS": {"corp": {"issuer": provider.issuer, "client_id": CLIENT_ID}},
        }
    )
    LogoutManager(app)
    yield app
    get_service(app).close()


def _sessions(app: Flask, sid: str = "provider-session-1", sub: str = "provider-user-1", count: int = 1) -> list[Any]:
    service = get_service(app)
    return [
        service.issue_tokens(f"user-of-{sub}", sso=SsoLogin("corp", id_token="id.token.x", sid=sid, sub=sub))
        for _ in range(count)
    ]


def _alive(app: Flask, pair: Any) -> bool:
    try:
        get_service(app).verify(pair.refresh_token, expected_type="refresh")
    except Exception:
        return False
    return True


def _post(app: Flask, token: str | None, provider_name: str = "corp") -> Any:
    data = {"logout_token": token} if token is not None else {}
    return app.test_client().post(f"/oidc/backchannel-logout/{provider_name}", data=data)


def test_logout_token_by_sid_ends_that_session_only(app: Flask, provider: Provider) -> None:
    target = _sessions(app, sid="s-1")[0]
    same_user_other_session = _sessions(app, sid="s-2")[0]
    response = _post(app, provider.logout_token(sid="s-1"))
    assert (response.status_code, response.data) == (200, b"")
    assert response.headers["Cache-Control"] == "no-store"
    assert not _alive(app, target)
    assert _alive(app, same_user_other_session)


def test_logout_token_by_sub_ends_every_session_of_the_provider_user(app: Flask, provider: Provider) -> None:
    mine = _sessions(app, sid="a", sub="u-1") + _sessions(app, sid="b", sub="u-1")
    theirs = _sessions(app, sid="c", sub="u-2")
    assert _post(app, provider.logout_token(sid=None, sub="u-1")).status_code == 200
    assert [_alive(app, p) for p in mine + theirs] == [False, False, True]


def test_sso_sign_out_url_from_discovery_read_once(app: Flask, provider: Provider) -> None:
    client = app.test_client()
    urls = []
    for _ in range(2):
        pair = _sessions(app)[0]
        urls.append(client.delete("/session/token", json={"refresh_token": pair.refresh_token}).get_json()["data"])
    assert all(url.startswith(f"{provider.issuer}/logout?") for url in urls)
    assert "post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye" in urls[0]
    assert "id_token_hint=id.token.x" in urls[0]
    assert provider.requests.count("discovery") == 1


def _error(response: Any, description: str) -> None:
    assert (response.status_code, response.get_json()) == (
        400,
        {"error": "invalid_request", "error_description": description},
    )


def test_forged_logout_token_is_refused(app: Flask, provider: Provider) -> None:
    session = _sessions(app)[0]
    forger = ec.generate_private_key(ec.SECP256R1())
    _error(_post(app, provider.logout_token(key=forger)), "invalid logout token (InvalidSignatureError)")
    assert _alive(app, session)


def test_replayed_logout_token_is_refused(app: Flask, provider: Provider) -> None:
    token = provider.logout_token()
    assert _post(app, token).status_code == 200
    session = _sessions(app)[0]  # a new session with the same sid, after the logout
    _error(_post(app, token), "logout token replayed")
    assert _alive(app, session)


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"iat": int(time.time()) - 3600, "exp": int(time.time()) - 3000}, "logout token expired"),
        ({"iat": int(time.time()) - 3600, "exp": None}, "logout token expired"),
        ({"iat": int(time.time()) + 3600}, "iat is in the future"),
        ({"aud": "someone-else"}, "invalid logout token (InvalidAudienceError)"),
        ({"iss": "https://other.example"}, "invalid logout token (InvalidIssuerError)"),
        ({"events": None}, "invalid logout token (MissingRequiredClaimError)"),
        ({"events": {"http://schemas.openid.net/event/other": {}}}, "events claim lacks the back-channel logout event"),
        ({"events": {BACKCHANNEL_EVENT: "yes"}}, "events claim lacks the back-channel logout event"),
        ({"nonce": "n-1"}, "a logout token must not contain a nonce"),
        ({"sid": None, "sub": None}, "a logout token needs sid or sub"),
        ({"jti": None}, "invalid logout token (MissingRequiredClaimError)"),
    ],
)
def test_invalid_logout_tokens(app: Flask, provider: Provider, overrides: dict[str, Any], description: str) -> None:
    session = _sessions(app)[0]
    _error(_post(app, provider.logout_token(**overrides)), description)
    assert _alive(app, session)


def test_hmac_and_none_algorithms_are_refused(app: Flask, provider: Provider) -> None:
    hs = provider.logout_token(key="x" * 64, algorithm="HS256")
    _error(_post(app, hs), "algorithm 'HS256' is not accepted")
    unsigned = jwt.encode({"iss": provider.issuer}, None, algorithm="none")  # type: ignore[arg-type]
    _error(_post(app, unsigned), "algorithm 'none' is not accepted")


def test_unknown_key_id_refetches_keys_once_per_interval(app: Flask, provider: Provider) -> None:
    assert _post(app, provider.logout_token()).status_code == 200
    fetched = provider.requests.count("jwks")
    provider.key, provider.kid = ec.generate_private_key(ec.SECP256R1()), "provider-key-2"  # key rotation
    import flask_logout.oidc as oidc

    oidc_provider = get_service(app).providers.get("corp")
    assert oidc_provider is not None
    oidc_provider.jwks.next_fetch -= oidc.JWKS_REFETCH_INTERVAL  # the interval has passed
    assert _post(app, provider.logout_token()).status_code == 200
    assert provider.requests.count("jwks") == fetched + 1
    provider.kid = "provider-key-3"
    for _ in range(3):  # within the interval: no new fetch, however many bad kids arrive
        _error(_post(app, provider.logout_token()), "no provider key matches the token's kid")
    assert provider.requests.count("jwks") == fetched + 1


def test_request_errors(app: Flask, provider: Provider) -> None:
    _error(_post(app, None), "logout_token is required")
    _error(_post(app, "not-a-jwt"), "not a JWT")
    _error(_post(app, provider.logout_token(), provider_name="nobody"), "unknown provider")


def test_provider_down_answers_503(app: Flask, provider: Provider) -> None:
    token = provider.logout_token()
    provider.server.stop()
    response = _post(app, token)
    assert (response.status_code, response.get_json()) == (
        503,
        {"error": "temporarily_unavailable", "error_description": "provider keys unavailable"},
    )


def test_retry_after_a_store_failure_is_not_a_replay(app: Flask, provider: Provider) -> None:
    """The token id is recorded in the same transaction as the revocation: a
    failed attempt leaves nothing behind, and the provider's retry works."""
    import sqlalchemy as sa

    session = _sessions(app)[0]
    token = provider.logout_token()
    engine = get_service(app).store.engine

    def fail_update(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            raise sa.exc.OperationalError(statement, {}, Exception("server closed the connection"))

    sa.event.listen(engine, "before_cursor_execute", fail_update)
    try:
        failed = _post(app, token)
        assert (failed.status_code, failed.get_json()) == (
            503,
            {"error": "temporarily_unavailable", "error_description": "token store unavailable"},
        )
        assert _alive(app, session)
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_update)
    assert _post(app, token).status_code == 200
    assert not _alive(app, session)
    _error(_post(app, token), "logout token replayed")


# -- the receiver over real HTTP: never a 500, never a flood of fetches ------------------------


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app)
    yield server
    server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    """The provider cache's clock, moved by hand: back-off without waiting."""
    fake = FakeClock()
    oidc_provider = get_service(app).providers.get("corp")
    assert oidc_provider is not None
    oidc_provider.discovery.clock = fake
    oidc_provider.jwks.clock = fake
    return fake


def _send(server: LiveServer, token: str) -> tuple[int, Any]:
    response = httpx.post(f"{server.url}/oidc/backchannel-logout/corp", data={"logout_token": token}, timeout=15)
    return response.status_code, (response.json() if response.content else None)


def _rsa_jwk(kid: str, alg: str | None) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}
    if alg is not None:
        jwk["alg"] = alg
    return jwk


UNAVAILABLE = {"error": "temporarily_unavailable", "error_description": "provider keys unavailable"}


@pytest.mark.parametrize("declared_alg", [None, "RS256"])
def test_an_algorithm_for_another_key_type_is_400_not_500(
    live: LiveServer, provider: Provider, declared_alg: str | None
) -> None:
    """ES256 against an RSA kid (with or without ``alg`` in its JWK), and RS256 against an EC kid."""
    provider.extra_keys = [_rsa_jwk("rsa-key-1", declared_alg)]
    es256_on_rsa = provider.logout_token(kid="rsa-key-1")
    assert _send(live, es256_on_rsa) == (
        400,
        {"error": "invalid_request", "error_description": "algorithm 'ES256' does not match the provider key"},
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256_on_ec = provider.logout_token(key=rsa_key, algorithm="RS256")
    assert _send(live, rs256_on_ec) == (
        400,
        {"error": "invalid_request", "error_description": "algorithm 'RS256' does not match the provider key"},
    )


@pytest.mark.parametrize("failing", ["discovery", "jwks"])
def test_fifty_forged_tokens_while_the_provider_fails_fetch_once(
    live: LiveServer, provider: Provider, clock: FakeClock, failing: str
) -> None:
    provider.failing = {failing}
    answers = [_send(live, provider.logout_token(kid=f"forged-{i}")) for i in range(50)]
    assert answers == [(503, UNAVAILABLE)] * 50
    assert provider.requests.count(failing) == 1


def test_failed_fetches_back_off_exponentially(live: LiveServer, provider: Provider, clock: FakeClock) -> None:
    provider.failing = {"jwks"}
    fetches = []
    for moment in (0, 4.9, 5, 14.9, 15, 34.9, 35):
        clock.now = 1000.0 + moment
        assert _send(live, provider.logout_token()) == (503, UNAVAILABLE)
        fetches.append(provider.requests.count("jwks"))
    # Fetched at 0, then after 5 s, 10 s and 20 s: never in between.
    assert fetches == [1, 1, 2, 2, 3, 3, 4]
    provider.failing = set()
    session = _sessions(app=live.app)[0]
    assert _send(live, provider.logout_token()) == (503, UNAVAILABLE)  # still backing off: no request
    assert provider.requests.count("jwks") == 4
    clock.now += 40
    assert _send(live, provider.logout_token()) == (200, None)  # the provider is back
    assert provider.requests.count("jwks") == 5
    assert not _alive(live.app, session)


def test_fifty_tokens_with_unknown_kids_fetch_the_keys_once(
    live: LiveServer, provider: Provider, clock: FakeClock
) -> None:
    answers = [_send(live, provider.logout_token(kid=f"forged-{i}")) for i in range(50)]
    assert (
        answers
        == [(400, {"error": "invalid_request", "error_description": "no provider key matches the token's kid"})] * 50
    )
    assert (provider.requests.count("discovery"), provider.requests.count("jwks")) == (1, 1)
    clock.now += 60  # one refetch per interval, however many unknown kids arrive
    assert _send(live, provider.logout_token(kid="forged-again"))[0] == 400
    assert _send(live, provider.logout_token(kid="forged-again"))[0] == 400
    assert provider.requests.count("jwks") == 2


def _arrivals(app: Flask) -> list[str]:
    from flask import request

    seen: list[str] = []

    @app.before_request
    def arrived() -> None:
        seen.append(request.path)

    return seen


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_slow_key_fetch_is_made_once_and_blocks_no_one_else(app: Flask, provider: Provider, clock: FakeClock) -> None:
    """Single flight: a second token naming the new kid waits for the fetch
    under way instead of being refused or fetching again, and a token whose
    key is cached is answered at once."""
    arrivals = _arrivals(app)
    live = LiveServer(app)
    try:
        old_key = provider.key
        assert _send(live, provider.logout_token()) == (200, None)
        provider.key, provider.kid = ec.generate_private_key(ec.SECP256R1()), "provider-key-2"  # rotation
        clock.now += 61
        provider.slow = {"jwks"}
        answers: dict[str, Any] = {}

        def send(name: str) -> None:
            answers[name] = _send(live, provider.logout_token())

        first = threading.Thread(target=send, args=("first",))
        first.start()
        _wait_for(lambda: provider.requests.count("jwks") == 2, "the key fetch to start")
        second = threading.Thread(target=send, args=("second",))
        second.start()
        _wait_for(lambda: len(arrivals) == 3, "the second token to arrive")
        cached = provider.logout_token(key=old_key, kid="provider-key-1")
        assert _send(live, cached) == (200, None)  # not queued behind the fetch
        assert not provider.release.is_set() and first.is_alive()
        provider.release.set()
        first.join(timeout=15)
        second.join(timeout=15)
        assert answers == {"first": (200, None), "second": (200, None)}
        assert provider.requests.count("jwks") == 2
    finally:
        provider.release.set()
        live.stop()


def test_a_slow_discovery_does_not_hold_up_back_channel_logouts(database_uri: str, provider: Provider) -> None:
    """Keys from a configured jwks_uri are cached; a sign-out that needs the
    discovery document (for the end-session URL) waits on a slow provider,
    and back-channel logouts are answered meanwhile."""
    app = Flask(__name__)
    app.config.update(
        {
            "LOGOUT_SECRET_KEY": SECRET,
            "LOGOUT_DATABASE_URI": database_uri,
            "LOGOUT_CLIENT_SECRET_HASH": FAST_HASH,
            "LOGOUT_DIALECTS": ["session"],
            "LOGOUT_OIDC_PROVIDERS": {
                "corp": {"issuer": provider.issuer, "client_id": CLIENT_ID, "jwks_uri": f"{provider.issuer}/jwks"}
            },
        }
    )
    LogoutManager(app)
    live = LiveServer(app)
    try:
        assert _send(live, provider.logout_token(sid="warm-up")) == (200, None)  # keys cached, no discovery
        assert provider.requests == ["jwks"]
        signing_out = _sessions(app, sid="s-1")[0]
        provider.slow = {"discovery"}
        answer: dict[str, Any] = {}

        def sign_out() -> None:
            response = httpx.request(
                "DELETE", f"{live.url}/session/token", json={"refresh_token": signing_out.refresh_token}, timeout=15
            )
            answer["sign_out"] = (response.status_code, response.json()["data"])

        thread = threading.Thread(target=sign_out)
        thread.start()
        _wait_for(lambda: "discovery" in provider.requests, "the discovery fetch to start")
        other = _sessions(app, sid="s-2")[0]
        response = httpx.post(
            f"{live.url}/oidc/backchannel-logout/corp",
            data={"logout_token": provider.logout_token(sid="s-2")},
            timeout=5,
        )
        assert response.status_code == 200
        assert not provider.release.is_set() and thread.is_alive()
        assert not _alive(app, other)
        provider.release.set()
        thread.join(timeout=15)
        status, url = answer["sign_out"]
        assert status == 200 and url.startswith(f"{provider.issuer}/logout?")
    finally:
        provider.release.set()
        live.stop()
        get_service(app).close()
