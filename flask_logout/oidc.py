"""OpenID Connect sign-out: RP-Initiated Logout 1.0 and Back-Channel Logout 1.0.

For a session that came through an OpenID provider, signing out here is not
enough: the provider's own session would sign the user straight back in. So
sign-out answers the provider's ``end_session_endpoint`` URL with
``id_token_hint``, ``post_logout_redirect_uri`` and ``state`` (RP-Initiated
Logout 1.0, section 2) for the client to redirect to.

The other direction: when the user signs out at the provider (or another
application), the provider POSTs a logout token to our back-channel endpoint.
:meth:`OidcProvider.validate_logout_token` applies Back-Channel Logout 1.0
section 2.6 step by step; the caller then revokes the matching sessions.

Provider metadata is read once from the discovery document when the settings
do not give it, and the provider's keys are cached and fetched again at most
once a minute when a token names an unknown ``kid`` (key rotation), so a
flood of forged tokens cannot turn into a flood of requests to the provider.
A failed fetch is remembered too: until its back-off has passed (5 seconds,
doubling with each further failure up to 5 minutes) no request reaches the
provider and the receiver answers 503, which a genuine provider retries.
One thread fetches at a time (the others wait for its result, at most
``FETCH_WAIT`` seconds), and no lock is held that a request whose key is
cached would need.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import jwt

from .config import EC_ALGORITHMS, RSA_ALGORITHMS, ProviderSettings

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: After a successful key fetch, an unknown ``kid`` fetches the keys again at most this often.
JWKS_REFETCH_INTERVAL = 60.0
#: After a failed fetch, no new fetch for this long, doubled per further failure up to the maximum.
FETCH_BACKOFF_FIRST = 5.0
FETCH_BACKOFF_MAX = 300.0
#: Timeout of each request to the provider.
FETCH_TIMEOUT = 5.0
#: How long a request waits for another request's fetch (a key fetch may need discovery first).
FETCH_WAIT = 2 * FETCH_TIMEOUT + 1
CLOCK_SKEW = 60

Fetch = Callable[[str], dict[str, Any]]


class ProviderUnavailable(Exception):
    """The provider's discovery document or keys could not be read."""


class LogoutTokenError(Exception):
    """A logout token failed validation; the message says which check."""


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON document over http(s), with a short timeout."""
    if not url.startswith(("https://", "http://")):
        raise ProviderUnavailable(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 (scheme checked)
            document = json.loads(response.read(1_000_000))
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc.__class__.__name__}") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url}: not a JSON object")
    return document


T = TypeVar("T")


@dataclass(frozen=True)
class ProviderKey:
    """A provider's public key with the JWK members that say what it may verify."""

    key: Any
    kty: str | None
    alg: str | None
    crv: str | None


class Cached(Generic[T]):
    """One document read from the provider, cached; fetched by one thread at a time.

    :meth:`get` answers the cached value at once. It fetches only when there
    is none yet, or when ``refresh`` asks for it and the last fetch is at
    least ``refetch_interval`` old. A failed fetch is remembered: until its
    back-off has passed, callers that need a fetch get
    :class:`ProviderUnavailable` at once, and the provider sees nothing.
    Only the thread that fetches holds ``_flight``; the others wait for its
    result (at most :data:`FETCH_WAIT` seconds) instead of fetching again.
    """

    def __init__(self, load: Callable[[], T], refetch_interval: float) -> None:
        self._load = load
        self._refetch_interval = refetch_interval
        self._state = threading.Lock()  # guards the fields below; never held while fetching
        self._flight = threading.Lock()  # held by the one thread that is fetching
        self.clock: Callable[[], float] = time.monotonic
        self.value: T | None = None
        self.error: str | None = None
        self.failures = 0
        self.attempts = 0
        self.next_fetch = 0.0  # on self.clock: no fetch before this

    def get(self, refresh: bool = False) -> T:
        with self._state:
            value, attempts = self.value, self.attempts
            if value is not None and not refresh:
                return value
            if self.clock() < self.next_fetch:
                if self.error is not None:
                    raise ProviderUnavailable(f"{self.error} (not fetched again before the back-off ends)")
                if value is not None:
                    return value  # fetched a moment ago: as fresh as it gets
        if not self._flight.acquire(timeout=FETCH_WAIT):
            raise ProviderUnavailable("another request's fetch from the provider is still running")
        try:
            with self._state:
                if self.attempts != attempts:  # another thread fetched while this one waited
                    if self.error is not None:
                        raise ProviderUnavailable(self.error)
                    if self.value is not None:
                        return self.value
            try:
                value = self._load()
            except ProviderUnavailable as exc:
                with self._state:
                    self.attempts += 1
                    self.failures += 1
                    self.error = str(exc)
                    backoff = min(FETCH_BACKOFF_MAX, FETCH_BACKOFF_FIRST * 2 ** (self.failures - 1))
                    self.next_fetch = self.clock() + backoff
                raise
            with self._state:
                self.attempts += 1
                self.failures = 0
                self.error = None
                self.value = value
                self.next_fetch = self.clock() + self._refetch_interval
            return value
        finally:
            self._flight.release()


class OidcProvider:
    """One configured OpenID provider: its metadata, its keys, its tokens."""

    def __init__(self, settings: ProviderSettings, fetch: Fetch = fetch_json) -> None:
        self.settings = settings
        self._fetch = fetch
        self.discovery: Cached[dict[str, Any]] = Cached(self._load_discovery, JWKS_REFETCH_INTERVAL)
        self.jwks: Cached[dict[str, ProviderKey]] = Cached(self._load_keys, JWKS_REFETCH_INTERVAL)

    # -- metadata -----------------------------------------------------------

    def _load_discovery(self) -> dict[str, Any]:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._fetch(url)
        if document.get("issuer") != self.settings.issuer:
            raise ProviderUnavailable(f"{url}: issuer {document.get('issuer')!r} does not match")
        return document

    def _discovery(self) -> dict[str, Any]:
        return self.discovery.get()

    def end_session_endpoint(self) -> str | None:
        if self.settings.end_session_endpoint:
            return self.settings.end_session_endpoint
        endpoint = self._discovery().get("end_session_endpoint")
        return endpoint if isinstance(endpoint, str) and endpoint else None

    def jwks_uri(self) -> str:
        if self.settings.jwks_uri:
            return self.settings.jwks_uri
        uri = self._discovery().get("jwks_uri")
        if not isinstance(uri, str) or not uri:
            raise ProviderUnavailable(f"{self.settings.name}: discovery document has no jwks_uri")
        return uri

    def end_session_url(
        self, id_token_hint: str, post_logout_redirect_uri: str | None, state: str, *, base_url: str | None = None
    ) -> str | None:
        """The URL to send the user to, or ``None`` if the provider has no end-session endpoint.

        An endpoint or redirect given as a path (a provider served by this
        application, as in the example app) is resolved against ``base_url``,
        the origin the sign-out request came in on: the ID token hint then
        goes to the server that really answered, never to a guessed address.
        """
        endpoint = self.end_session_endpoint()
        if endpoint is None:
            return None
        if base_url is not None:
            endpoint = urllib.parse.urljoin(base_url, endpoint)
            if post_logout_redirect_uri:
                post_logout_redirect_uri = urllib.parse.urljoin(base_url, post_logout_redirect_uri)
        params = {"client_id": self.settings.client_id, "state": state}
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        if post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = post_logout_redirect_uri
        separator = "&" if urllib.parse.urlsplit(endpoint).query else "?"
        return endpoint + separator + urllib.parse.urlencode(params)

    # -- keys ---------------------------------------------------------------

    def _load_keys(self) -> dict[str, ProviderKey]:
        uri = self.jwks_uri()
        entries = self._fetch(uri).get("keys")
        if not isinstance(entries, list):
            raise ProviderUnavailable(f"{uri}: no keys list")
        keys = {}
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            try:
                key = jwt.PyJWK(entry).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError, AttributeError):
                continue  # a key we cannot use (another type, an encryption key)
            kid = entry.get("kid")
            kty, alg, crv = (v if isinstance(v, str) else None for v in (entry.get(m) for m in ("kty", "alg", "crv")))
            keys[kid if isinstance(kid, str) else ""] = ProviderKey(key, kty, alg, crv)
        return keys

    def _key(self, kid: str | None) -> ProviderKey:
        """The provider key a token names: cached, or fetched (rate-limited) when unknown."""
        key = _lookup(self.jwks.get(), kid)
        if key is None:
            key = _lookup(self.jwks.get(refresh=True), kid)  # key rotation, at most once an interval
        if key is None:
            raise LogoutTokenError("no provider key matches the token's kid")
        return key

    # -- logout tokens ------------------------------------------------------

    def validate_logout_token(self, token: str, now: float | None = None) -> dict[str, Any]:
        """Check a logout token as Back-Channel Logout 1.0 section 2.6 says; return its claims.

        Signature with a provider key and an allowed algorithm (never
        ``none`` or HMAC), ``iss``, ``aud``, ``iat`` (not in the future, not
        older than ``logout_token_max_age``), ``exp`` if present, a ``jti``, the
        back-channel ``events`` member, ``sid`` and/or ``sub``, and no
        ``nonce``. Replay (``jti`` seen before) is the caller's check: it
        needs the shared store.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise LogoutTokenError("not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.settings.algorithms:
            raise LogoutTokenError(f"algorithm {algorithm!r} is not accepted")
        key = self._key(header.get("kid"))
        if not _fits(key, algorithm):
            raise LogoutTokenError(f"algorithm {algorithm!r} does not match the provider key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.settings.client_id,
                issuer=self.settings.issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["iss", "aud", "iat", "jti", "events"]},
            )
        except jwt.ExpiredSignatureError:
            raise LogoutTokenError("logout token expired") from None
        except jwt.ImmatureSignatureError:
            raise LogoutTokenError("iat is in the future") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # TypeError/ValueError: a key the algorithm cannot use that _fits let through.
            raise LogoutTokenError(f"invalid logout token ({exc.__class__.__name__})") from None
        current = time.time() if now is None else now
        iat = claims["iat"]
        if not isinstance(iat, (int, float)) or iat > current + CLOCK_SKEW:
            raise LogoutTokenError("iat is in the future")
        if iat < current - self.settings.logout_token_max_age:
            raise LogoutTokenError("logout token expired")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise LogoutTokenError("events claim lacks the back-channel logout event")
        if "nonce" in claims:
            raise LogoutTokenError("a logout token must not contain a nonce")
        sid, sub = claims.get("sid"), claims.get("sub")
        if sid is None and sub is None:
            raise LogoutTokenError("a logout token needs sid or sub")
        if not all(v is None or isinstance(v, str) for v in (sid, sub)) or not isinstance(claims["jti"], str):
            raise LogoutTokenError("sid, sub and jti must be strings")
        return claims


def _lookup(keys: dict[str, ProviderKey], kid: str | None) -> ProviderKey | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


#: The JWK ``crv`` each ES algorithm needs (RFC 7518 section 3.4).
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def _fits(key: ProviderKey, algorithm: str) -> bool:
    """Whether ``algorithm`` can verify with ``key``: the right key type (and
    curve), and the key's own ``alg`` if it names one (RFC 7517 section 4.4)."""
    if key.alg is not None and key.alg != algorithm:
        return False
    if algorithm in RSA_ALGORITHMS:
        return key.kty == "RSA"
    if algorithm in EC_ALGORITHMS:
        return key.kty == "EC" and key.crv == _CURVES[algorithm]
    return False


class ProviderRegistry:
    """The configured providers of one application, built once."""

    def __init__(self, providers: dict[str, ProviderSettings], fetch: Fetch = fetch_json) -> None:
        self._providers = {name: OidcProvider(settings, fetch) for name, settings in providers.items()}

    def get(self, name: str) -> OidcProvider | None:
        return self._providers.get(name)
