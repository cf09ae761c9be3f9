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
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt

from .config import ProviderSettings

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
JWKS_REFETCH_INTERVAL = 60.0
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
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (scheme checked)
            document = json.loads(response.read(1_000_000))
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc.__class__.__name__}") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url}: not a JSON object")
    return document


class OidcProvider:
    """One configured OpenID provider: its metadata, its keys, its tokens."""

    def __init__(self, settings: ProviderSettings, fetch: Fetch = fetch_json) -> None:
        self.settings = settings
        self._fetch = fetch
        self._lock = threading.Lock()
        self._discovered: dict[str, Any] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched_at = 0.0

    # -- metadata -----------------------------------------------------------

    def _discovery(self) -> dict[str, Any]:
        with self._lock:
            if self._discovered is None:
                url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = self._fetch(url)
                if document.get("issuer") != self.settings.issuer:
                    raise ProviderUnavailable(f"{url}: issuer {document.get('issuer')!r} does not match")
                self._discovered = document
            return self._discovered

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

    def _key(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            key = self._lookup(kid)
            due = key is None and time.monotonic() - self._keys_fetched_at >= JWKS_REFETCH_INTERVAL
            if due:
                self._keys_fetched_at = time.monotonic()
        if due:
            try:
                document = self._fetch(self.jwks_uri())
            except ProviderUnavailable:
                with self._lock:
                    self._keys_fetched_at = 0.0  # let the next token try again
                raise
            keys = {}
            for entry in document.get("keys", []):
                try:
                    keys[entry.get("kid", "")] = jwt.PyJWK(entry)
                except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, AttributeError):
                    continue  # a key we cannot use (another type, an encryption key)
            with self._lock:
                self._keys = keys
                key = self._lookup(kid)
        if key is None:
            raise LogoutTokenError("no provider key matches the token's kid")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

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
        except jwt.PyJWTError as exc:
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


class ProviderRegistry:
    """The configured providers of one application, built once."""

    def __init__(self, providers: dict[str, ProviderSettings], fetch: Fetch = fetch_json) -> None:
        self._providers = {name: OidcProvider(settings, fetch) for name, settings in providers.items()}

    def get(self, name: str) -> OidcProvider | None:
        return self._providers.get(name)
