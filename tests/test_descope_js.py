"""Descope's official JavaScript SDKs against flask-logout, as an integrating team would use them.

* ``@descope/web-js-sdk`` (bundled with esbuild) in a single-page app served
  from another origin (``http://localhost:<port>``) than the API
  (``http://127.0.0.1:<port>``), driven in Debian's headless Chromium: every
  call crosses origins, so each needs the CORS answers of
  ``LOGOUT_CORS_ORIGINS``.
* ``@descope/node-sdk`` with the example app's default settings.

The packages are pinned in ``tests/js/package.json`` and
``tests/js/package-lock.json`` and installed by the session fixture below
(``npm ci`` into the git-ignored ``tests/js/node_modules``). Without node, npm
or Chromium the tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response

from example_app import PROJECT_ID, create_app
from flask_logout import get_service

from .conftest import LiveServer, example_settings
from .test_browser import CHROMIUM, CHROMIUM_ARGS

JS = pathlib.Path(__file__).resolve().parent / "js"
NPM_TIMEOUT = 300  # seconds: a cold npm ci of three packages
NODE_TIMEOUT = 60


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def js_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """Install the pinned packages (once per lock file) and bundle the browser SDK."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the JavaScript SDK tests (Debian: apt-get install nodejs npm)")
    assert node is not None and npm is not None
    lock = (JS / "package-lock.json").read_bytes()
    stamp = JS / "node_modules" / ".flask-logout-lock"
    digest = hashlib.sha256(lock).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            check=True,
            timeout=NPM_TIMEOUT,
            env={**os.environ, "CI": "true"},
        )
        stamp.write_text(digest)
    bundle = tmp_path_factory.mktemp("web-sdk") / "web-sdk.js"
    subprocess.run([node, "build.mjs", str(bundle)], cwd=JS, check=True, timeout=NODE_TIMEOUT)
    return {"node": pathlib.Path(node), "bundle": bundle}


# -- Node SDK --------------------------------------------------------------------


def test_node_sdk_with_the_example_apps_defaults(
    js_packages: dict[str, pathlib.Path], live_example: LiveServer
) -> None:
    run = subprocess.run(
        [str(js_packages["node"]), "node-sdk-check.cjs", live_example.url, PROJECT_ID],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=True,
    )
    ok = {"ok": True, "code": 200, "errorCode": None}
    revoked = {"ok": False, "code": 401, "errorCode": "E064001"}
    assert json.loads(run.stdout) == {
        "signIn": {**ok, "userId": "U-alice"},
        # validateSession checks iss against the project id and reads drn.
        "validateSession": {"sub": "U-alice", "iss": PROJECT_ID, "drn": "DS"},
        # No rotation by default: the SDK keeps its refresh JWT.
        "refreshSession": {"sub": "U-alice", "drn": "DS", "newSession": True, "sameRefresh": True},
        "validateAndRefreshSession": {"sub": "U-alice", "newSession": True},
        # An SDK made with an auth management key sends Bearer <pid>:<refresh>:<key>.
        "meWithAuthManagementKey": {**ok, "email": "alice@example.com"},
        "logout": ok,
        "refreshAfterLogout": "refused",
        "refreshAfterLogoutRaw": revoked,
        "logoutAll": ok,
        "phoneAfterLogoutAll": revoked,
        "phoneValidateAndRefresh": "refused",
    }


# -- web-js SDK in Chromium, from another origin -------------------------------------

PAGE = """<!doctype html><meta charset="utf-8"><title>SPA</title>
<script src="/web-sdk.js"></script>
<script>
  window.makeSdk = (baseUrl, projectId) => {
    window.sdk = Descope.createSdk({projectId, baseUrl, persistTokens: true, autoRefresh: false});
  };
  window.outcome = (r) => ({ok: r.ok, code: r.code, errorCode: r.error ? r.error.errorCode : null});
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[test]'")
    if CHROMIUM is None:
        _unavailable("Chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def spa_and_api(js_packages: dict[str, pathlib.Path], database_uri: str, rsa_pem: str) -> Iterator[tuple[str, str]]:
    """(page origin, API origin): the SPA on http://localhost:<p1>, the example app on http://127.0.0.1:<p2>."""
    spa = Flask("spa")
    bundle = js_packages["bundle"].read_bytes()

    @spa.get("/")
    def page() -> str:
        return PAGE

    @spa.get("/web-sdk.js")
    def sdk() -> Response:
        return Response(bundle, mimetype="text/javascript")

    spa_server = LiveServer(spa)
    spa_origin = spa_server.url.replace("127.0.0.1", "localhost")
    api = create_app(example_settings(database_uri, rsa_pem, LOGOUT_CORS_ORIGINS=[spa_origin]))
    api_server = LiveServer(api)
    yield spa_origin, api_server.url
    api_server.stop()
    spa_server.stop()
    get_service(api).close()


def _open(browser: Any, spa_origin: str, api: str) -> tuple[Any, Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(spa_origin)
    page.evaluate("([api, pid]) => makeSdk(api, pid)", [api, PROJECT_ID])
    return context, page


def _check(checks: dict[str, Any], name: str, page: Any, script: str, arg: Any = None) -> Any:
    """Run one step in the page; a network failure (a CORS refusal) is recorded, not raised."""
    try:
        checks[name] = page.evaluate(script, arg)
    except Exception as exc:  # playwright's Error: the page's promise rejected
        checks[name] = f"failed: {str(exc).splitlines()[0]}"
    return checks[name]


def _value(page: Any, script: str, arg: Any = None) -> Any:
    """A value read from the page between checks; ``None`` if the page fails."""
    try:
        return page.evaluate(script, arg)
    except Exception:
        return None


SIGN_IN = """async () => {
  const r = await sdk.password.signIn('alice@example.com', 'wonderland');
  return {...outcome(r), email: r.data ? r.data.user.email : null};
}"""
TOKENS = "() => ({session: sdk.getSessionToken() !== '', refresh: sdk.getRefreshToken() !== ''})"
API_ME = """async (api) => {
  const r = await fetch(api + '/api/me', {headers: {Authorization: 'Bearer ' + sdk.getSessionToken()}});
  return {status: r.status, body: await r.json()};
}"""


def test_web_js_sdk_in_chromium_from_another_origin(chromium: Any, spa_and_api: tuple[str, str]) -> None:
    spa_origin, api = spa_and_api
    ok = {"ok": True, "code": 200, "errorCode": None}
    revoked = {"ok": False, "code": 401, "errorCode": "E064001"}
    checks: dict[str, Any] = {}
    context, page = _open(chromium, spa_origin, api)
    other, other_page = _open(chromium, spa_origin, api)

    _check(checks, "1 sign-in", page, SIGN_IN)
    _check(checks, "2 tokens kept", page, TOKENS)
    _check(checks, "3 session on a protected route", page, API_ME, api)
    first_session = _value(page, "() => sdk.getSessionToken()")
    _check(
        checks,
        "4 refresh",
        page,
        "async () => { const r = await sdk.refresh(); return {...outcome(r), same: r.data && r.data.refreshJwt}; }",
    )
    if isinstance(checks["4 refresh"], dict):  # the answer's refresh JWT is the one the SDK holds
        checks["4 refresh"]["same"] = checks["4 refresh"]["same"] == _value(page, "() => sdk.getRefreshToken()")
    _check(checks, "5 new session JWT", page, "(old) => sdk.getSessionToken() !== old", first_session)
    _check(checks, "6 refreshed session on a protected route", page, API_ME, api)
    _check(
        checks,
        "7 me",
        page,
        "async () => { const r = await sdk.me(); return {...outcome(r), email: r.data ? r.data.email : null}; }",
    )
    _check(
        checks,
        "8 my tenants",
        page,
        "async () => { const r = await sdk.myTenants(true); return {...outcome(r), data: r.data || null}; }",
    )
    _check(
        checks,
        "9 history",
        page,
        "async () => { const r = await sdk.history(); "
        "return {...outcome(r), entries: r.data ? r.data.map((e) => e.userId) : null}; }",
    )
    _check(checks, "10 try-refresh", page, "async () => outcome(await sdk.refresh(undefined, true))")
    _check(checks, "11 other browser signs in", other_page, SIGN_IN)
    refresh_jwt = _value(page, "() => sdk.getRefreshToken()")
    session_jwt = _value(page, "() => sdk.getSessionToken()")
    _check(checks, "12 logout", page, "async () => outcome(await sdk.logout())")
    _check(checks, "13 tokens cleared", page, TOKENS)
    _check(checks, "14 old refresh token refused", page, "async (rt) => outcome(await sdk.refresh(rt))", refresh_jwt)
    _check(
        checks,
        "15 old session refused on a protected route",
        page,
        """async ([api, jwt]) => {
          const r = await fetch(api + '/api/me', {headers: {Authorization: 'Bearer ' + jwt}});
          return {status: r.status, body: await r.json()};
        }""",
        [api, session_jwt],
    )
    # logoutAll from a third sign-in in the first browser ends the other browser's session.
    _value(page, SIGN_IN)
    _check(
        checks,
        "16 logoutAll ends the other browser",
        page,
        "async () => outcome(await sdk.logoutAll())",
    )
    if checks["16 logoutAll ends the other browser"] == ok:
        checks["16 logoutAll ends the other browser"] = {
            "refresh": _value(other_page, "async () => outcome(await sdk.refresh())"),
            "tokens": _value(other_page, TOKENS),
        }
    context.close()
    other.close()

    me = {"status": 200, "body": {"success": True, "data": {"user_id": "U-alice"}}}
    expected = {
        "1 sign-in": {**ok, "email": "alice@example.com"},
        "2 tokens kept": {"session": True, "refresh": True},
        "3 session on a protected route": me,
        "4 refresh": {**ok, "same": True},
        "5 new session JWT": True,
        "6 refreshed session on a protected route": me,
        "7 me": {**ok, "email": "alice@example.com"},
        "8 my tenants": {**ok, "data": {"tenants": []}},
        "9 history": {**ok, "entries": ["U-alice"]},
        "10 try-refresh": ok,
        "11 other browser signs in": {**ok, "email": "alice@example.com"},
        "12 logout": ok,
        "13 tokens cleared": {"session": False, "refresh": False},
        "14 old refresh token refused": revoked,
        "15 old session refused on a protected route": {
            "status": 401,
            "body": {"error": {"name": "UnauthorizedError", "code": "UNAUTHORIZED", "message": "Invalid token"}},
        },
        "16 logoutAll ends the other browser": {"refresh": revoked, "tokens": {"session": False, "refresh": False}},
    }
    passed = sum(checks.get(name) == value for name, value in expected.items())
    assert checks == expected, f"{passed}/{len(expected)} checks pass"
