"""Settings: read once, validated once, frozen.

Every ``LOGOUT_*`` setting is read from a mapping (a Flask ``app.config`` or a
plain ``dict`` for WSGI apps) exactly once, when the extension or the core is
built. A bad value raises :class:`ConfigError` at start-up, naming the setting
and the value, instead of surfacing as a 500 on the first request. Request code
only ever reads attributes of the frozen :class:`LogoutConfig`; nothing looks a
setting up per request.

Secrets are never echoed back in an error message: only their length is.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .cidr import CidrSet

logger = logging.getLogger("flask_logout")

#: Algorithms a deployment may choose. A fixed list (RFC 8725 section 3.1):
#: ``none`` and anything else is refused at start-up, and decoding only ever
#: accepts the one configured algorithm.
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
ALGORITHMS = HMAC_ALGORITHMS + RSA_ALGORITHMS + tuple(EC_ALGORITHMS)

#: Minimum HMAC key length in bytes: RFC 7518 section 3.2 asks for a key at
#: least as long as the hash output.
MIN_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

#: API dialects the extension can register.
DIALECTS = ("client", "descope", "session", "oauth")

DEFAULT_ACCESS_TTL = 3600
DEFAULT_REFRESH_TTL = 30 * 24 * 3600
#: Client secrets are machine-generated and high-entropy: a keyed fast hash
#: (HMAC-SHA256) is enough, and a sign-in attempt costs microseconds, not the
#: 0.1 s and 32 MiB of scrypt (see docs/decisions.md).
HMAC_SECRET_HASH = "hmac-sha256"  # noqa: S105 (a method name, not a secret)
DEFAULT_SECRET_HASH_METHOD = HMAC_SECRET_HASH
#: Label of the HMAC key derived for client secrets (never the signing key itself).
CLIENT_SECRET_KEY_LABEL = b"flask-logout client secret v1"
DEFAULT_TOKEN_CACHE_SIZE = 10_000


class ConfigError(ValueError):
    """A ``LOGOUT_*`` setting is missing or invalid; raised at start-up."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


@dataclass(frozen=True)
class SettingDoc:
    """One row of the configuration reference (used by docs and tests)."""

    name: str
    type: str
    default: str
    meaning: str


#: The configuration reference. ``docs/configuration.md`` and the README table
#: are checked against this list by the test suite, so they cannot drift.
SETTINGS: tuple[SettingDoc, ...] = (
    SettingDoc(
        "LOGOUT_SECRET_KEY",
        "str | bytes",
        "`SECRET_KEY`",
        "HMAC key for HS* algorithms; at least as many bytes as the hash output (32 for HS256).",
    ),
    SettingDoc(
        "LOGOUT_ALGORITHM",
        "str",
        "`HS256`",
        "Signing algorithm, one of " + ", ".join(ALGORITHMS) + ". `none` is never accepted.",
    ),
    SettingDoc("LOGOUT_PRIVATE_KEY", "PEM str | bytes", "none", "Private key for RS*/PS*/ES* algorithms."),
    SettingDoc(
        "LOGOUT_PUBLIC_KEY",
        "PEM str | bytes",
        "derived from the private key",
        "Public key used to verify RS*/PS*/ES* tokens.",
    ),
    SettingDoc(
        "LOGOUT_KEY_ID",
        "str",
        "RFC 7638 thumbprint of the public key (asymmetric only)",
        "`kid` header put on issued tokens and required on verified ones.",
    ),
    SettingDoc("LOGOUT_ACCESS_TOKEN_TTL", "int seconds | timedelta", "`3600`", "Lifetime of access tokens."),
    SettingDoc(
        "LOGOUT_REFRESH_TOKEN_TTL", "int seconds | timedelta", "`2592000` (30 days)", "Lifetime of refresh tokens."
    ),
    SettingDoc("LOGOUT_ISSUER", "str", "none", "`iss` claim put on and required of every token."),
    SettingDoc("LOGOUT_AUDIENCE", "str", "none", "`aud` claim put on and required of every token."),
    SettingDoc("LOGOUT_LEEWAY", "int seconds", "`0`", "Clock skew tolerated when checking `exp`, `iat` and `nbf`."),
    SettingDoc(
        "LOGOUT_DATABASE_URI",
        "str",
        "`sqlite:///<instance>/flask_logout.sqlite3`",
        "Store URL when no Flask-SQLAlchemy `db` is passed to the extension.",
    ),
    SettingDoc(
        "LOGOUT_PROTECTED_PATHS",
        "list[str]",
        "`[]`",
        "Path prefixes the bearer middleware guards (`/api` guards `/api` and `/api/...`).",
    ),
    SettingDoc(
        "LOGOUT_EXEMPT_METHODS",
        "list[str]",
        '`["OPTIONS"]`',
        "Methods passed through unauthenticated (CORS pre-flight).",
    ),
    SettingDoc(
        "LOGOUT_TRUSTED_PROXIES",
        "int",
        "`0`",
        "How many reverse proxies in front of the app append to `X-Forwarded-For`; "
        "0 trusts none and uses `REMOTE_ADDR`.",
    ),
    SettingDoc(
        "LOGOUT_TRUSTED_PROXY_CIDRS",
        "list[str]",
        "`[]` (any peer)",
        "If set, `X-Forwarded-For` is only read when `REMOTE_ADDR` is inside one of these ranges.",
    ),
    SettingDoc(
        "LOGOUT_DIALECTS",
        "list[str]",
        '`["client"]`',
        "API dialects whose blueprints are registered: " + ", ".join(DIALECTS) + ".",
    ),
    SettingDoc(
        "LOGOUT_URL_PREFIXES",
        "dict[str, str]",
        "`{}` (every dialect at the root)",
        'URL prefix per dialect, e.g. `{"session": "/api/v4"}` mounts `/api/v4/session/token`; a path that '
        "starts with `/` and does not end with `/`.",
    ),
    SettingDoc(
        "LOGOUT_SESSION_HTTP_STATUS",
        "bool",
        "`False`",
        "Session dialect failures: `False` answers HTTP 200 with the error in `code`, as Cloudreve and its front "
        "end do; `True` answers real HTTP statuses (400, 401, 403, 413, 501, 503) with the same body.",
    ),
    SettingDoc(
        "LOGOUT_CLIENT_SECRET_HASH",
        "str",
        "`hmac-sha256`",
        "How API client secrets are stored: `hmac-sha256` (keyed with `LOGOUT_CLIENT_SECRET_KEY`), or a "
        "werkzeug password-hash method such as `scrypt` or `pbkdf2:sha256`.",
    ),
    SettingDoc(
        "LOGOUT_CLIENT_SECRET_KEY",
        "str | bytes",
        "`LOGOUT_SECRET_KEY`, else `SECRET_KEY`",
        "Key from which the `hmac-sha256` client-secret hash key is derived; changing it invalidates every "
        "stored client secret. Required with `hmac-sha256` when neither default is set.",
    ),
    SettingDoc(
        "LOGOUT_TOKEN_CACHE_SIZE",
        "int",
        "`10000`",
        "How many verified token strings each process keeps, to skip re-decoding them; 0 disables.",
    ),
    SettingDoc(
        "LOGOUT_DESCOPE_PROJECT_ID",
        "str",
        "none (required by the `descope` dialect)",
        "Project id clients send as `Bearer <ProjectID>:<RefreshJWT>`; keys are published at `/v2/keys/<ProjectID>`.",
    ),
    SettingDoc("LOGOUT_SESSION_COOKIE_NAME", "str", "`DS`", "Name of the session (access token) cookie."),
    SettingDoc("LOGOUT_REFRESH_COOKIE_NAME", "str", "`DSR`", "Name of the refresh token cookie."),
    SettingDoc("LOGOUT_COOKIE_DOMAIN", "str", "none (host-only)", "`Domain` of the refresh cookie (`cookieDomain`)."),
    SettingDoc(
        "LOGOUT_SESSION_COOKIE_DOMAIN",
        "str",
        "`LOGOUT_COOKIE_DOMAIN`",
        "`Domain` of the session cookie (`sessionCookieDomain`).",
    ),
    SettingDoc("LOGOUT_COOKIE_PATH", "str", "`/`", "`Path` of both cookies (`cookiePath`)."),
    SettingDoc("LOGOUT_COOKIE_SECURE", "bool", "`True`", "`Secure` flag of both cookies; keep it on behind HTTPS."),
    SettingDoc("LOGOUT_COOKIE_SAMESITE", "str", "`Lax`", "`SameSite` of both cookies: `Strict`, `Lax` or `None`."),
    SettingDoc(
        "LOGOUT_CLEAR_SITE_DATA",
        "bool",
        "`False`",
        'Send `Clear-Site-Data: "cookies", "storage"` on sign-out (clears every cookie of the site).',
    ),
    SettingDoc(
        "LOGOUT_REUSE_GRACE_SECONDS",
        "int seconds",
        "`5`",
        "A rotated refresh token presented again within this window is refused; after it, its whole family "
        "is revoked (reuse detection).",
    ),
    SettingDoc(
        "LOGOUT_KEYRING",
        "bool",
        "`False`",
        "Keep RS/PS/ES signing keys in the store so `flask logout keys rotate` can rotate them; retired keys "
        "stay published until the tokens they signed have expired.",
    ),
    SettingDoc(
        "LOGOUT_KEYRING_PASSPHRASE",
        "str",
        "none",
        "Encrypts the private keys kept in the store (PKCS#8); without it they are stored unencrypted.",
    ),
    SettingDoc(
        "LOGOUT_CREATE_TABLES",
        "bool",
        "`True`",
        "Create the store's tables at start-up if missing; set False when migrations (Flask-Migrate) own the schema.",
    ),
    SettingDoc(
        "LOGOUT_COOKIE_AUTH",
        "bool",
        "`False`",
        "The bearer middleware also accepts the session cookie on `LOGOUT_PROTECTED_PATHS` (browser pages and "
        "same-site APIs): a lapsed one is renewed with the refresh cookie, dead ones are cleared, and methods other "
        "than GET, HEAD, OPTIONS and TRACE must come from the site's origin or `LOGOUT_TRUSTED_ORIGINS`.",
    ),
    SettingDoc(
        "LOGOUT_STRICT",
        "bool",
        "`False`",
        "Check the store on every request instead of this process's in-memory replica of revocations.",
    ),
    SettingDoc(
        "LOGOUT_SYNC_INTERVAL",
        "float seconds",
        "`1.0`",
        "How often each process polls the store's revocation log (PostgreSQL also pushes at once).",
    ),
    SettingDoc(
        "LOGOUT_MAX_STALENESS",
        "float seconds",
        "`10.0` (at least 3 x the sync interval)",
        "Past this long without a successful sync, requests are refused (503) rather than trusted.",
    ),
    SettingDoc(
        "LOGOUT_PUSH",
        "bool",
        "`True`",
        "Push revocations so other processes see them within milliseconds: PostgreSQL LISTEN/NOTIFY, or Redis "
        "pub/sub with `LOGOUT_REDIS_URL`.",
    ),
    SettingDoc(
        "LOGOUT_STORE_TIMEOUT",
        "float seconds",
        "`3.0`",
        "Bound on each wait on the store: connecting, each statement (PostgreSQL `statement_timeout`), a "
        "sign-out's write, SQLite's busy wait; past it the request answers 503. See docs/reliability.md.",
    ),
    SettingDoc(
        "LOGOUT_PUSH_HEARTBEAT",
        "float seconds",
        "`5.0`",
        "How often the LISTEN connection sends itself a NOTIFY; one not back within `LOGOUT_STORE_TIMEOUT` "
        "means the connection is dead, and it is reopened.",
    ),
    SettingDoc(
        "LOGOUT_REDIS_URL",
        "str",
        "none",
        "Push revocations through Redis pub/sub (`redis://host:6379/0`) instead of PostgreSQL LISTEN/NOTIFY: "
        "for MariaDB and SQLite stores, poolers in transaction mode, or where Redis is there anyway. "
        "Needs `flask-logout[redis]`.",
    ),
    SettingDoc(
        "LOGOUT_PUSH_CHANNEL",
        "str",
        "`flask_logout`",
        "The Redis channel of `LOGOUT_REDIS_URL`; deployments sharing one Redis each need their own.",
    ),
    SettingDoc(
        "LOGOUT_HEALTH_PATH",
        "str",
        "none",
        "If set (e.g. `/healthz`), the extension serves the replica's health there: 200 when fresh, 503 when stale.",
    ),
    SettingDoc(
        "LOGOUT_PURGE_INTERVAL",
        "float seconds",
        "`3600`",
        "How often a process deletes expired revocation records and token rows; 0 leaves it to `flask logout purge`.",
    ),
    SettingDoc(
        "LOGOUT_OIDC_PROVIDERS",
        "dict",
        "`{}`",
        "OpenID providers by name: `issuer`, `client_id`, and optionally `end_session_endpoint` (a URL, or a path "
        "on this server), `jwks_uri` "
        "(else read once from the discovery document), `algorithms`, `logout_token_max_age`.",
    ),
    SettingDoc(
        "LOGOUT_POST_LOGOUT_REDIRECT_URI",
        "str",
        "none",
        "`post_logout_redirect_uri` sent to a provider's end-session endpoint on SSO sign-out; an absolute path "
        "(`/`) is resolved against the origin the sign-out request came in on.",
    ),
    SettingDoc(
        "LOGOUT_TRUSTED_ORIGINS",
        "list[str]",
        "`[]` (the request's own origin only)",
        "Further origins (`https://app.example.com`) allowed to send cookie-authenticated sign-outs.",
    ),
    SettingDoc(
        "LOGOUT_CORS_ORIGINS",
        "list[str]",
        "`[]` (no CORS)",
        "Origins whose pages may call the `descope` endpoints (`/v1/...`, `/v2/...`) and the protected paths "
        "from the browser (CORS with credentials); they are trusted like `LOGOUT_TRUSTED_ORIGINS`.",
    ),
    SettingDoc(
        "LOGOUT_COOKIE_PARTITIONED",
        "bool",
        "`False`",
        "`Partitioned` attribute on both cookies (CHIPS), for an API embedded on another site; needs "
        "`LOGOUT_COOKIE_SECURE`.",
    ),
    SettingDoc(
        "LOGOUT_SIGNIN_RATE_LIMIT",
        "str",
        "none (no limit)",
        "Per-IP limit on `POST /v1/auth/password/signin`, e.g. `10/minute` (the `limits` notation); over it the "
        "answer is 429 `E130429` with `Retry-After`.",
    ),
    SettingDoc(
        "LOGOUT_RATE_LIMIT_STORAGE_URI",
        "str",
        "`memory://`",
        "Where the sign-in counters live: `memory://` (per process) or shared, e.g. `redis://127.0.0.1:6379` "
        "(needs the `redis` extra).",
    ),
    SettingDoc(
        "LOGOUT_DESCOPE_REFRESH_ROTATION",
        "bool",
        "`False` (as Descope projects by default)",
        "Whether `POST /v1/auth/refresh` rotates the refresh token (reuse detection after "
        "`LOGOUT_REUSE_GRACE_SECONDS`); off, it answers a new session JWT and the same refresh JWT.",
    ),
)

KNOWN_SETTINGS = frozenset(s.name for s in SETTINGS)


@dataclass(frozen=True)
class LogoutConfig:
    """The validated, immutable settings of one deployment."""

    algorithm: str = "HS256"
    signing_key: Any = field(default=None, repr=False)
    verifying_key: Any = field(default=None, repr=False)
    key_id: str | None = None
    access_ttl: int = DEFAULT_ACCESS_TTL
    refresh_ttl: int = DEFAULT_REFRESH_TTL
    issuer: str | None = None
    audience: str | None = None
    leeway: int = 0
    database_uri: str | None = None
    protected_paths: tuple[str, ...] = ()
    exempt_methods: frozenset[str] = frozenset({"OPTIONS"})
    trusted_proxies: int = 0
    trusted_proxy_cidrs: CidrSet | None = None
    dialects: tuple[str, ...] = ("client",)
    url_prefixes: dict[str, str] = field(default_factory=dict)
    session_http_status: bool = False
    secret_hash_method: str = DEFAULT_SECRET_HASH_METHOD
    client_secret_key: bytes | None = field(default=None, repr=False)
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE
    descope_project_id: str | None = None
    cookies: CookieSettings = field(default_factory=lambda: CookieSettings())
    trusted_origins: frozenset[str] = frozenset()
    reuse_grace: int = 5
    strict: bool = False
    cookie_auth: bool = False
    sync_interval: float = 1.0
    max_staleness: float = 10.0
    push: bool = True
    purge_interval: float = 3600.0
    store_timeout: float = 3.0
    push_heartbeat: float = 5.0
    health_path: str | None = None
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    push_channel: str = "flask_logout"
    create_tables: bool = True
    keyring: bool = False
    keyring_passphrase: bytes | None = field(default=None, repr=False)
    oidc_providers: dict[str, ProviderSettings] = field(default_factory=dict)
    post_logout_redirect_uri: str | None = None
    cors_origins: frozenset[str] = frozenset()
    signin_rate_limit: str | None = None
    rate_limit_storage_uri: str = "memory://"
    descope_refresh_rotation: bool = False


@dataclass(frozen=True)
class ProviderSettings:
    """One OpenID provider, from ``LOGOUT_OIDC_PROVIDERS``.

    ``end_session_endpoint`` and ``jwks_uri`` may be left out: they are then
    read once from ``<issuer>/.well-known/openid-configuration``.
    """

    name: str
    issuer: str
    client_id: str
    end_session_endpoint: str | None = None
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    logout_token_max_age: int = 300


@dataclass(frozen=True)
class CookieSettings:
    """Names and attributes of the session and refresh cookies.

    Clearing a cookie only works when ``Path``, ``Domain``, ``Secure`` and
    ``SameSite`` match the ones it was set with, so setting and clearing both
    read them from here.
    """

    session_name: str = "DS"
    refresh_name: str = "DSR"
    domain: str | None = None
    session_domain: str | None = None
    path: str = "/"
    secure: bool = True
    samesite: str = "Lax"
    clear_site_data: bool = False
    partitioned: bool = False


def load_config(settings: Mapping[str, Any], *, default_database_uri: str | None = None) -> LogoutConfig:
    """Validate ``settings`` and return a frozen :class:`LogoutConfig`.

    ``settings`` is a Flask ``app.config`` or any mapping with the same keys.
    Raises :class:`ConfigError` naming the first bad setting.
    """
    _warn_unknown(settings)
    algorithm = _algorithm(settings.get("LOGOUT_ALGORITHM", "HS256"))
    keyring = _bool(settings, "LOGOUT_KEYRING", False)
    if keyring and algorithm in HMAC_ALGORITHMS:
        raise ConfigError(
            "LOGOUT_KEYRING", f"needs an asymmetric LOGOUT_ALGORITHM (RS256, ES256, ...), not {algorithm}"
        )
    if keyring and not settings.get("LOGOUT_PRIVATE_KEY"):
        signing_key, verifying_key, key_id = None, None, None  # the keyring in the store provides them
    else:
        signing_key, verifying_key, key_id = _keys(settings, algorithm)
    passphrase = settings.get("LOGOUT_KEYRING_PASSPHRASE")
    if passphrase is not None and (not isinstance(passphrase, (str, bytes)) or len(passphrase) < 16):
        raise ConfigError("LOGOUT_KEYRING_PASSPHRASE", "must be a string of at least 16 characters")
    access_ttl = _seconds(settings, "LOGOUT_ACCESS_TOKEN_TTL", DEFAULT_ACCESS_TTL, positive=True)
    refresh_ttl = _seconds(settings, "LOGOUT_REFRESH_TOKEN_TTL", DEFAULT_REFRESH_TTL, positive=True)
    leeway = _seconds(settings, "LOGOUT_LEEWAY", 0, positive=False)
    proxy_cidrs = _strings(settings, "LOGOUT_TRUSTED_PROXY_CIDRS", ())
    dialects = _strings(settings, "LOGOUT_DIALECTS", ("client",))
    for dialect in dialects:
        if dialect not in DIALECTS:
            raise ConfigError("LOGOUT_DIALECTS", f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}")
    project_id = _optional_str(settings, "LOGOUT_DESCOPE_PROJECT_ID")
    if "descope" in dialects:
        if project_id is None:
            raise ConfigError("LOGOUT_DESCOPE_PROJECT_ID", "missing: the descope dialect needs a project id")
        if algorithm in HMAC_ALGORITHMS:
            raise ConfigError(
                "LOGOUT_ALGORITHM",
                f"{algorithm} cannot be used with the descope dialect: its clients verify tokens with the "
                "published public keys, so choose RS256 or ES256 and set LOGOUT_PRIVATE_KEY",
            )
    if project_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", project_id):
        raise ConfigError("LOGOUT_DESCOPE_PROJECT_ID", f"must be 1-128 letters, digits, '_' or '-', not {project_id!r}")
    secret_hash_method = _hash_method(settings.get("LOGOUT_CLIENT_SECRET_HASH", DEFAULT_SECRET_HASH_METHOD))
    protected_paths = _paths(settings)
    url_prefixes = _url_prefixes(settings, protected_paths)
    cors_origins = _origins(settings, "LOGOUT_CORS_ORIGINS")
    return LogoutConfig(
        algorithm=algorithm,
        signing_key=signing_key,
        verifying_key=verifying_key,
        key_id=key_id,
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        # The descope dialect's clients require ``iss`` to name the project.
        issuer=_optional_str(settings, "LOGOUT_ISSUER") or (project_id if "descope" in dialects else None),
        audience=_optional_str(settings, "LOGOUT_AUDIENCE"),
        leeway=leeway,
        database_uri=_optional_str(settings, "LOGOUT_DATABASE_URI") or default_database_uri,
        protected_paths=protected_paths,
        exempt_methods=frozenset(m.upper() for m in _strings(settings, "LOGOUT_EXEMPT_METHODS", ("OPTIONS",))),
        trusted_proxies=_int(settings, "LOGOUT_TRUSTED_PROXIES", 0),
        trusted_proxy_cidrs=_cidrs("LOGOUT_TRUSTED_PROXY_CIDRS", proxy_cidrs) if proxy_cidrs else None,
        dialects=dialects,
        url_prefixes=url_prefixes,
        session_http_status=_bool(settings, "LOGOUT_SESSION_HTTP_STATUS", False),
        secret_hash_method=secret_hash_method,
        client_secret_key=_client_secret_key(settings, secret_hash_method),
        token_cache_size=_int(settings, "LOGOUT_TOKEN_CACHE_SIZE", DEFAULT_TOKEN_CACHE_SIZE),
        descope_project_id=project_id,
        cookies=_cookie_settings(settings),
        trusted_origins=_origins(settings) | cors_origins,
        reuse_grace=_seconds(settings, "LOGOUT_REUSE_GRACE_SECONDS", 5, positive=False),
        **_replication(settings),
        oidc_providers=_providers(settings),
        create_tables=_bool(settings, "LOGOUT_CREATE_TABLES", True),
        keyring=keyring,
        keyring_passphrase=_bytes(passphrase) if passphrase else None,
        post_logout_redirect_uri=_url(settings, "LOGOUT_POST_LOGOUT_REDIRECT_URI", allow_path=True),
        cors_origins=cors_origins,
        **_rate_limit(settings),
        descope_refresh_rotation=_bool(settings, "LOGOUT_DESCOPE_REFRESH_ROTATION", False),
    )


_URL = re.compile(r"https?://[^\s/?#]+(/[^\s#]*)?")
#: An absolute path on this server: one leading slash (``//host`` is another server).
_PATH = re.compile(r"/(?![/\\])[^\s#]*")
_PROVIDER_KEYS = {"issuer", "client_id", "end_session_endpoint", "jwks_uri", "algorithms", "logout_token_max_age"}


def _url(settings: Mapping[str, Any], name: str, value: Any = None, *, allow_path: bool = False) -> str | None:
    """An http(s) URL; with ``allow_path`` also an absolute path (``/signed-out``),
    resolved at request time against the origin the request came in on."""
    value = settings.get(name) if value is None else value
    if value is None or value == "":
        return None
    if isinstance(value, str) and allow_path and _PATH.fullmatch(value):
        return value
    if not isinstance(value, str) or not _URL.fullmatch(value):
        expected = "an http(s) URL or an absolute path" if allow_path else "an http(s) URL"
        raise ConfigError(name, f"must be {expected}, not {value!r}")
    return value


def _mapping(settings: Mapping[str, Any], name: str, what: str) -> Mapping[Any, Any]:
    """A setting that maps names to values: a dict, or the same as JSON (from the environment)."""
    raw = settings.get(name) or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(name, "is not valid JSON") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(name, f"must map {what}, not {raw!r}")
    return raw


def _providers(settings: Mapping[str, Any]) -> dict[str, ProviderSettings]:
    name = "LOGOUT_OIDC_PROVIDERS"
    raw = _mapping(settings, name, "provider names to settings")
    providers = {}
    for key, entry in raw.items():
        where = f"{name}[{key!r}]"
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key):
            raise ConfigError(name, f"provider name {key!r} must be 1-64 letters, digits, '_' or '-'")
        if not isinstance(entry, Mapping):
            raise ConfigError(where, f"must be a mapping, not {entry!r}")
        unknown = set(entry) - _PROVIDER_KEYS
        if unknown:
            raise ConfigError(where, f"unknown keys {sorted(unknown)}; allowed: {sorted(_PROVIDER_KEYS)}")
        client_id = entry.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError(where, "needs a client_id (the audience of its logout tokens)")
        issuer = _url(settings, where + "['issuer']", entry.get("issuer"))
        if issuer is None:
            raise ConfigError(where, "needs an issuer URL")
        algorithms = tuple(entry.get("algorithms", ("RS256", "ES256")))
        for algorithm in algorithms:
            if algorithm not in RSA_ALGORITHMS + tuple(EC_ALGORITHMS):
                raise ConfigError(where, f"algorithm {algorithm!r} is not allowed for provider tokens")
        max_age = entry.get("logout_token_max_age", 300)
        if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age <= 0:
            raise ConfigError(where, f"logout_token_max_age must be a positive number of seconds, not {max_age!r}")
        providers[key] = ProviderSettings(
            name=key,
            issuer=issuer,
            client_id=client_id,
            end_session_endpoint=_url(
                settings, where + "['end_session_endpoint']", entry.get("end_session_endpoint"), allow_path=True
            ),
            jwks_uri=_url(settings, where + "['jwks_uri']", entry.get("jwks_uri")),
            algorithms=algorithms,
            logout_token_max_age=max_age,
        )
    return providers


_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 6265 token


def _cookie_settings(settings: Mapping[str, Any]) -> CookieSettings:
    names = {}
    for setting, default in (("LOGOUT_SESSION_COOKIE_NAME", "DS"), ("LOGOUT_REFRESH_COOKIE_NAME", "DSR")):
        name = settings.get(setting, default)
        if not isinstance(name, str) or not _COOKIE_NAME.fullmatch(name):
            raise ConfigError(setting, f"not a valid cookie name: {name!r}")
        names[setting] = name
    if names["LOGOUT_SESSION_COOKIE_NAME"] == names["LOGOUT_REFRESH_COOKIE_NAME"]:
        raise ConfigError("LOGOUT_REFRESH_COOKIE_NAME", "must differ from LOGOUT_SESSION_COOKIE_NAME")
    domain = _optional_str(settings, "LOGOUT_COOKIE_DOMAIN")
    session_domain = _optional_str(settings, "LOGOUT_SESSION_COOKIE_DOMAIN") or domain
    path = settings.get("LOGOUT_COOKIE_PATH", "/")
    if not isinstance(path, str) or not path.startswith("/") or ";" in path:
        raise ConfigError("LOGOUT_COOKIE_PATH", f"must be a path starting with '/', not {path!r}")
    samesite = settings.get("LOGOUT_COOKIE_SAMESITE", "Lax")
    if not isinstance(samesite, str) or samesite.capitalize() not in ("Strict", "Lax", "None"):
        raise ConfigError("LOGOUT_COOKIE_SAMESITE", f"must be Strict, Lax or None, not {samesite!r}")
    secure = _bool(settings, "LOGOUT_COOKIE_SECURE", True)
    if samesite.capitalize() == "None" and not secure:
        raise ConfigError("LOGOUT_COOKIE_SAMESITE", "None requires LOGOUT_COOKIE_SECURE = True (browsers refuse it)")
    return CookieSettings(
        session_name=names["LOGOUT_SESSION_COOKIE_NAME"],
        refresh_name=names["LOGOUT_REFRESH_COOKIE_NAME"],
        domain=domain,
        session_domain=session_domain,
        path=path,
        secure=secure,
        samesite=samesite.capitalize(),
        clear_site_data=_bool(settings, "LOGOUT_CLEAR_SITE_DATA", False),
        partitioned=_partitioned(settings, secure),
    )


_PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+")


def _url_prefixes(settings: Mapping[str, Any], protected: tuple[str, ...]) -> dict[str, str]:
    """``LOGOUT_URL_PREFIXES``: dialect name -> a path like ``/api/v4`` (no trailing '/').

    A prefix inside a protected path is refused: the bearer middleware would
    then demand an access token of sign-in, refresh and sign-out, which
    cannot have one.
    """
    name = "LOGOUT_URL_PREFIXES"
    raw = _mapping(settings, name, "dialect names to path prefixes")
    prefixes = {}
    for dialect, prefix in raw.items():
        if dialect not in DIALECTS:
            raise ConfigError(name, f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}")
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or {".", ".."} & set(prefix.split("/")):
            raise ConfigError(
                f"{name}[{dialect!r}]",
                f"must be a path that starts with '/' and does not end with '/' (like '/api/v4'), not {prefix!r}",
            )
        for path in protected:
            base = path.rstrip("/")
            if prefix == base or prefix.startswith(base + "/"):
                raise ConfigError(
                    f"{name}[{dialect!r}]",
                    f"{prefix!r} is inside LOGOUT_PROTECTED_PATHS entry {path!r}: the bearer middleware would refuse "
                    "the dialect's sign-in, refresh and sign-out; protect narrower paths (such as '/api/v4/file')",
                )
        prefixes[dialect] = prefix
    return prefixes


def _partitioned(settings: Mapping[str, Any], secure: bool) -> bool:
    partitioned = _bool(settings, "LOGOUT_COOKIE_PARTITIONED", False)
    if partitioned and not secure:
        raise ConfigError("LOGOUT_COOKIE_PARTITIONED", "requires LOGOUT_COOKIE_SECURE = True (browsers refuse it)")
    return partitioned


def _origins(settings: Mapping[str, Any], name: str = "LOGOUT_TRUSTED_ORIGINS") -> frozenset[str]:
    origins = set()
    for origin in _strings(settings, name, ()):
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(name, f"{origin!r} is not an origin like https://app.example.com")
        origins.add(origin.lower())
    return frozenset(origins)


def _rate_limit(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``LOGOUT_SIGNIN_RATE_LIMIT`` (``limits`` notation) and its storage, checked by the ``limits`` library."""
    from limits import parse_many
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    limit = _optional_str(settings, "LOGOUT_SIGNIN_RATE_LIMIT")
    if limit is not None:
        try:
            parse_many(limit)
        except ValueError:
            raise ConfigError(
                "LOGOUT_SIGNIN_RATE_LIMIT", f"not a rate limit like '10/minute' or '5 per second': {limit!r}"
            ) from None
    uri = _optional_str(settings, "LOGOUT_RATE_LIMIT_STORAGE_URI") or "memory://"
    try:
        if uri != "memory://":
            storage_from_string(uri)  # checks the scheme and that its driver is installed; connects lazily
    except ConfigurationError:
        raise ConfigError(
            "LOGOUT_RATE_LIMIT_STORAGE_URI",
            f"unusable storage {_redacted(uri)!r}: an unknown scheme, or its driver is not installed "
            "(redis:// needs pip install 'flask-logout[redis]')",
        ) from None
    return {"signin_rate_limit": limit, "rate_limit_storage_uri": uri}


def _redacted(uri: str) -> str:
    """A storage URI without its password (``redis://:secret@host`` -> ``redis://:***@host``)."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", uri)


def _float(settings: Mapping[str, Any], name: str, default: float, *, allow_zero: bool = False) -> float:
    value = settings.get(name, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(name, f"must be a number of seconds, not {value!r}") from None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        need = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(name, f"must be {need} number of seconds, not {value!r}")
    return float(value)


def _replication(settings: Mapping[str, Any]) -> dict[str, Any]:
    interval = _float(settings, "LOGOUT_SYNC_INTERVAL", 1.0)
    staleness = _float(settings, "LOGOUT_MAX_STALENESS", max(10.0, 3 * interval))
    if staleness < 3 * interval:
        raise ConfigError(
            "LOGOUT_MAX_STALENESS",
            f"{staleness:g} s is too short for LOGOUT_SYNC_INTERVAL = {interval:g} s: it must be at least 3 x the "
            f"sync interval ({3 * interval:g} s), so that a slow sync or two do not refuse every request",
        )
    return {
        "strict": _bool(settings, "LOGOUT_STRICT", False),
        "cookie_auth": _bool(settings, "LOGOUT_COOKIE_AUTH", False),
        "sync_interval": interval,
        "max_staleness": staleness,
        "push": _bool(settings, "LOGOUT_PUSH", True),
        "purge_interval": _float(settings, "LOGOUT_PURGE_INTERVAL", 3600.0, allow_zero=True),
        **_bounds(settings),
        **_redis(settings),
    }


def _redis(settings: Mapping[str, Any]) -> dict[str, Any]:
    url = settings.get("LOGOUT_REDIS_URL")
    if url is not None:
        # Never echo the value: a Redis URL may carry a password.
        if not isinstance(url, str) or not re.match(r"(rediss?|unix)://", url):
            raise ConfigError("LOGOUT_REDIS_URL", "must be a redis://, rediss:// or unix:// URL")
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigError(
                "LOGOUT_REDIS_URL", "needs the redis package: pip install 'flask-logout[redis]'"
            ) from None
    channel = settings.get("LOGOUT_PUSH_CHANNEL", "flask_logout")
    if not isinstance(channel, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", channel):
        raise ConfigError("LOGOUT_PUSH_CHANNEL", f"must be 1 to 100 letters, digits or '_.:-', not {channel!r}")
    return {"redis_url": url, "push_channel": channel}


def _bounds(settings: Mapping[str, Any]) -> dict[str, Any]:
    timeout = _float(settings, "LOGOUT_STORE_TIMEOUT", 3.0)
    if not 0.1 <= timeout <= 300:
        raise ConfigError("LOGOUT_STORE_TIMEOUT", f"must be between 0.1 and 300 seconds, not {timeout}")
    heartbeat = _float(settings, "LOGOUT_PUSH_HEARTBEAT", 5.0)
    health_path = _optional_str(settings, "LOGOUT_HEALTH_PATH")
    if health_path is not None and not re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*", health_path):
        raise ConfigError("LOGOUT_HEALTH_PATH", f"must be a URL path starting with '/', not {health_path!r}")
    return {"store_timeout": timeout, "push_heartbeat": heartbeat, "health_path": health_path}


def _bool(settings: Mapping[str, Any], name: str, default: bool) -> bool:
    value = settings.get(name, default)
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be True or False, not {value!r}")
    return value


def _warn_unknown(settings: Mapping[str, Any]) -> None:
    # A warning, not an error: applications often keep their own LOGOUT_*
    # keys (a redirect URL, say), but a typo of one of ours deserves a hint.
    for key in settings:
        if isinstance(key, str) and key.startswith("LOGOUT_") and key not in KNOWN_SETTINGS:
            close = difflib.get_close_matches(key, KNOWN_SETTINGS, n=1, cutoff=0.85)
            if close:
                logger.warning("Unknown setting %s ignored; did you mean %s?", key, close[0])


def _algorithm(value: Any) -> str:
    if not isinstance(value, str) or value not in ALGORITHMS:
        raise ConfigError("LOGOUT_ALGORITHM", f"unsupported algorithm {value!r}; choose from {', '.join(ALGORITHMS)}")
    return value


def _keys(settings: Mapping[str, Any], algorithm: str) -> tuple[Any, Any, str | None]:
    key_id = _optional_str(settings, "LOGOUT_KEY_ID")
    if algorithm in HMAC_ALGORITHMS:
        name = "LOGOUT_SECRET_KEY"
        secret = settings.get(name)
        if secret is None:
            name, secret = "SECRET_KEY", settings.get("SECRET_KEY")
        if secret is None or secret == "":
            raise ConfigError("LOGOUT_SECRET_KEY", f"missing: set LOGOUT_SECRET_KEY or SECRET_KEY for {algorithm}")
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not isinstance(secret, bytes):
            raise ConfigError(name, f"must be str or bytes, not {type(secret).__name__}")
        needed = MIN_HMAC_KEY_BYTES[algorithm]
        if len(secret) < needed:
            raise ConfigError(
                name,
                f"{len(secret)} bytes is too short for {algorithm}; use at least {needed} random bytes "
                "(RFC 7518 section 3.2), e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'",
            )
        _not_asymmetric(name, secret)
        return secret, secret, key_id
    return _asymmetric_keys(settings, algorithm, key_id)


def _not_asymmetric(name: str, secret: bytes) -> None:
    """Refuse a public key or certificate given as an HMAC secret (RFC 8725
    section 2.1: whoever has the public key could sign), with pyjwt's own
    checks, at start-up rather than at the first token."""
    from jwt.algorithms import HMACAlgorithm
    from jwt.exceptions import InvalidKeyError

    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except InvalidKeyError:
        raise ConfigError(
            name, "is an asymmetric key or certificate, not an HMAC secret; use random bytes, or an RS/ES/PS algorithm"
        ) from None


def _asymmetric_keys(settings: Mapping[str, Any], algorithm: str, key_id: str | None) -> tuple[Any, Any, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pem = settings.get("LOGOUT_PRIVATE_KEY")
    if not pem:
        raise ConfigError("LOGOUT_PRIVATE_KEY", f"missing: {algorithm} needs a PEM private key")
    try:
        private = serialization.load_pem_private_key(_bytes(pem), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "LOGOUT_PRIVATE_KEY", f"not a readable unencrypted PEM private key ({exc.__class__.__name__})"
        ) from None
    public_pem = settings.get("LOGOUT_PUBLIC_KEY")
    if public_pem:
        try:
            public = serialization.load_pem_public_key(_bytes(public_pem))
        except (ValueError, TypeError):
            raise ConfigError("LOGOUT_PUBLIC_KEY", "not a readable PEM public key") from None
    else:
        public = private.public_key()
    if algorithm in RSA_ALGORITHMS:
        if not isinstance(private, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
            raise ConfigError("LOGOUT_PRIVATE_KEY", f"{algorithm} needs an RSA key pair")
        if private.key_size < 2048:
            raise ConfigError(
                "LOGOUT_PRIVATE_KEY", f"RSA key of {private.key_size} bits is too short; use 2048 or more"
            )
    else:
        curve = EC_ALGORITHMS[algorithm]
        if (
            not isinstance(private, ec.EllipticCurvePrivateKey)
            or not isinstance(public, ec.EllipticCurvePublicKey)
            or private.curve.name != curve
            or public.curve.name != curve
        ):
            raise ConfigError("LOGOUT_PRIVATE_KEY", f"{algorithm} needs an EC key pair on curve {curve}")
    if public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ConfigError("LOGOUT_PUBLIC_KEY", "does not match LOGOUT_PRIVATE_KEY")
    return private, public, key_id or _thumbprint(public, algorithm)


def _thumbprint(public: Any, algorithm: str) -> str:
    """RFC 7638 JWK thumbprint: a stable ``kid`` that changes with the key."""
    import base64
    import hashlib

    from jwt.algorithms import get_default_algorithms

    jwk = json.loads(get_default_algorithms()[algorithm].to_jwk(public))
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _optional_str(settings: Mapping[str, Any], name: str) -> str | None:
    value = settings.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a string, not {value!r}")
    return value


def _seconds(settings: Mapping[str, Any], name: str, default: int, *, positive: bool) -> int:
    value = settings.get(name, default)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        seconds = float(int(value))
    else:
        raise ConfigError(name, f"must be a number of seconds or a timedelta, not {value!r}")
    if seconds < 0 or (positive and seconds == 0) or seconds != int(seconds):
        need = "a positive" if positive else "a non-negative"
        raise ConfigError(name, f"must be {need} whole number of seconds, not {value!r}")
    return int(seconds)


def _int(settings: Mapping[str, Any], name: str, default: int) -> int:
    value = settings.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(name, f"must be a non-negative integer, not {value!r}")
    return value


def _strings(settings: Mapping[str, Any], name: str, default: Iterable[str]) -> tuple[str, ...]:
    """A list of strings; a string is read as JSON list or comma-separated (for env vars)."""
    value = settings.get(name, default)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ConfigError(name, f"is not a valid JSON list: {value!r}") from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(name, f"must be a list of strings, not {value!r}")
    return tuple(value)


def _paths(settings: Mapping[str, Any]) -> tuple[str, ...]:
    paths = _strings(settings, "LOGOUT_PROTECTED_PATHS", ())
    for path in paths:
        if not path.startswith("/"):
            raise ConfigError("LOGOUT_PROTECTED_PATHS", f"path {path!r} must start with '/'")
    return paths


def _cidrs(name: str, values: Iterable[str]) -> CidrSet:
    try:
        return CidrSet(values)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None


def _hash_method(value: Any) -> str:
    from werkzeug.security import generate_password_hash

    if not isinstance(value, str):
        raise ConfigError("LOGOUT_CLIENT_SECRET_HASH", f"must be a string, not {value!r}")
    if value == HMAC_SECRET_HASH:
        return value
    try:
        generate_password_hash("probe", method=value)
    except (ValueError, TypeError):
        raise ConfigError(
            "LOGOUT_CLIENT_SECRET_HASH",
            f"unknown hash method {value!r}; use {HMAC_SECRET_HASH!r}, or a werkzeug method such as 'scrypt'",
        ) from None
    return value


def _client_secret_key(settings: Mapping[str, Any], method: str) -> bytes | None:
    """The HMAC key of ``hmac-sha256`` client-secret hashes, derived from a configured secret.

    Derived (HMAC of the secret with a fixed label), so the stored hashes
    never use the token-signing key itself. Derived whenever a secret is
    configured, so ``hmac-sha256`` hashes keep verifying after a switch to a
    werkzeug method; required only by ``hmac-sha256``.
    """
    import hashlib
    import hmac

    for name in ("LOGOUT_CLIENT_SECRET_KEY", "LOGOUT_SECRET_KEY", "SECRET_KEY"):
        value = settings.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, (str, bytes)):
            raise ConfigError(name, f"must be str or bytes, not {type(value).__name__}")
        if len(value) < 16:
            raise ConfigError(name, f"{len(value)} characters is too short to key client-secret hashes; use 16 or more")
        return hmac.new(_bytes(value), CLIENT_SECRET_KEY_LABEL, hashlib.sha256).digest()
    if method != HMAC_SECRET_HASH:
        return None  # werkzeug hashes need no key
    raise ConfigError(
        "LOGOUT_CLIENT_SECRET_HASH",
        f"{HMAC_SECRET_HASH} needs a key: set LOGOUT_CLIENT_SECRET_KEY (or LOGOUT_SECRET_KEY or SECRET_KEY), "
        "or choose a werkzeug method such as 'scrypt'",
    )


def settings_table() -> str:
    """The configuration reference as a markdown table (README and docs embed it verbatim)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| Setting | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | {cell(s.type)} | {cell(s.default)} | {cell(s.meaning)} |" for s in SETTINGS]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m flask_logout.config > table.md
    print(settings_table())
