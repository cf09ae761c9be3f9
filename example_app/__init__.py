"""A runnable example of flask-logout: ``flask --app example_app run``.

Every setting can be given in the environment as ``FLASK_LOGOUT_...`` (for
example ``FLASK_LOGOUT_DATABASE_URI=postgresql+psycopg://...``). On first
start it creates, in the instance folder, an SQLite store and an RS256 key
pair, and seeds:

* API client ``demo-client`` / ``demo-secret``, whitelist 127.0.0.0/8 and ::1/128;
* API client ``locked-client`` / ``locked-secret``, whitelist 203.0.113.0/24;
* user ``alice@example.com`` / ``wonderland`` for the web page and the
  Descope endpoints;
* ``GET /api/me``, protected by the bearer middleware.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, Flask, jsonify, make_response, redirect, render_template, request, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from flask_logout import (
    AuthError,
    LogoutManager,
    SsoLogin,
    cookie_required,
    current_token,
    current_token_or_none,
    get_current_user,
    get_service,
    signed_out_reason,
)
from flask_logout.cookies import clear_auth_cookies, from_foreign_page, set_session_cookies

PROJECT_ID = "P2flasklogoutdemo"
DEMO_IDP = "demo-idp"
DEMO_IDP_CLIENT_ID = "flask-logout-demo"

DEMO_CLIENTS = (
    ("demo-client", "demo-secret", ("127.0.0.0/8", "::1/128")),
    ("locked-client", "locked-secret", ("203.0.113.0/24",)),
)

#: Demo users: login id -> profile. Passwords are kept hashed, as they should be.
DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice@example.com": {"userId": "U-alice", "name": "Alice", "email": "alice@example.com", "verifiedEmail": True},
    # Signs in "through" the demo OpenID provider: sign-out answers its end-session URL.
    "sso@example.com": {"userId": "U-sso", "name": "Sso User", "email": "sso@example.com", "verifiedEmail": True},
}
_PASSWORD_HASHES = {login: generate_password_hash("wonderland", method="pbkdf2:sha256:100000") for login in DEMO_USERS}
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(), method="pbkdf2:sha256:100000")


def create_app(settings: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(
        LOGOUT_PROTECTED_PATHS=["/api"],
        LOGOUT_DIALECTS=["client", "descope", "session", "oauth"],
        LOGOUT_ALGORITHM="RS256",
        LOGOUT_DESCOPE_PROJECT_ID=PROJECT_ID,
        LOGOUT_ISSUER=PROJECT_ID,
        # The demo serves plain HTTP on 127.0.0.1; behind HTTPS set
        # FLASK_LOGOUT_COOKIE_SECURE=true (the library's default).
        LOGOUT_COOKIE_SECURE=False,
    )
    app.config.from_prefixed_env()
    if settings:
        app.config.update(settings)
    # The demo OpenID provider is this app itself: its end-session page and
    # the post-logout redirect are paths, resolved at sign-out against the
    # origin the request really came in on (never a guessed host and port,
    # where another program could be listening and receive the ID token hint).
    # The issuer is only a name here (the demo provider sends no back-channel
    # logout tokens); DEMO_BASE_URL or the port `flask run` serves sets it.
    app.config.setdefault(
        "LOGOUT_OIDC_PROVIDERS",
        {
            DEMO_IDP: {
                "issuer": f"{_base_url(app)}/{DEMO_IDP}",
                "client_id": DEMO_IDP_CLIENT_ID,
                "end_session_endpoint": f"/{DEMO_IDP}/session/end",
            }
        },
    )
    app.config.setdefault("LOGOUT_POST_LOGOUT_REDIRECT_URI", "/")
    if app.config["LOGOUT_ALGORITHM"].startswith(("RS", "PS", "ES")) and not app.config.get("LOGOUT_PRIVATE_KEY"):
        app.config["LOGOUT_PRIVATE_KEY"] = _instance_file(app.instance_path, "signing_key.pem", _new_rsa_pem)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_file(app.instance_path, "secret_key", lambda: secrets.token_urlsafe(48))

    manager = LogoutManager(app)

    @manager.credentials_loader
    def check_password(login_id: str, password: str) -> dict[str, Any] | None:
        known = _PASSWORD_HASHES.get(login_id)
        # Hash even for unknown users, so timing does not tell who exists.
        ok = check_password_hash(known or _DUMMY_HASH, password)
        if not (known and ok):
            return None
        user = dict(DEMO_USERS[login_id])
        if login_id == "sso@example.com":
            user["sso"] = _demo_provider_login(app, user["userId"])
        return user

    @manager.user_loader
    def load_user(user_id: str) -> dict[str, Any] | None:
        return next((u for u in DEMO_USERS.values() if u["userId"] == user_id), None)

    _seed(app)

    app.register_blueprint(_web_pages(manager))

    @app.get("/api/me")
    def me() -> Any:
        token = current_token()  # the middleware verified it: never None here
        if token.cid is not None:
            return jsonify({"success": True, "data": {"client_id": token.cid}})
        return jsonify({"success": True, "data": {"user_id": token.sub}})

    @app.get(f"/{DEMO_IDP}/session/end")
    def demo_idp_end_session() -> Any:
        """The demo OpenID provider's end-session page (RP-Initiated Logout)."""
        back = request.args.get("post_logout_redirect_uri", "")
        if back != urllib.parse.urljoin(request.host_url, app.config["LOGOUT_POST_LOGOUT_REDIRECT_URI"]):
            back = ""  # a provider only redirects to registered URIs
        return render_template("idp_signed_out.html", back=back, state=request.args.get("state", ""))

    # The OpenAPI description of every endpoint above, when run from a checkout.
    spec_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "openapi.yaml")
    if os.path.isfile(spec_path):
        with open(spec_path, encoding="utf-8") as spec_file:
            spec = spec_file.read()

        @app.get("/openapi.yaml")
        def openapi_description() -> Any:
            return app.response_class(spec, mimetype="application/yaml")

    @app.template_filter("when")
    def when(epoch: float) -> str:
        import datetime

        return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    return app


def _web_pages(manager: LogoutManager) -> Blueprint:
    """The web page: forms that work without JavaScript, on the session cookies.

    ``@cookie_required`` reads the session cookie, renews it silently with
    the refresh cookie, clears dead ones and checks the origin of every POST.
    """
    web = Blueprint("web", __name__)

    @web.errorhandler(AuthError)
    def _back_to_the_page(error: AuthError) -> Any:
        # A form post whose session is gone, or that came from another origin:
        # the page (signed out), not an API envelope.
        if error.status == 403:
            return render_page(error=error.message, status=403)
        return redirect(url_for("web.index"), code=303)

    def render_page(error: str | None = None, status: int = 200, confirm: bool = False) -> Any:
        token = current_token_or_none()
        service = get_service()
        sessions = service.live_sessions(token.sub) if token is not None and token.cid is None else []
        response = make_response(
            render_template(
                "index.html",
                user=get_current_user() if token is not None else None,
                token=token,
                sessions=sessions,
                project_id=PROJECT_ID,
                reason=signed_out_reason(),
                error=error,
                confirm=confirm,
            ),
            status,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    @web.get("/")
    @cookie_required(optional=True)
    def index() -> Any:
        """Who is signed in, their sessions (device, address), and the sign-out forms."""
        return render_page()

    @web.post("/signin")
    def sign_in() -> Any:
        service = get_service()
        if from_foreign_page(request.environ, service.config.trusted_origins):
            return render_page(error="Sign-in requests must come from this site's origin", status=403)
        check = manager.check_credentials
        assert check is not None
        user = check(request.form.get("loginId", ""), request.form.get("password", ""))
        if user is None:
            return render_page(error="The email or password is wrong", status=401)
        pair = service.issue_tokens(
            user["userId"],
            sso=user.get("sso"),
            user_agent=request.user_agent.string or None,
            ip=service.request_ip(request.environ),
        )
        response = redirect(url_for("web.index"), code=303)
        set_session_cookies(response, service.config, pair.access_token, pair.refresh_token)
        return response

    def signed_out() -> Any:
        response = redirect(url_for("web.index"), code=303)
        clear_auth_cookies(response, get_service().config.cookies)
        return response

    @web.post("/signout")
    @cookie_required
    def sign_out() -> Any:
        get_service().revoke_family(current_token().fid)
        return signed_out()

    @web.post("/signout-everywhere")
    @cookie_required
    def sign_out_everywhere() -> Any:
        if request.form.get("confirm") != "yes":
            return render_page(confirm=True)  # asks first, with or without JavaScript
        get_service().revoke_user(current_token().sub)
        return signed_out()

    @web.post("/sessions/end")
    @cookie_required
    def end_session() -> Any:
        """End one other session of this user (a lost phone, say)."""
        token = current_token()
        family = request.form.get("session", "")
        service = get_service()
        if family != token.fid and any(s.family == family for s in service.live_sessions(token.sub)):
            service.revoke_family(family)
        return redirect(url_for("web.index"), code=303)

    @web.app_template_filter("device")
    def device(user_agent: str | None) -> str:
        """A short name for a user agent: browser and system, else the start of it."""
        if not user_agent:
            return "unknown device"
        browser = next((b for b in ("Edg", "Firefox", "Chrome", "Safari", "curl", "python") if b in user_agent), None)
        system = next((o for o in ("Android", "iPhone", "Windows", "Mac OS", "Linux") if o in user_agent), None)
        if browser is None:
            return user_agent[:40]
        name = {"Edg": "Edge", "python": "Python"}.get(browser, browser)
        if "HeadlessChrome" in user_agent:
            name = "Headless Chrome"
        return f"{name} on {system}" if system else name

    return web


def _base_url(app: Flask) -> str:
    """Where the app says it is served: ``DEMO_BASE_URL``, else the host and
    port ``flask run`` was given (``FLASK_RUN_HOST``/``FLASK_RUN_PORT``)."""
    configured = app.config.get("DEMO_BASE_URL")
    if configured:
        return str(configured).rstrip("/")
    host = os.environ.get("FLASK_RUN_HOST", "127.0.0.1")
    port = os.environ.get("FLASK_RUN_PORT", "5000")
    return f"http://{host}:{port}"


def _demo_provider_login(app: Flask, user_id: str) -> SsoLogin:
    """What a real OpenID callback would record: the provider's ID token and session id.

    The demo provider's ID token is signed with the app's own key; a real
    one comes from the provider's token endpoint.
    """
    import time

    import jwt

    provider = app.config["LOGOUT_OIDC_PROVIDERS"][DEMO_IDP]
    sid = secrets.token_urlsafe(12)
    now = int(time.time())
    claims = {
        "iss": provider["issuer"],
        "aud": DEMO_IDP_CLIENT_ID,
        "sub": user_id,
        "sid": sid,
        "iat": now,
        "exp": now + 300,
    }
    id_token = jwt.encode(claims, app.config["LOGOUT_PRIVATE_KEY"], algorithm="RS256")
    return SsoLogin(provider=DEMO_IDP, id_token=id_token, sid=sid, sub=user_id)


def _new_rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _instance_file(instance_path: str, name: str, make: Any) -> str:
    """A secret kept in the instance folder, made once and shared by every worker."""
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, name)
    if not os.path.exists(path):
        # Write aside, then link into place: link() fails if another worker
        # won the race, and nobody ever reads a half-written file.
        temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as new:
            new.write(make())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    with open(path, encoding="ascii") as existing:
        return existing.read().strip()


def _seed(app: Flask) -> None:
    service = get_service(app)
    for client_id, secret, cidrs in DEMO_CLIENTS:
        if service.store.get_client(client_id) is None:
            service.register_client(client_id, secret, cidrs)
