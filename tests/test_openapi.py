"""docs/openapi.yaml: a valid OpenAPI 3.1 description that the example app keeps.

Schemathesis generates requests for every operation of the description
(valid ones and invalid ones) and sends them to the example app over real
HTTP, on SQLite and on PostgreSQL. Every answer must be documented: no
server error, a documented status code and content type, a body that
matches the documented schema (so every error is in the envelope of its
dialect) and the documented headers. Every third request of an operation
carries real credentials, so that generated input also reaches the code
behind authentication.
"""

from __future__ import annotations

import base64
import collections
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

schemathesis = pytest.importorskip("schemathesis", reason="Schemathesis is in the test extra: pip install -e '.[test]'")

from openapi_spec_validator import OpenAPIV31SpecValidator, validate  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import HealthCheck  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from example_app import DEMO_IDP, PROJECT_ID  # noqa: E402

from .conftest import LiveServer  # noqa: E402

SPEC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"

#: Generated examples per operation in the fuzzing phase (the examples and
#: coverage phases add their own, bounded by the schema).
MAX_EXAMPLES = 25
#: One request in this many gets real credentials.
REAL_EVERY = 3

CLIENT = ("demo-client", "demo-secret")
LOCKED = ("locked-client", "locked-secret")  # whitelist 203.0.113.0/24: refused from loopback
USER = ("alice@example.com", "wonderland")
SSO_USER = ("sso@example.com", "wonderland")


def test_description_is_valid_openapi_3_1() -> None:
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


def test_description_names_every_endpoint_and_this_version() -> None:
    from flask_logout import __version__

    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert document["info"]["version"] == __version__
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("POST", "/auth/login"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("GET", "/api/me"),
        ("POST", "/v1/auth/logout"),
        ("POST", "/v1/auth/logoutall"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/password/signin"),
        ("GET", "/v2/keys/{projectId}"),
        ("POST", "/v1/auth/try-refresh"),
        ("GET", "/v1/auth/me"),
        ("GET", "/v1/auth/me/tenants"),
        ("POST", "/v1/auth/me/tenants"),
        ("GET", "/v1/auth/me/history"),
        ("POST", "/session/token"),
        ("POST", "/session/token/refresh"),
        ("DELETE", "/session/token"),
        ("DELETE", "/session/token/all"),
        ("POST", "/oidc/backchannel-logout/{provider}"),
        ("POST", "/oauth/revoke"),
    }


def test_example_app_serves_the_description(live_example: LiveServer) -> None:
    response = requests.get(f"{live_example.url}/openapi.yaml", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert response.content == SPEC.read_bytes()


def test_without_the_description_there_is_no_route(
    tmp_path: pathlib.Path, rsa_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed example app (no docs folder next to it) does not serve the route."""
    import os

    from example_app import create_app
    from flask_logout import get_service

    from .conftest import example_settings

    isfile = os.path.isfile
    monkeypatch.setattr(os.path, "isfile", lambda path: not str(path).endswith("openapi.yaml") and isfile(path))
    app = create_app(example_settings(f"sqlite:///{tmp_path}/store.sqlite3", rsa_pem))
    try:
        assert "/openapi.yaml" not in {rule.rule for rule in app.url_map.iter_rules()}
        assert app.test_client().get("/openapi.yaml").status_code == 404
    finally:
        get_service(app).close()


# -- Schemathesis against the live example app ----------------------------------


# Loaded once; the base URL of each database's live server is given per call.
# (``schemathesis.pytest.from_fixture`` would take it from a fixture, but
# fails under pytest 9: it sets ``Node._nodeid``, which pytest 9 removed.)
schema = schemathesis.openapi.from_path(SPEC)
schema.config.update(suppress_health_check=[HealthCheck.all], request_timeout=10)
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")


class RealCredentials:
    """Puts live credentials into every ``REAL_EVERY``-th request of an operation."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: collections.Counter[str] = collections.Counter()

    def _post(self, path: str, **kwargs: Any) -> Any:
        response = requests.post(f"{self.url}{path}", timeout=10, **kwargs)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def client_tokens(self) -> dict[str, str]:
        body = {"client_id": CLIENT[0], "client_secret": CLIENT[1]}
        return self._post("/auth/login", json=body)["data"]  # type: ignore[no-any-return]

    def session_tokens(self, user: tuple[str, str] = USER) -> dict[str, str]:
        body = {"email": user[0], "password": user[1]}
        return self._post("/session/token", json=body)["data"]["token"]  # type: ignore[no-any-return]

    def descope_refresh(self) -> str:
        body = {"loginId": USER[0], "password": USER[1]}
        answer = self._post("/v1/auth/password/signin", json=body, headers={"Authorization": f"Bearer {PROJECT_ID}"})
        return answer["refreshJwt"]  # type: ignore[no-any-return]

    def apply(self, case: Any) -> None:
        label = f"{case.method.upper()} {case.path}"
        self.seen[label] += 1
        turn = self.seen[label] // REAL_EVERY
        if self.seen[label] % REAL_EVERY:
            return
        body = case.body if isinstance(case.body, dict) else None
        if label == "POST /auth/login" and body is not None:
            client_id, secret = LOCKED if turn % 2 else CLIENT
            body.update(client_id=client_id, client_secret=secret)
        elif label == "POST /auth/refresh" and body is not None:
            body["refresh_token"] = self.client_tokens()["refresh_token"]
        elif label in ("POST /auth/logout", "GET /api/me"):
            # Alternately an API client's token and an end user's.
            tokens = self.client_tokens() if turn % 2 else self.session_tokens()
            case.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        elif label in (
            "POST /v1/auth/logout",
            "POST /v1/auth/logoutall",
            "POST /v1/auth/refresh",
            "POST /v1/auth/try-refresh",
            "GET /v1/auth/me",
            "GET /v1/auth/me/tenants",
            "POST /v1/auth/me/tenants",
            "GET /v1/auth/me/history",
        ):
            case.headers["Authorization"] = f"Bearer {PROJECT_ID}:{self.descope_refresh()}"
        elif label == "POST /v1/auth/password/signin":
            case.headers["Authorization"] = f"Bearer {PROJECT_ID}"
            if body is not None:
                body.update(loginId=USER[0], password=USER[1])
        elif label == "GET /v2/keys/{projectId}":
            case.path_parameters["projectId"] = PROJECT_ID
        elif label == "POST /session/token" and body is not None:
            email, password = SSO_USER if turn % 2 else USER
            body.update(email=email, password=password)
        elif (
            label in ("DELETE /session/token", "DELETE /session/token/all", "POST /session/token/refresh")
            and body is not None
        ):
            body["refresh_token"] = self.session_tokens(SSO_USER if turn % 2 else USER)["refresh_token"]
        elif label == "POST /oidc/backchannel-logout/{provider}":
            case.path_parameters["provider"] = DEMO_IDP
        elif label == "POST /oauth/revoke":
            basic = base64.b64encode(f"{CLIENT[0]}:{CLIENT[1]}".encode()).decode()
            case.headers["Authorization"] = f"Basic {basic}"
            if body is not None:
                body.pop("client_secret", None)
                tokens = self.client_tokens() if turn % 2 else self.session_tokens()
                body["token"] = tokens["refresh_token" if turn % 4 < 2 else "access_token"]


@pytest.fixture
def real_credentials(live_example: LiveServer) -> RealCredentials:
    return RealCredentials(live_example.url)


def empty_body_when_documented(ctx: Any, response: Any, case: Any) -> bool | None:
    """A response documented without content (RFC 7009 and back-channel 200) has an empty body."""
    definition = case.operation.responses.find_by_status_code(response.status_code)
    if definition is not None and not definition.definition.get("content"):
        assert response.content == b"", f"{case.operation.label} {response.status_code}: expected an empty body"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    empty_body_when_documented,
]


@schema.parametrize()
def test_every_generated_request_gets_a_documented_answer(
    case: Any, live_example: LiveServer, real_credentials: RealCredentials
) -> None:
    real_credentials.apply(case)
    case.call_and_validate(base_url=live_example.url, checks=CHECKS)


# -- bugs found while writing the description: kept until the code is fixed ------
#
# Schemathesis generates only UTF-8-encodable strings, modest nesting and
# ASCII header values, so it does not send these; each is a plain request a
# client can make, answered with a 500 instead of the dialect's 4xx envelope.

DOCUMENT = yaml.safe_load(SPEC.read_text(encoding="utf-8"))


@pytest.fixture
def live_sqlite(tmp_path: pathlib.Path, rsa_pem: str) -> Iterator[LiveServer]:
    """The example app over real HTTP on SQLite; its OpenID provider is a closed port."""
    from example_app import create_app
    from flask_logout import get_service

    from .conftest import example_settings

    settings = example_settings(f"sqlite:///{tmp_path}/store.sqlite3", rsa_pem, DEMO_BASE_URL="http://127.0.0.1:9")
    app = create_app(settings)
    server = LiveServer(app)
    yield server
    server.stop()
    get_service(app).close()


def assert_documented(method: str, path: str, response: requests.Response, *, server_error: bool = False) -> None:
    """A documented status (not 5xx unless expected) and a body that matches its schema."""
    documented = DOCUMENT["paths"][path][method.lower()]["responses"]
    assert (response.status_code >= 500) == server_error, (response.status_code, response.text[:200])
    assert str(response.status_code) in documented
    schema[path][method].validate_response(response)


def test_unavailable_answers_match_the_description(live_sqlite: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """503s cannot be generated against a healthy store: break it and check each dialect's answer."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from flask_logout import get_service

    credentials = RealCredentials(live_sqlite.url)
    client = credentials.client_tokens()
    session = credentials.session_tokens()
    descope = credentials.descope_refresh()
    basic = (CLIENT[0], CLIENT[1])
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"k"}').rstrip(b"=").decode()
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/auth/logout", {"headers": {"Authorization": f"Bearer {client['access_token']}"}}),
        ("GET", "/api/me", {"headers": {"Authorization": f"Bearer {session['access_token']}"}}),
        ("POST", "/auth/refresh", {"json": {"refresh_token": client["refresh_token"]}}),
        ("POST", "/auth/login", {"json": {"client_id": CLIENT[0], "client_secret": CLIENT[1]}}),
        ("POST", "/v1/auth/logout", {"headers": {"Authorization": f"Bearer {PROJECT_ID}:{descope}"}}),
        ("POST", "/v1/auth/logoutall", {"headers": {"Authorization": f"Bearer {PROJECT_ID}:{descope}"}}),
        ("POST", "/v1/auth/refresh", {"headers": {"Authorization": f"Bearer {PROJECT_ID}:{descope}"}}),
        ("POST", "/v1/auth/password/signin", {"json": {"loginId": USER[0], "password": USER[1]}}),
        ("POST", "/session/token", {"json": {"email": USER[0], "password": USER[1]}}),
        ("POST", "/session/token/refresh", {"json": {"refresh_token": session["refresh_token"]}}),
        ("DELETE", "/session/token", {"json": {"refresh_token": session["refresh_token"]}}),
        ("DELETE", "/session/token/all", {"json": {"refresh_token": session["refresh_token"]}}),
        ("POST", "/oauth/revoke", {"auth": basic, "data": {"token": client["refresh_token"]}}),
        # The demo provider's keys are unreachable (closed port): 503 as well.
        ("POST", f"/oidc/backchannel-logout/{DEMO_IDP}", {"data": {"logout_token": f"{header}.e30.c2ln"}}),
    ]

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    store = get_service(live_sqlite.app).store
    # Every statement through the engine, and the token look-up's own connections.
    monkeypatch.setattr(store, "lookup", fail)
    engine = store.engine
    event.listen(engine, "before_cursor_execute", fail)
    try:
        for method, path, kwargs in calls:
            response = requests.request(method, f"{live_sqlite.url}{path}", timeout=10, **kwargs)
            template = path if "backchannel" not in path else "/oidc/backchannel-logout/{provider}"
            if path.startswith("/session/"):  # Cloudreve's protocol: HTTP 200, CodeDBError in the body
                assert (response.status_code, response.json()["code"]) == (200, 50001), (path, response.text[:200])
                assert_documented(method, template, response)
                continue
            assert response.status_code == 503, (path, response.status_code, response.text[:200])
            assert_documented(method, template, response, server_error=True)
    finally:
        event.remove(engine, "before_cursor_execute", fail)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/auth/login", b'{"client_id": "demo-client", "client_secret": "\\ud800"}'),
        ("/auth/login", b'{"client_id": "\\ud800", "client_secret": "demo-secret"}'),
        ("/session/token", b'{"email": "alice@example.com", "password": "\\ud800"}'),
        ("/v1/auth/password/signin", b'{"loginId": "alice@example.com", "password": "\\ud800"}'),
    ],
)
def test_lone_surrogate_in_credentials_is_refused(live_sqlite: LiveServer, path: str, body: bytes) -> None:
    response = requests.post(
        f"{live_sqlite.url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_documented("POST", path, response)
    assert response.status_code == (200 if path == "/session/token" else 400)
    answer = response.json()
    if path == "/auth/login":
        field = "client_secret" if b'"client_secret": "\\ud800"' in body else "client_id"
        assert answer == {
            "error": {
                "name": "BadRequestError",
                "code": "BAD_REQUEST",
                "message": f"Field {field} must be valid text (UTF-8, no NUL)",
            }
        }
    elif path == "/session/token":
        assert (answer["code"], answer["msg"]) == (40001, "Parameter error")
    else:
        assert answer["errorCode"] == "E011004"


def test_non_ascii_basic_credentials_are_invalid_client(live_sqlite: LiveServer) -> None:
    response = requests.post(
        f"{live_sqlite.url}/oauth/revoke",
        data={"token": "x"},
        headers={"Authorization": "Basic \xe9"},
        timeout=10,
    )
    assert_documented("POST", "/oauth/revoke", response)
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/login"),  # client_api.json_object
        ("POST", "/v1/auth/logout"),  # descope._body
        ("POST", "/session/token/refresh"),  # session._json_object
    ],
)
def test_deeply_nested_json_body_is_a_bad_request(live_sqlite: LiveServer, method: str, path: str) -> None:
    response = requests.request(
        method,
        f"{live_sqlite.url}{path}",
        data=b"[" * 16_000,  # under the 16 KB body limit, far over the parser's nesting limit
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_documented(method, path, response)
    if path.startswith("/session/"):  # Cloudreve's protocol: HTTP 200 and CodeParamErr
        assert (response.status_code, response.json()["code"], response.json()["msg"]) == (
            200,
            40001,
            "Parameter error",
        )
    else:
        assert response.status_code == 400


def test_schemathesis_from_outside_with_every_check_finds_nothing(
    live_sqlite: LiveServer, tmp_path: pathlib.Path
) -> None:
    """The command line, as a user runs it against the served description, with ``--checks all``.

    Beyond the checks above this adds positive and negative data acceptance
    (every constraint the server enforces is in the schema), ignored
    authentication, missing required headers, unsupported methods and the
    stateful phase. The one configured exception is the OIDC-mandated 400 for
    a JWT-shaped back-channel logout token that does not verify (see
    tests/schemathesis.toml).
    """
    import subprocess
    import sys

    cli = pathlib.Path(sys.executable).parent / "schemathesis"
    config = pathlib.Path(__file__).resolve().parent / "schemathesis.toml"
    command = [
        str(cli),
        "--config-file",
        str(config),
        "run",
        f"{live_sqlite.url}/openapi.yaml",
        "--checks",
        "all",
        "--max-examples",
        "15",
        "--seed",
        "1",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--workers",
        "1",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert "failure" not in run.stdout.splitlines()[-1], summary
    operations = sum(len(item) for item in DOCUMENT["paths"].values())
    assert f"Selected: {operations}/{operations}" in run.stdout, summary
    assert f"Tested: {operations}" in run.stdout, summary


@pytest.mark.parametrize(
    ("path", "schema_of", "body", "status"),
    [
        ("/auth/login", "ClientLoginRequest", {"client_id": "demo-client", "client_secret": "demo\x00secret"}, 400),
        ("/auth/login", "ClientLoginRequest", {"client_id": "demo\x00client", "client_secret": "demo-secret"}, 400),
        ("/auth/login", "ClientLoginRequest", {"client_id": "demo-client", "client_secret": "s" * 257}, 400),
        ("/auth/login", "ClientLoginRequest", {"client_id": "c" * 201, "client_secret": "demo-secret"}, 400),
        ("/session/token", "SessionSignInRequest", {"email": "alice@example.com", "password": "a\x00b"}, 200),
        ("/v1/auth/password/signin", "DescopeSignInRequest", {"loginId": "alice\x00", "password": "wonderland"}, 400),
    ],
)
def test_every_constraint_the_server_enforces_is_in_the_schema(
    live_sqlite: LiveServer, path: str, schema_of: str, body: dict[str, Any], status: int
) -> None:
    """A request the server refuses as malformed is one the description calls invalid
    (so Schemathesis' positive data is never refused, and its negative data always is)."""
    import jsonschema

    component = DOCUMENT["components"]["schemas"][schema_of]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, component)
    response = requests.post(f"{live_sqlite.url}{path}", json=body, timeout=10)
    assert response.status_code == status, response.text
    if path.startswith("/session/"):  # Cloudreve's protocol: HTTP 200 and CodeParamErr
        assert response.json()["code"] == 40001
    assert_documented("POST", path, response)


def test_a_logout_token_that_is_not_a_jwt_is_schema_invalid(live_sqlite: LiveServer) -> None:
    import jsonschema

    operation = DOCUMENT["paths"]["/oidc/backchannel-logout/{provider}"]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"logout_token": "0"}, form)
    jsonschema.validate({"logout_token": "a.b.c"}, form)
    response = requests.post(
        f"{live_sqlite.url}/oidc/backchannel-logout/{DEMO_IDP}", data={"logout_token": "0"}, timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
