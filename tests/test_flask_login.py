"""Flask-Login sessions bound to the store: a copied cookie is refused after logout.

Run with Flask's default (signed cookie) session and with Flask-Session's
server-side sessions (cachelib, on the file system).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify, request

from flask_logout import LogoutManager, get_service
from flask_logout.login import SESSION_KEY, LoginSessions, logout_everywhere, session_family, signed_out_reason

from .conftest import FAST_HASH, SECRET, move_clock

flask_login = pytest.importorskip("flask_login", reason="Flask-Login is in the test extra: pip install -e '.[test]'")

USERS = {"alice": "wonderland", "bob": "builder"}


class User(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def build_login_app(
    database_uri: str, tmp_path: Any, *, server_side: bool = False, bind: bool = True, bind_first: bool = False
) -> Flask:
    """A Flask-Login app: sign in (with remember-me), a protected page, sign out, sign out everywhere."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        LOGOUT_DATABASE_URI=database_uri,
        LOGOUT_CLIENT_SECRET_HASH=FAST_HASH,
    )
    if server_side:
        from cachelib import FileSystemCache
        from flask_session import Session

        app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache(str(tmp_path / "sessions")))
        Session(app)
    if bind_first:  # LoginSessions before the LoginManager exists: it checks on Flask-Login's user_accessed signal
        LogoutManager(app)
        LoginSessions(app)
        login_manager = flask_login.LoginManager(app)
    else:
        login_manager = flask_login.LoginManager(app)
        LogoutManager(app)
        if bind:
            LoginSessions(app)

    @login_manager.user_loader
    def load(user_id: str) -> User | None:
        return User(user_id) if user_id in USERS else None

    @login_manager.unauthorized_handler
    def unauthorized() -> Any:
        return jsonify(signed_in=False, reason=signed_out_reason()), 401

    @app.post("/login")
    def login() -> Any:
        name = request.form["name"]
        if USERS.get(name) != request.form["password"]:
            return jsonify(error="wrong"), 401
        flask_login.login_user(User(name), remember=request.form.get("remember") == "yes")
        return jsonify(signed_in=True)

    @app.get("/me")
    @flask_login.login_required
    def me() -> Any:
        return jsonify(user=flask_login.current_user.id, family=session_family())

    @app.post("/logout")
    def logout() -> Any:
        flask_login.logout_user()
        return jsonify(signed_in=False)

    @app.post("/logout-everywhere")
    @flask_login.login_required
    def everywhere() -> Any:
        logout_everywhere()
        return jsonify(signed_in=False)

    return app


@pytest.fixture(params=["cookie-session", "server-side-session"])
def login_app(request: pytest.FixtureRequest, database_uri: str, tmp_path: Any) -> Iterator[Flask]:
    app = build_login_app(database_uri, tmp_path, server_side=request.param == "server-side-session")
    yield app
    get_service(app).close()


def _sign_in(client: Any, name: str = "alice", remember: bool = False) -> None:
    form = {"name": name, "password": USERS[name], "remember": "yes" if remember else "no"}
    assert client.post("/login", data=form).get_json() == {"signed_in": True}


def _copy_jar(source: Any, target: Any) -> None:
    for cookie in source._cookies.values():
        target.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)


SIGNED_OUT_REVOKED = {"signed_in": False, "reason": "revoked"}


def test_a_cookie_copied_before_logout_is_refused_after_it(login_app: Flask) -> None:
    original, thief = login_app.test_client(), login_app.test_client()
    _sign_in(original)
    me = original.get("/me")
    assert me.status_code == 200 and me.get_json()["user"] == "alice"
    _copy_jar(original, thief)
    assert thief.get("/me").status_code == 200  # the copy works while the session lives
    assert original.post("/logout").get_json() == {"signed_in": False}
    replay = thief.get("/me")
    # A server-side session was emptied by the logout itself; a cookie session
    # still carries the user id, and the store refuses it.
    server_side = "SESSION_TYPE" in login_app.config
    expected = {"signed_in": False, "reason": None} if server_side else SIGNED_OUT_REVOKED
    assert (replay.status_code, replay.get_json()) == (401, expected)
    again = thief.get("/me")  # the dead session keys were dropped from the copy
    assert (again.status_code, again.get_json()) == (401, {"signed_in": False, "reason": None})


def test_a_copied_remember_me_cookie_is_refused_after_logout(login_app: Flask) -> None:
    original = login_app.test_client()
    _sign_in(original, remember=True)
    names = {c.key for c in original._cookies.values()}
    assert {"remember_token", "remember_token_session"} <= names
    remember = {c.key: c.value for c in original._cookies.values() if c.key.startswith("remember_token")}
    # A browser that holds only the remember-me cookies (its session cookie
    # is gone, as after a restart) signs in from them ...
    restarted = login_app.test_client()
    for key, value in remember.items():
        restarted.set_cookie(key, value)
    assert restarted.get("/me").get_json()["user"] == "alice"
    # ... until the session is signed out anywhere.
    original.post("/logout")
    replay = login_app.test_client()
    for key, value in remember.items():
        replay.set_cookie(key, value)
    answer = replay.get("/me")
    assert (answer.status_code, answer.get_json()) == (401, SIGNED_OUT_REVOKED)
    assert "remember_token=;" in " ".join(answer.headers.getlist("Set-Cookie"))  # deleted


def test_a_remember_me_cookie_alone_without_its_companion_signs_nobody_in(login_app: Flask) -> None:
    original = login_app.test_client()
    _sign_in(original, remember=True)
    forged = login_app.test_client()
    forged.set_cookie("remember_token", original.get_cookie("remember_token").value)
    answer = forged.get("/me")
    assert (answer.status_code, answer.get_json()) == (401, {"signed_in": False, "reason": "invalid"})


def test_logout_everywhere_ends_every_session_of_the_user_only(login_app: Flask) -> None:
    laptop, phone, other_user = login_app.test_client(), login_app.test_client(), login_app.test_client()
    _sign_in(laptop)
    _sign_in(phone)
    _sign_in(other_user, "bob")
    service = get_service(login_app)
    assert len(service.live_sessions("alice")) == 2
    assert phone.post("/logout-everywhere").get_json() == {"signed_in": False}
    answer = laptop.get("/me")
    assert (answer.status_code, answer.get_json()) == (401, SIGNED_OUT_REVOKED)
    assert other_user.get("/me").get_json()["user"] == "bob"
    assert service.live_sessions("alice") == []


def test_revoke_user_from_another_process_ends_the_session_after_its_sync(database_uri: str, tmp_path: Any) -> None:
    """A password change handled by another worker: service.revoke_user there, O(1)."""
    here = build_login_app(database_uri, tmp_path)
    there = build_login_app(database_uri, tmp_path)
    try:
        browser = here.test_client()
        _sign_in(browser)
        assert browser.get("/me").status_code == 200  # checked once against the store, then the replica
        assert browser.get("/me").status_code == 200  # the hot path: found alive before, nothing revoked since
        get_service(there).revoke_user("alice")
        get_service(here).replica.sync()  # what the poll (or push) does within LOGOUT_SYNC_INTERVAL
        answer = browser.get("/me")
        assert (answer.status_code, answer.get_json()) == (401, SIGNED_OUT_REVOKED)
    finally:
        get_service(here).close()
        get_service(there).close()


def test_each_sign_in_is_a_session_with_device_and_address(login_app: Flask) -> None:
    client = login_app.test_client()
    client.post(
        "/login",
        data={"name": "alice", "password": "wonderland"},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) " + "x" * 300},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    family = client.get("/me").get_json()["family"]
    [info] = get_service(login_app).live_sessions("alice")
    assert (info.family, info.ip, len(info.user_agent or "")) == (family, "192.0.2.7", 200)
    assert (info.user_agent or "").startswith("Mozilla/5.0 (X11; Linux x86_64) xxx")


def test_without_login_sessions_the_copied_cookie_still_works(database_uri: str, tmp_path: Any) -> None:
    """What the integration fixes: plain Flask-Login keeps a copied cookie session alive after logout."""
    app = build_login_app(database_uri, tmp_path, bind=False)
    try:
        original, thief = app.test_client(), app.test_client()
        _sign_in(original)
        _copy_jar(original, thief)
        original.post("/logout")
        assert thief.get("/me").status_code == 200
    finally:
        get_service(app).close()


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("0" * 32, "revoked"),  # well formed, but no session of the store
        (12345, "invalid"),  # not a reference at all
        ("0" * 65, "invalid"),  # longer than any token id
    ],
)
def test_a_session_key_not_bound_to_the_store_is_refused(login_app: Flask, reference: Any, reason: str) -> None:
    client = login_app.test_client()
    _sign_in(client)
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = reference
    answer = client.get("/me")
    assert (answer.status_code, answer.get_json()) == (401, {"signed_in": False, "reason": reason})


def test_another_users_session_reference_is_refused(login_app: Flask) -> None:
    """A reference is bound to its user: bob's live session does not sign alice in."""
    alice, bob = login_app.test_client(), login_app.test_client()
    _sign_in(alice)
    _sign_in(bob, "bob")
    assert bob.get("/me").status_code == 200  # bob's session checked (and kept) in this process
    with bob.session_transaction() as sess:
        bobs = sess[SESSION_KEY]
    with alice.session_transaction() as sess:
        sess[SESSION_KEY] = bobs
    answer = alice.get("/me")
    assert (answer.status_code, answer.get_json()) == (401, SIGNED_OUT_REVOKED)


def test_the_flask_session_keeps_only_the_token_id(login_app: Flask) -> None:
    """The reference is the session's refresh token id: family, generation and
    expiry stay in the store (a cookie session pays for every character)."""
    client = login_app.test_client()
    _sign_in(client)
    with client.session_transaction() as sess:
        reference = sess[SESSION_KEY]
    [info] = get_service(login_app).live_sessions("alice")
    state = get_service(login_app).store.lookup(reference)
    assert state is not None and (state.typ, state.family) == ("refresh", info.family)
    assert client.get("/me").get_json()["family"] == info.family


def test_created_before_the_login_manager_it_checks_on_flask_logins_signal(database_uri: str, tmp_path: Any) -> None:
    app = build_login_app(database_uri, tmp_path, bind_first=True)
    try:
        assert not getattr(app.login_manager._load_user, "_flask_logout_checked", False)  # type: ignore[attr-defined]
        original, thief = app.test_client(), app.test_client()
        _sign_in(original)
        _copy_jar(original, thief)
        assert thief.get("/me").status_code == 200
        original.post("/logout")
        answer = thief.get("/me")
        assert (answer.status_code, answer.get_json()) == (401, SIGNED_OUT_REVOKED)
    finally:
        get_service(app).close()


def test_one_login_manager_serves_apps_with_and_without_login_sessions(database_uri: str, tmp_path: Any) -> None:
    """The check in front of the manager's loading is the request's app's: an app without it is untouched."""
    bound = build_login_app(database_uri, tmp_path)
    manager = bound.login_manager  # type: ignore[attr-defined]
    plain = Flask("plain")
    plain.config.update(TESTING=True, SECRET_KEY=SECRET)
    manager.init_app(plain)

    @plain.post("/login")
    def login() -> Any:
        flask_login.login_user(User("alice"))
        return jsonify(signed_in=True)

    @plain.get("/me")
    @flask_login.login_required
    def me() -> Any:
        return jsonify(user=flask_login.current_user.id)

    try:
        client = plain.test_client()
        client.post("/login")
        assert client.get("/me").get_json() == {"user": "alice"}  # no store session needed: not bound
        browser = bound.test_client()
        _sign_in(browser)
        with browser.session_transaction() as sess:
            sess.pop(SESSION_KEY)
        answer = browser.get("/me")
        assert (answer.status_code, answer.get_json()) == (401, {"signed_in": False, "reason": "invalid"})
    finally:
        get_service(bound).close()


def test_a_session_found_alive_before_expires_on_time(login_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path (a session found alive here before) still compares the session's expiry."""
    client = login_app.test_client()
    _sign_in(client)
    assert client.get("/me").status_code == 200
    assert client.get("/me").status_code == 200  # hot
    config = get_service(login_app).config
    move_clock(monkeypatch, config.refresh_ttl + config.leeway + 1)
    answer = client.get("/me")
    assert (answer.status_code, answer.get_json()) == (401, {"signed_in": False, "reason": "expired"})
