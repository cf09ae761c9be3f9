"""A real browser (Debian's headless Chromium) signs in and out of the example app.

Playwright drives the system Chromium (``executable_path``); no browser is
downloaded. Without Chromium these tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask

from example_app import PROJECT_ID

from .conftest import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is missing: pip install -e '.[test]'"
    if CHROMIUM is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _auth_cookies(context: Any) -> dict[str, Any]:
    return {c["name"]: c for c in context.cookies() if c["name"] in ("DS", "DSR")}


def _sign_in(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("form#sign-in")
    page.fill("input[name=loginId]", "alice@example.com")
    page.fill("input[name=password]", "wonderland")
    page.click("form#sign-in button[type=submit]")
    page.wait_for_selector("#who")


def test_sign_in_then_sign_out_clears_the_cookie_jar(browser: Any, live_example: LiveServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(live_example.url)
    assert page.inner_text("#status") == "You are signed out."
    _sign_in(page, live_example.url)
    assert page.inner_text("#who") == "alice@example.com"
    assert page.locator("tr.session").count() == 1

    cookies = _auth_cookies(context)
    assert set(cookies) == {"DS", "DSR"}
    for cookie in cookies.values():
        assert (cookie["httpOnly"], cookie["path"], cookie["sameSite"]) == (True, "/", "Lax")
    assert page.evaluate("document.cookie") == ""  # scripts cannot read either token
    refresh_jwt = cookies["DSR"]["value"]

    page.click("#sign-out")
    page.wait_for_selector("form#sign-in")
    assert page.inner_text("#status") == "You are signed out."
    assert _auth_cookies(context) == {}

    # The browser dropped the token; the server revoked it as well.
    replay = httpx.post(
        f"{live_example.url}/v1/auth/refresh", headers={"Authorization": f"Bearer {PROJECT_ID}:{refresh_jwt}"}
    )
    assert (replay.status_code, replay.json()["errorCode"]) == (401, "E064001")
    context.close()


def test_sign_out_everywhere_ends_the_other_browsers_session(browser: Any, live_example: LiveServer) -> None:
    laptop, phone = browser.new_context(), browser.new_context()
    laptop_tab, laptop_second_tab = laptop.new_page(), laptop.new_page()
    phone_tab = phone.new_page()
    _sign_in(laptop_tab, live_example.url)
    _sign_in(phone_tab, live_example.url)
    laptop_second_tab.goto(live_example.url)
    assert laptop_second_tab.inner_text("#who") == "alice@example.com"
    phone_tab.reload()
    assert phone_tab.locator("tr.session").count() == 2
    assert phone_tab.locator("tr.session.current").count() == 1

    # "Sign out" on the laptop ends the laptop's session only.
    laptop_tab.click("#sign-out")
    laptop_tab.wait_for_selector("form#sign-in")
    phone_tab.reload()
    assert phone_tab.inner_text("#who") == "alice@example.com"
    assert phone_tab.locator("tr.session").count() == 1

    # Sign in on the laptop again, then "Sign out everywhere" from the phone.
    _sign_in(laptop_tab, live_example.url)
    phone_tab.click("#sign-out-everywhere")
    phone_tab.wait_for_selector("form#sign-in")
    assert _auth_cookies(phone) == {}
    laptop_second_tab.reload()
    assert laptop_second_tab.inner_text("#status") == "You are signed out."
    assert _auth_cookies(laptop) == {}  # the page dropped the dead cookies
    laptop.close()
    phone.close()


def test_cross_origin_sign_out_is_refused_and_the_session_survives(browser: Any, live_example: LiveServer) -> None:
    """A page on another port of the same host is same-site, so the browser
    sends the SameSite=Lax cookies with its form POST: only the origin check
    stands between it and the user's session."""
    attacker = Flask("attacker")

    @attacker.get("/")
    def trap() -> str:
        return (
            f'<form method="POST" action="{live_example.url}/v1/auth/logout"></form>'
            "<script>document.forms[0].submit()</script>"
        )

    evil = LiveServer(attacker)
    try:
        context = browser.new_context()
        page = context.new_page()
        _sign_in(page, live_example.url)
        trap_tab = context.new_page()
        with trap_tab.expect_navigation(url=f"{live_example.url}/v1/auth/logout"):
            trap_tab.goto(evil.url)
        assert '"errorCode":"E901007"' in trap_tab.content().replace(" ", "")
        page.reload()
        assert page.inner_text("#who") == "alice@example.com"
        assert set(_auth_cookies(context)) == {"DS", "DSR"}
        context.close()
    finally:
        evil.stop()


def _login_csrf_page(target: str) -> str:
    """An attacker's page: a text/plain form whose one field, name=value, spells a JSON body."""
    name = '{"loginId":"alice@example.com","password":"wonderland","padding":"'
    return (
        f'<form method="POST" action="{target}/v1/auth/password/signin" enctype="text/plain">'
        f"<input type=\"hidden\" name='{name}' value='\"}}'></form>"
        "<script>document.forms[0].submit()</script>"
    )


@pytest.mark.parametrize("attacker_host", ["127.0.0.1", "localhost"])
def test_cross_origin_text_plain_sign_in_sets_no_cookie(
    browser: Any, live_example: LiveServer, attacker_host: str
) -> None:
    """Login CSRF: another origin (another port of the same host, or another
    site, ``localhost``) auto-submits the attacker's credentials as a
    ``text/plain`` form whose body happens to be JSON. The server refuses it
    and the victim's browser gets no session cookie."""
    attacker = Flask("attacker")

    @attacker.get("/")
    def trap() -> str:
        return _login_csrf_page(live_example.url)

    evil = LiveServer(attacker)
    evil_url = evil.url.replace("127.0.0.1", attacker_host)
    try:
        context = browser.new_context()
        page = context.new_page()
        target = f"{live_example.url}/v1/auth/password/signin"
        with page.expect_response(target) as answer:
            page.goto(evil_url)
        response = answer.value
        assert response.request.headers["content-type"] == "text/plain"
        assert response.request.headers["origin"] == evil_url
        assert (response.status, response.json()) == (
            403,
            {
                "errorCode": "E901007",
                "errorDescription": "Cross-origin request refused",
                "errorMessage": "Sign-in requests must come from this site's origin",
            },
        )
        assert _auth_cookies(context) == {}
        page.goto(live_example.url)
        assert page.inner_text("#status") == "You are signed out."
        context.close()
    finally:
        evil.stop()
