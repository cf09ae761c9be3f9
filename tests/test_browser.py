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
    phone_tab.click("#confirm-sign-out-everywhere")  # asked first
    phone_tab.wait_for_selector("form#sign-in")
    assert _auth_cookies(phone) == {}
    laptop_second_tab.reload()
    assert laptop_second_tab.inner_text("#status") == "You are signed out."
    assert laptop_second_tab.inner_text("#notice") == (
        "You were signed out: this session was ended from another session or device."
    )
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


# -- without JavaScript, on a phone-sized screen ---------------------------------

IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "images")


def _sign_in_by_form(page: Any, url: str) -> Any:
    """Fill in and submit the sign-in form; returns the request the browser sent."""
    page.goto(url)
    page.fill("input[name=loginId]", "alice@example.com")
    page.fill("input[name=password]", "wonderland")
    with page.expect_request(lambda r: r.url.startswith(url) and "sign" in r.url and r.method == "POST") as sent:
        page.click("form#sign-in button[type=submit]")
    page.wait_for_selector("#who")
    return sent.value


def test_every_form_works_without_javascript(browser: Any, live_example: LiveServer) -> None:
    laptop = browser.new_context(java_script_enabled=False)
    phone = browser.new_context(java_script_enabled=False, user_agent="Mozilla/5.0 (iPhone) Safari/604.1")
    laptop_tab, phone_tab = laptop.new_page(), phone.new_page()
    request = _sign_in_by_form(laptop_tab, live_example.url)
    # A real POST: the password is in the body, never in the URL (or an access log).
    assert (request.method, request.url) == ("POST", f"{live_example.url}/signin")
    assert "wonderland" in (request.post_data or "") and "wonderland" not in laptop_tab.url
    _sign_in_by_form(phone_tab, live_example.url)
    laptop_tab.reload()
    rows = laptop_tab.locator("tr.session")
    assert rows.count() == 2
    assert laptop_tab.inner_text("tr.session.current td.device") == "Headless Chrome on Linux"
    assert laptop_tab.inner_text("tr.session:not(.current) td.device") == "Safari on iPhone"
    assert laptop_tab.inner_text("tr.session.current td.address") == "127.0.0.1"

    # End the phone's session from the laptop's list.
    laptop_tab.click("tr.session:not(.current) button.end-session")
    laptop_tab.wait_for_load_state()
    assert laptop_tab.locator("tr.session").count() == 1
    phone_tab.reload()
    assert phone_tab.inner_text("#status") == "You are signed out."
    assert phone_tab.inner_text("#notice") == (
        "You were signed out: this session was ended from another session or device."
    )
    assert _auth_cookies(phone) == {}

    # "Sign out everywhere" asks first; cancelling keeps the session.
    _sign_in_by_form(phone_tab, live_example.url)
    laptop_tab.click("#sign-out-everywhere")
    assert laptop_tab.locator("#confirm-everywhere").count() == 1
    laptop_tab.click("#cancel")
    assert laptop_tab.inner_text("#who") == "alice@example.com"
    laptop_tab.click("#sign-out-everywhere")
    laptop_tab.click("#confirm-sign-out-everywhere")
    laptop_tab.wait_for_selector("form#sign-in")
    assert _auth_cookies(laptop) == {}
    phone_tab.reload()
    assert phone_tab.inner_text("#status") == "You are signed out."

    # And plain "Sign out".
    _sign_in_by_form(laptop_tab, live_example.url)
    laptop_tab.click("#sign-out")
    laptop_tab.wait_for_selector("form#sign-in")
    assert laptop_tab.locator("#notice").count() == 0
    assert _auth_cookies(laptop) == {}
    laptop.close()
    phone.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_page_fits_a_375px_screen(browser: Any, live_example: LiveServer, javascript: bool) -> None:
    other = browser.new_context(user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0")
    _sign_in_by_form(other.new_page(), live_example.url)
    context = browser.new_context(
        viewport={"width": 375, "height": 740}, java_script_enabled=javascript, device_scale_factor=1
    )
    page = context.new_page()
    page.goto(live_example.url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    _sign_in_by_form(page, live_example.url)
    assert page.locator("tr.session").count() == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for selector in ("#sign-out", "#sign-out-everywhere", "button.end-session"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
    if javascript:
        page.screenshot(path=os.path.join(IMAGES, "demo-phone-375.png"), full_page=True)
    other.close()
    context.close()


def test_screenshot_of_the_signed_in_page(browser: Any, live_example: LiveServer) -> None:
    """The README's picture, taken from the page as it is."""
    phone = browser.new_context(user_agent="Mozilla/5.0 (iPhone) Safari/604.1")
    _sign_in_by_form(phone.new_page(), live_example.url)
    context = browser.new_context(viewport={"width": 900, "height": 640}, device_scale_factor=1)
    page = context.new_page()
    _sign_in_by_form(page, live_example.url)
    assert page.locator("tr.session").count() == 2
    page.screenshot(path=os.path.join(IMAGES, "demo-signed-in.png"), full_page=True)
    phone.close()
    context.close()


# -- Flask-Login: a copied cookie jar after sign-out -------------------------------


@pytest.mark.parametrize("server_side", [False, True], ids=["cookie-session", "flask-session"])
def test_flask_login_cookie_jar_copied_before_sign_out_is_refused_after_it(
    browser: Any, database_uri: str, tmp_path: Any, server_side: bool
) -> None:
    from flask_logout import get_service

    from .test_flask_login import build_login_app

    app = build_login_app(database_uri, tmp_path, server_side=server_side)
    server = LiveServer(app)
    try:
        original = browser.new_context()
        answer = original.request.post(
            f"{server.url}/login", form={"name": "alice", "password": "wonderland", "remember": "yes"}
        )
        assert (answer.status, answer.json()) == (200, {"signed_in": True})
        jar = original.cookies()
        assert {"session", "remember_token", "remember_token_session"} <= {c["name"] for c in jar}
        copy = browser.new_context()
        copy.add_cookies(jar)
        page = copy.new_page()
        before = page.goto(f"{server.url}/me")
        assert before is not None and (before.status, before.json()["user"]) == (200, "alice")

        signed_out = original.request.post(f"{server.url}/logout")
        assert signed_out.json() == {"signed_in": False}

        replay = browser.new_context()
        replay.add_cookies(jar)  # the jar as it was before the sign-out
        after = replay.new_page().goto(f"{server.url}/me")
        assert after is not None
        # Revoked in the store: the session cookie's reference (cookie session),
        # or the remember-me cookie's companion (the server-side session is empty).
        assert (after.status, after.json()) == (401, {"signed_in": False, "reason": "revoked"})
        # Not even the remember-me cookie brings the session back.
        assert "remember_token" not in {c["name"] for c in replay.cookies()}
        again = replay.new_page().goto(f"{server.url}/me")
        assert again is not None and again.status == 401
        for context in (original, copy, replay):
            context.close()
    finally:
        server.stop()
        get_service(app).close()
