"""What Descope's SDKs need beyond sign-out: CORS, the bearer forms, me and
friends, Descope-shaped tokens, JSON 404s, the sign-in rate limit."""

from __future__ import annotations

import os
from typing import Any

import jwt
import pytest

from example_app import PROJECT_ID, create_app
from flask_logout import ConfigError, get_service
from flask_logout.dialects.descope import EMPTY_USER

from .conftest import example_settings

SPA = "http://localhost:5173"
SDK_HEADERS = "authorization,content-type,x-descope-project-id,x-descope-sdk-name,x-descope-sdk-session-id"


@pytest.fixture
def app(database_uri: str, rsa_pem: str) -> Any:
    app = create_app(example_settings(database_uri, rsa_pem, LOGOUT_CORS_ORIGINS=[SPA]))
    yield app
    get_service(app).close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def sign_in(client: Any, **headers: str) -> dict[str, Any]:
    response = client.post(
        "/v1/auth/password/signin",
        json={"loginId": "alice@example.com", "password": "wonderland"},
        headers={"Authorization": f"Bearer {PROJECT_ID}", **headers},
    )
    assert response.status_code == 200, response.get_json()
    client.delete_cookie("DS")
    client.delete_cookie("DSR")
    return response.get_json()  # type: ignore[no-any-return]


def auth(token: str, *extra: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + ":".join((PROJECT_ID, token, *extra))}


def _cors(response: Any) -> dict[str, str | None]:
    names = (
        "Access-Control-Allow-Origin",
        "Access-Control-Allow-Credentials",
        "Access-Control-Allow-Methods",
        "Access-Control-Allow-Headers",
        "Access-Control-Expose-Headers",
        "Access-Control-Max-Age",
        "Vary",
    )
    return {name: response.headers.get(name) for name in names}


# -- CORS --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/auth/password/signin", "/v1/auth/refresh", "/v1/auth/me", "/api/me"])
def test_preflight_allows_the_configured_origin_with_credentials(client: Any, path: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": SDK_HEADERS + ",x-unknown",
        },
    )
    assert response.status_code == 200
    assert _cors(response) == {
        "Access-Control-Allow-Origin": SPA,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "DELETE, GET, OPTIONS, POST",
        "Access-Control-Allow-Headers": SDK_HEADERS.replace(",", ", "),  # x-unknown is not granted
        "Access-Control-Expose-Headers": "Retry-After",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def test_real_answers_and_middleware_refusals_carry_cors_headers(client: Any) -> None:
    tokens = sign_in(client, Origin=SPA)
    expected = {
        "Access-Control-Allow-Origin": SPA,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": None,
        "Access-Control-Allow-Headers": None,
        "Access-Control-Expose-Headers": "Retry-After",
        "Access-Control-Max-Age": None,
        "Vary": "Origin",
    }
    ok = client.get("/api/me", headers={"Origin": SPA, "Authorization": f"Bearer {tokens['sessionJwt']}"})
    assert (ok.status_code, _cors(ok)) == (200, expected)
    error = client.post("/v1/auth/refresh", headers={"Origin": SPA, **auth("not.a.jwt")})
    assert (error.status_code, error.get_json()["errorCode"], _cors(error)) == (401, "E901004", expected)
    # The BearerMiddleware answers outside Flask: it adds the headers itself.
    refused = client.get("/api/me", headers={"Origin": SPA})
    assert (refused.status_code, _cors(refused)) == (401, expected)
    assert refused.get_json() == {
        "error": {"name": "UnauthorizedError", "code": "UNAUTHORIZED", "message": "Authorization header required"}
    }


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:5173.evil.example", "http://localhost"])
def test_other_origins_get_no_cors_grant(client: Any, origin: str) -> None:
    preflight = client.options("/v1/auth/refresh", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    refused = client.get("/api/me", headers={"Origin": origin})
    for response in (preflight, refused):
        assert response.headers.get("Access-Control-Allow-Origin") is None
        assert response.headers.get("Access-Control-Allow-Credentials") is None
    assert refused.headers["Vary"] == "Origin"


def test_no_cors_by_default(database_uri: str, rsa_pem: str) -> None:
    app = create_app(example_settings(database_uri, rsa_pem))
    client = app.test_client()
    for response in (
        client.options("/v1/auth/refresh", headers={"Origin": SPA, "Access-Control-Request-Method": "POST"}),
        client.get("/api/me", headers={"Origin": SPA}),
    ):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Vary" not in response.headers
    get_service(app).close()


def test_a_cors_origin_may_sign_in(client: Any) -> None:
    """A CORS origin is trusted like LOGOUT_TRUSTED_ORIGINS: its page's sign-in is no login CSRF."""
    assert sign_in(client, Origin=SPA)["user"]["userId"] == "U-alice"
    other = client.post(
        "/v1/auth/password/signin",
        json={"loginId": "alice@example.com", "password": "wonderland"},
        headers={"Origin": "http://evil.example"},
    )
    assert (other.status_code, other.get_json()["errorCode"]) == (403, "E901007")


# -- bearer forms ------------------------------------------------------------------


def test_bearer_with_an_auth_management_key(client: Any) -> None:
    tokens = sign_in(client)
    me = client.get("/v1/auth/me", headers=auth(tokens["refreshJwt"], "K-anything"))
    assert (me.status_code, me.get_json()["userId"]) == (200, "U-alice")
    four = client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"], "K", "extra"))
    assert (four.status_code, four.get_json()) == (
        401,
        {
            "errorCode": "E901002",
            "errorDescription": "Malformed authorization",
            "errorMessage": "Expected Authorization: Bearer <ProjectID>:<RefreshJWT>",
        },
    )
    assert client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"], "K")).status_code == 200
    again = client.post("/v1/auth/refresh", headers=auth(tokens["refreshJwt"]))
    assert (again.status_code, again.get_json()["errorCode"]) == (401, "E064001")


# -- me, tenants, history, try-refresh ------------------------------------------------


def test_me_tenants_and_history(client: Any) -> None:
    first = sign_in(client)
    sign_in(client)
    me = client.get("/v1/auth/me", headers=auth(first["refreshJwt"]))
    assert me.status_code == 200
    assert me.get_json() == {
        **EMPTY_USER,
        "userId": "U-alice",
        "name": "Alice",
        "email": "alice@example.com",
        "verifiedEmail": True,
    }
    assert me.headers["Cache-Control"] == "no-store"
    for method in ("get", "post"):
        tenants = getattr(client, method)("/v1/auth/me/tenants", headers=auth(first["refreshJwt"]), json={"dct": True})
        assert (tenants.status_code, tenants.get_json()) == (200, {"tenants": []})
    history = client.get("/v1/auth/me/history", headers=auth(first["refreshJwt"]))
    assert history.status_code == 200
    entries = history.get_json()
    assert [sorted(e) for e in entries] == [["city", "country", "ip", "loginTime", "userId"]] * 2
    assert [(e["userId"], e["city"], e["country"], e["ip"]) for e in entries] == [("U-alice", "", "", "")] * 2
    assert entries[0]["loginTime"] <= entries[1]["loginTime"]
    assert isinstance(entries[0]["loginTime"], int)

    client.post("/v1/auth/logout", headers=auth(first["refreshJwt"]))
    for path in ("/v1/auth/me", "/v1/auth/me/history", "/v1/auth/me/tenants"):
        gone = client.get(path, headers=auth(first["refreshJwt"]))
        assert (gone.status_code, gone.get_json()) == (
            401,
            {
                "errorCode": "E064001",
                "errorDescription": "Token expired by logout",
                "errorMessage": "The session was signed out; sign in again",
            },
        )
    missing = client.get("/v1/auth/me")
    assert (missing.status_code, missing.get_json()["errorCode"]) == (401, "E901001")


def test_me_by_cookie_on_a_same_origin_get(client: Any) -> None:
    client.post(
        "/v1/auth/password/signin", json={"loginId": "alice@example.com", "password": "wonderland"}
    )  # sets the cookies
    assert client.get("/v1/auth/me").get_json()["userId"] == "U-alice"  # a same-origin GET has no Origin
    foreign = client.get("/v1/auth/me", headers={"Origin": "http://evil.example"})
    assert (foreign.status_code, foreign.get_json()["errorCode"]) == (403, "E901007")


def test_try_refresh(client: Any) -> None:
    nothing = client.post("/v1/auth/try-refresh")
    assert (nothing.status_code, nothing.get_json()) == (200, {})
    bad = client.post("/v1/auth/try-refresh", headers=auth("not.a.jwt"))
    assert (bad.status_code, bad.get_json()) == (200, {})
    tokens = sign_in(client)
    live = client.post("/v1/auth/try-refresh", headers=auth(tokens["refreshJwt"]))
    assert live.status_code == 200
    assert (live.get_json()["refreshJwt"], live.get_json()["user"]["userId"]) == (tokens["refreshJwt"], "U-alice")
    other_project = client.post(
        "/v1/auth/try-refresh", headers={"Authorization": f"Bearer P2other:{tokens['refreshJwt']}"}
    )
    assert (other_project.status_code, other_project.get_json()["errorCode"]) == (401, "E901003")
    client.post("/v1/auth/logout", headers=auth(tokens["refreshJwt"]))
    ended = client.post("/v1/auth/try-refresh", headers=auth(tokens["refreshJwt"]))
    assert (ended.status_code, ended.get_json()) == (200, {})


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/v1/auth/unknown"), ("post", "/v1/flow/start"), ("delete", "/v2/keys/x/y")],
)
def test_unknown_api_paths_answer_descopes_json_404(client: Any, method: str, path: str) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == {
        "errorCode": "E904004",
        "errorDescription": "Not found",
        "errorMessage": f"No {method.upper()} endpoint at {path}",
    }


# -- tokens ----------------------------------------------------------------------


def test_tokens_are_shaped_like_descopes(client: Any) -> None:
    tokens = sign_in(client)
    session = jwt.decode(tokens["sessionJwt"], options={"verify_signature": False})
    refresh = jwt.decode(tokens["refreshJwt"], options={"verify_signature": False})
    assert (session["drn"], session["iss"], session["sub"]) == ("DS", PROJECT_ID, "U-alice")
    assert (refresh["drn"], refresh["iss"], refresh["sub"]) == ("DSR", PROJECT_ID, "U-alice")


def test_issuer_defaults_to_the_project_id(database_uri: str, rsa_pem: str) -> None:
    from flask import Flask

    from flask_logout import LogoutManager

    def config(**settings: Any) -> Any:
        app = Flask(__name__)
        app.config.update(
            example_settings(
                database_uri,
                rsa_pem,
                LOGOUT_ALGORITHM="RS256",
                LOGOUT_DIALECTS=["descope"],
                LOGOUT_DESCOPE_PROJECT_ID="P2x",
                LOGOUT_SESSION_COOKIE_NAME="my_session",
                **settings,
            )
        )
        LogoutManager(app)
        service = get_service(app)
        pair = service.issue_tokens("U-1")
        service.close()
        return service.config.issuer, pair.access.claims["iss"], pair.access.claims["drn"]

    assert config() == ("P2x", "P2x", "my_session")
    assert config(LOGOUT_ISSUER="https://auth.example.com/P2x") == (
        "https://auth.example.com/P2x",
        "https://auth.example.com/P2x",
        "my_session",
    )


# -- sign-in rate limit ---------------------------------------------------------------

RATE_LIMITED = {
    "errorCode": "E130429",
    "errorDescription": "Rate limit exceeded",
}


def _limited_app(database_uri: str, rsa_pem: str, storage: str) -> Any:
    return create_app(
        example_settings(
            database_uri,
            rsa_pem,
            LOGOUT_SIGNIN_RATE_LIMIT="3/minute",
            LOGOUT_RATE_LIMIT_STORAGE_URI=storage,
            LOGOUT_CORS_ORIGINS=[SPA],
        )
    )


def _attempt(client: Any, ip: str, password: str = "wrong") -> Any:
    return client.post(
        "/v1/auth/password/signin",
        json={"loginId": "alice@example.com", "password": password},
        environ_base={"REMOTE_ADDR": ip},
        headers={"Origin": SPA},
    )


def _redis_storage() -> str:
    url = os.environ.get("FLASK_LOGOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        reason = f"Redis not reachable at {url} ({exc.__class__.__name__}); set FLASK_LOGOUT_TEST_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and " + reason)
        pytest.skip(reason)
    return url


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_sign_in_is_rate_limited_per_ip(database_uri: str, rsa_pem: str, storage: str) -> None:
    import uuid

    uri = "memory://" if storage == "memory" else _redis_storage()
    app = _limited_app(database_uri, rsa_pem, uri)
    client = app.test_client()
    ip = (
        f"198.51.100.{uuid.uuid4().int % 250 + 1}"
        if storage == "memory"
        else f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    )
    if storage == "redis":  # a second process (another app on the same storage) shares the counter
        other = _limited_app(database_uri, rsa_pem, uri).test_client()
        assert _attempt(other, ip).status_code == 401
        assert _attempt(client, ip).status_code == 401
    else:
        assert _attempt(client, ip).status_code == 401
        assert _attempt(client, ip).status_code == 401
    assert _attempt(client, ip, password="wonderland").status_code == 200  # the third attempt counts too
    refused = _attempt(client, ip, password="wonderland")
    assert refused.status_code == 429
    body = refused.get_json()
    assert {k: body[k] for k in RATE_LIMITED} == RATE_LIMITED
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["errorMessage"] == f"Too many sign-in attempts; retry in {retry_after} seconds"
    assert refused.headers["Access-Control-Allow-Origin"] == SPA
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
    other_ip = f"192.0.2.{uuid.uuid4().int % 250 + 1}"  # fresh per run: Redis keeps counters for the window
    assert _attempt(client, other_ip).status_code == 401  # another address is not limited
    get_service(app).close()


# -- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"LOGOUT_CORS_ORIGINS": ["localhost:5173"]}, "LOGOUT_CORS_ORIGINS: 'localhost:5173' is not an origin"),
        ({"LOGOUT_SIGNIN_RATE_LIMIT": "ten a minute"}, "LOGOUT_SIGNIN_RATE_LIMIT: not a rate limit like"),
        (
            {"LOGOUT_RATE_LIMIT_STORAGE_URI": "carrier-pigeon://:hunter2@loft"},
            "LOGOUT_RATE_LIMIT_STORAGE_URI: unusable storage 'carrier-pigeon://:\\*\\*\\*@loft'",
        ),
        (
            {"LOGOUT_COOKIE_PARTITIONED": True, "LOGOUT_COOKIE_SECURE": False},
            "LOGOUT_COOKIE_PARTITIONED: requires LOGOUT_COOKIE_SECURE = True",
        ),
        ({"LOGOUT_DESCOPE_REFRESH_ROTATION": "sometimes"}, "LOGOUT_DESCOPE_REFRESH_ROTATION: must be True or False"),
    ],
)
def test_new_settings_are_checked_at_start_up(
    database_uri: str, rsa_pem: str, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        create_app(example_settings(database_uri, rsa_pem, **settings))
    assert "hunter2" not in str(raised.value)


def test_partitioned_cookies(database_uri: str, rsa_pem: str) -> None:
    app = create_app(
        example_settings(
            database_uri,
            rsa_pem,
            LOGOUT_COOKIE_SECURE=True,
            LOGOUT_COOKIE_SAMESITE="None",
            LOGOUT_COOKIE_PARTITIONED=True,
        )
    )
    client = app.test_client()
    response = client.post("/v1/auth/password/signin", json={"loginId": "alice@example.com", "password": "wonderland"})
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 2
    for header in cookies:
        assert header.endswith("; Secure; HttpOnly; Path=/; SameSite=None; Partitioned")
    signed_out = client.post("/v1/auth/logout", headers=auth(response.get_json()["refreshJwt"]))
    for header in signed_out.headers.getlist("Set-Cookie"):
        assert "Max-Age=0" in header and header.endswith("; Partitioned")
    get_service(app).close()


def test_cors_follows_the_descope_prefix(database_uri: str, rsa_pem: str) -> None:
    """Under LOGOUT_URL_PREFIXES the Descope endpoints move, and their CORS answers move with them."""
    app = create_app(
        example_settings(database_uri, rsa_pem, LOGOUT_CORS_ORIGINS=[SPA], LOGOUT_URL_PREFIXES={"descope": "/idp"})
    )
    client = app.test_client()
    preflight = client.options("/idp/v1/auth/refresh", headers={"Origin": SPA, "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == SPA
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in preflight.headers["Vary"]
    get_service(app).close()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("PUT", "/v1/auth/password/signin", "POST"), ("DELETE", "/v1/auth/me", "GET"), ("GET", "/v1/auth/logout", "POST")],
)
def test_a_known_path_with_another_method_is_405_in_the_envelope(
    client: Any, method: str, path: str, allow: str
) -> None:
    response = client.open(path, method=method)
    assert (response.status_code, response.headers["Allow"]) == (405, allow)
    assert response.get_json() == {
        "errorCode": "E904005",
        "errorDescription": "Method not allowed",
        "errorMessage": f"{path} does not take {method}",
    }


@pytest.mark.parametrize(
    ("path", "allow"),
    [("/v1/auth/try-refresh", "POST, OPTIONS"), (f"/v2/keys/{PROJECT_ID}", "GET, HEAD, OPTIONS")],
)
def test_options_allow_names_only_what_the_path_serves(client: Any, path: str, allow: str) -> None:
    """The JSON catch-all under /v1 and /v2 takes every method; Allow must not say so."""
    response = client.options(path)
    assert (response.status_code, response.headers["Allow"]) == (200, allow)


def test_options_on_an_unknown_api_path_is_404_in_the_envelope(client: Any) -> None:
    response = client.options("/v1/auth/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["errorCode"] == "E904004"
