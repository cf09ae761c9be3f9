"""The core: issue, verify, rotate and revoke tokens; know API clients.

Framework-free. The Flask extension builds one :class:`LogoutService` per
application; a plain WSGI application builds one with
:meth:`LogoutService.from_settings`. Dialects (the HTTP APIs) and the bearer
middleware call only this class, so revocation and verification exist once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeGuard, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.security import check_password_hash, generate_password_hash

from . import signals
from .cidr import CidrSet
from .config import HMAC_SECRET_HASH, LogoutConfig, load_config
from .errors import (
    InvalidCredentials,
    InvalidToken,
    IPNotAuthorized,
    MissingAuthorization,
    ReuseDetected,
    StoreUnavailable,
    TokenExpired,
    TokenRevoked,
    UnknownToken,
    WrongTokenType,
)
from .oidc import ProviderRegistry
from .proxies import client_ip
from .replica import Replica, ReplicaStatus
from .store import ClientRecord, Event, SessionInfo, SQLStore, SsoLogin, TokenRow, TokenState, open_store
from .tokens import ACCESS, REFRESH, TokenCodec, VerifiedToken, now, principal_key

logger = logging.getLogger("flask_logout")

#: RFC 6750 section 2.1 ``b64token``; a JWT is three of these joined by dots.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Longer bearer values are refused before any parsing (headers over 8 KB are
#: refused by most servers anyway; ours are well under 1 KB).
MAX_TOKEN_LENGTH = 8192
#: Longest API client id and client secret accepted (longer ones are a 400).
MAX_CLIENT_ID_LENGTH = 200
MAX_CLIENT_SECRET_LENGTH = 256
#: Prefix of client-secret hashes made with ``LOGOUT_CLIENT_SECRET_HASH = "hmac-sha256"``.
HMAC_HASH_PREFIX = HMAC_SECRET_HASH + "$"

ENVIRON_TOKEN = "flask_logout.token"  # noqa: S105 (an environ key)
#: Label of the key that hashes credential versions into the ``cvh`` claim.
CREDENTIAL_KEY_LABEL = b"flask-logout credential version v1"

#: Claims the library sets and relies on: ``issue_tokens(claims=...)`` may not set them.
RESERVED_CLAIMS = frozenset({"jti", "typ", "sub", "fid", "gen", "iat", "exp", "nbf", "cid", "iss", "aud", "cvh", "drn"})


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A freshly issued access and refresh token."""

    access_token: str
    refresh_token: str
    access: VerifiedToken
    refresh: VerifiedToken
    expires_in: int


V = TypeVar("V")


#: What the request path keeps of a token it has fully checked once: a plain
#: tuple, because unpacking one is the cheapest read Python has, and the hot
#: path is a few hundred nanoseconds.
#:
#: ``(verified, expires, epoch, cidrs, client_version, key)``: ``expires`` is
#: ``exp + LOGOUT_LEEWAY`` (expired once the wall clock reaches it), kept as a
#: float: ``time.time() < expires`` between two floats is one specialised
#: instruction, against an integer it converts the integer every time; ``epoch``
#: the replica's :attr:`~flask_logout.replica.Replica.epoch` when the entry was
#: last checked against the revocations (equal now: nothing was revoked since,
#: so nothing needs looking up); ``cidrs`` the client's whitelist (``None``:
#: none); ``client_version`` the client's record version it was read at;
#: ``key`` the whole ``Authorization`` header (or the token) it was checked for.
_Hot = tuple[VerifiedToken, float, int, "CidrSet | None", int, str]

#: A bearer's hot entry is filed under the last ``HOT_TAIL`` characters of its
#: ``Authorization`` header (the end of the token's signature): hashing a
#: fresh header costs ~5 instructions a character (~1,300 for a 260-character
#: header, and tokens with many claims or RSA signatures run to kilobytes), a
#: 16-character tail ~250, and the whole header is then compared with the
#: entry's (a ``memcmp``). A tail shared by two headers only costs one of them
#: a full check; an entry is used only for its own key.
HOT_TAIL = 16


class _Bounded(Generic[V]):
    """A bounded, thread-safe map of token string -> V.

    Not an LRU: a hit writes nothing (an LRU's reordering on every read costs
    more than the rest of the hot path's look-up). When full, the older half
    is dropped, in one go (amortised O(1) per insert); a dropped entry only
    costs its token one full check the next time it is seen. The dict is
    never replaced, so a caller may keep its bound ``get``.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[str, V] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        return self._items.get(key)

    def put(self, key: str, value: V) -> None:
        if not self._size:
            return
        with self._lock:
            items = self._items
            items[key] = value
            if len(items) > self._size:
                for old in list(itertools.islice(items, len(items) - self._size // 2)):
                    del items[old]

    def __len__(self) -> int:
        return len(self._items)


class _HotMap(_Bounded[_Hot]):
    """A hot path's map: entries filed under their key's last ``tail`` characters
    (see :data:`HOT_TAIL`), or under the whole key when ``tail`` is 0.

    The request path reads ``_items`` directly (the look-up, then ``entry[5] ==
    key``); :meth:`find` and :meth:`keep` are the same, spelled out.
    """

    def __init__(self, size: int, tail: int) -> None:
        super().__init__(size)
        self.tail = tail

    def find(self, key: str) -> _Hot | None:
        hot = self._items.get(key[-self.tail :] if self.tail else key)
        return hot if hot is not None and hot[5] == key else None

    def keep(
        self, key: str, verified: VerifiedToken, expires: float, epoch: int, cidrs: CidrSet | None, version: int
    ) -> None:
        self.put(key[-self.tail :] if self.tail else key, (verified, float(expires), epoch, cidrs, version, key))


class LogoutService:
    """Issue, verify, rotate and revoke tokens against one store."""

    def __init__(self, config: LogoutConfig, store: SQLStore) -> None:
        self.config = config
        self.store = store
        # Log entries must outlive every access token they could end.
        store.event_ttl = config.access_ttl + config.leeway + 120
        store.timeout = config.store_timeout
        self.codec = TokenCodec(config)
        self._cache: _Bounded[VerifiedToken] = _Bounded(config.token_cache_size)
        self._hot = _HotMap(0 if config.strict else config.token_cache_size, HOT_TAIL)
        self._hot_get = self._hot._items.get
        # Tokens met outside an Authorization header (session cookies) are kept
        # apart: keyed by the bare token in the same map, an Authorization
        # header holding a bare token (no scheme) would find them. Filed under
        # the whole token: the hot path reads it from the kept parse of the
        # Cookie header, the same string object each time (its hash cached).
        self._hot_tokens = _HotMap(0 if config.strict else config.token_cache_size, 0)
        self._hot_token_get = self._hot_tokens._items.get
        self.replica = Replica(
            store,
            sync_interval=config.sync_interval,
            max_staleness=config.max_staleness,
            push=config.push,
            purge_interval=config.purge_interval,
            heartbeat=config.push_heartbeat,
            redis=_redis_channel(config),
        )
        self.replica.health_listeners.append(self._health_changed)
        self._cidr_cache: dict[str, CidrSet] = {}
        self.providers = ProviderRegistry(config.oidc_providers)
        self._keys_pending = False
        if config.keyring:
            store.key_ttl = config.refresh_ttl + config.leeway + 3600
            self.replica.key_listeners.append(self._reload_keyring)
            try:
                self._load_keyring()
            except SQLAlchemyError as exc:
                # The table is not there yet (migrations pending): the app and
                # its CLI must still start, so load the keys on first use.
                logger.warning("flask_logout: signing keys not loaded yet (%s)", exc.__class__.__name__)
                self._keys_pending = True
        # Checked against on unknown client ids so that "no such client" and
        # "wrong secret" take the same time.
        self._dummy_hash = self.hash_secret(secrets.token_urlsafe(32))
        #: ``user_id -> bool``: whether an end user still exists. When set
        #: (the Flask extension sets it from ``user_loader``), every refresh
        #: of an end user's token asks it first; see :meth:`refresh`.
        self.user_exists: Callable[[str], bool] | None = None
        #: ``user_id -> str | None``: the user's credential version (a password
        #: hash, its salt, a counter). When set (the Flask extension sets it
        #: from ``credential_version_loader``), an end user's refresh tokens
        #: carry a keyed hash of it (claim ``cvh``) and every refresh compares
        #: it with the current one; see :meth:`credentials_changed`.
        self.credential_version: Callable[[str], str | None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], *, metadata: sa.MetaData | None = None, create_tables: bool = True
    ) -> LogoutService:
        """Build a service for a plain WSGI app from ``LOGOUT_*`` settings."""
        config = load_config(settings, default_database_uri="sqlite:///flask_logout.sqlite3")
        assert config.database_uri is not None
        store = open_store(
            config.database_uri, timeout=config.store_timeout, metadata=metadata, create_tables=create_tables
        )
        return cls(config, store)

    # -- signing keys (LOGOUT_KEYRING) ---------------------------------------

    def _ensure_keys(self) -> None:
        """Load the keyring now if it could not be loaded at start-up."""
        try:
            self._load_keyring()
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        self._keys_pending = False

    def _load_keyring(self) -> None:
        """Load the stored keys; on first start store the configured key, or a new one."""
        from . import keys

        stored = self.store.signing_keys()
        if not stored:
            if self.config.signing_key is not None:
                private, kid = self.config.signing_key, self.config.key_id
            else:
                private = keys.generate(self.config.algorithm)
                kid = keys.kid_of(private, self.config.algorithm)
            pem = keys.to_pem(private, self.config.keyring_passphrase)
            self.store.add_signing_key(str(kid), self.config.algorithm, pem, retire_others=False)
            stored = self.store.signing_keys()
        loaded = keys.select(stored, self.config.keyring_passphrase, self.store.key_ttl)
        self.codec.use_keys(loaded.signing_kid, loaded.signing_key, loaded.verifying)

    def _reload_keyring(self) -> None:
        try:
            self._load_keyring()
        except Exception as exc:
            logger.error("flask_logout: reloading signing keys failed: %s", exc.__class__.__name__)

    def rotate_keys(self) -> str:
        """Add a new signing key and retire the others; returns its ``kid``.

        Retired keys keep verifying (and stay in the JWKS) for a refresh-token
        lifetime, so no live token is cut off by a rotation.
        """
        from . import keys

        if not self.config.keyring:
            raise RuntimeError("key rotation needs LOGOUT_KEYRING = True")
        private = keys.generate(self.config.algorithm)
        kid = keys.kid_of(private, self.config.algorithm)
        try:
            self.store.add_signing_key(
                kid, self.config.algorithm, keys.to_pem(private, self.config.keyring_passphrase), retire_others=True
            )
            self._load_keyring()
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        return kid

    def status(self) -> ReplicaStatus:
        """This process's replica: age, fresh or stale, push up or not, the last sync error."""
        return self.replica.status()

    def _health_changed(self, event: str) -> None:
        signals.health_changed.send(self, event=event, status=self.replica.status())

    def close(self) -> None:
        """Stop this service's background sync and release its connections."""
        self.replica.stop()  # waits for the sync threads: none may use a closed connection
        self.store.dispose()

    # -- issuing ----------------------------------------------------------

    def issue_tokens(
        self,
        subject: str,
        *,
        client_id: str | None = None,
        sso: SsoLogin | None = None,
        claims: Mapping[str, Any] | None = None,
        user_agent: str | None = None,
        ip: str | None = None,
        _issued_at: int | None = None,
    ) -> TokenPair:
        """Start a new session (token family) for ``subject`` and return its first pair.

        ``sso`` records that the sign-in came through an OpenID provider, so
        that signing out can send the user on to the provider's end-session
        endpoint and a back-channel logout from the provider can find it.
        ``claims`` are custom claims (roles, a tenant) put on both tokens and
        carried over to every pair refreshed from them; the names in
        :data:`RESERVED_CLAIMS` are refused with ``ValueError``.
        ``user_agent`` and ``ip`` are kept with the session for session lists.
        """
        extra = _custom_claims(claims)
        principal = principal_key(subject, client_id)
        family = _new_id()
        if self._keys_pending:
            self._ensure_keys()
        cvh = self._credential_hash(subject) if client_id is None else None
        try:
            with self.store.transaction() as conn:
                generation = self.store.current_generation(conn, principal)
                self.store.record_family(conn, family, principal, sso, user_agent=user_agent, ip=ip)
                pair, rows = self._mint(subject, client_id, family, generation, _issued_at, extra, cvh=cvh)
                self.store.record_tokens(conn, rows)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        signals.token_issued.send(self, pair=pair, subject=subject, client_id=client_id)
        return pair

    def _mint(
        self,
        subject: str,
        client_id: str | None,
        family: str,
        generation: int,
        issued_at: int | None = None,
        extra: Mapping[str, Any] | None = None,
        *,
        cvh: str | None = None,
    ) -> tuple[TokenPair, list[TokenRow]]:
        issued = now() if issued_at is None else issued_at
        principal = principal_key(subject, client_id)
        tokens: dict[str, tuple[str, VerifiedToken]] = {}
        rows = []
        for typ, ttl in ((ACCESS, self.config.access_ttl), (REFRESH, self.config.refresh_ttl)):
            claims: dict[str, Any] = dict(extra) if extra else {}
            claims |= {
                "jti": _new_id(),
                "typ": typ,
                "sub": subject,
                "fid": family,
                "gen": generation,
                "iat": issued,
                "exp": issued + ttl,
            }
            if client_id is not None:
                claims["cid"] = client_id
            if cvh is not None and typ == REFRESH:
                claims["cvh"] = cvh
            if "descope" in self.config.dialects:
                # Descope's "resource name": the cookie the token lives in. Its
                # SDKs tell session (DS) from refresh (DSR) tokens by it.
                cookies = self.config.cookies
                claims["drn"] = cookies.session_name if typ == ACCESS else cookies.refresh_name
            if self.config.issuer:
                claims["iss"] = self.config.issuer  # the claims handed out are the claims signed
            if self.config.audience:
                claims["aud"] = self.config.audience
            encoded = self.codec.encode(claims)
            verified = VerifiedToken(
                jti=claims["jti"],
                typ=typ,
                sub=subject,
                fid=family,
                gen=generation,
                iat=issued,
                exp=issued + ttl,
                cid=client_id,
                claims=claims,
            )
            tokens[typ] = (encoded, verified)
            rows.append(TokenRow(claims["jti"], typ, principal, family, client_id, generation, issued, issued + ttl))
        pair = TokenPair(
            access_token=tokens[ACCESS][0],
            refresh_token=tokens[REFRESH][0],
            access=tokens[ACCESS][1],
            refresh=tokens[REFRESH][1],
            expires_in=self.config.access_ttl,
        )
        return pair, rows

    # -- verifying --------------------------------------------------------

    def verify(self, token: str, *, expected_type: str = ACCESS) -> tuple[VerifiedToken, TokenState]:
        """Check a token string; raise :class:`InvalidToken` or :class:`TokenExpired`.

        Order: signature and shape, type, known to the store, not revoked,
        not expired. The order decides the answer when several apply.
        """
        verified = self._decode(token)
        return verified, self._check(verified, expected_type)

    def _decode(self, token: str) -> VerifiedToken:
        """Signature and claim shapes, from the cache when this process decoded it before."""
        verified = self._cache.get(token)
        if verified is None:
            if self._keys_pending:
                self._ensure_keys()
            if len(token) > MAX_TOKEN_LENGTH or not _B64TOKEN.fullmatch(token):
                raise InvalidToken(detail="not a b64token")
            verified = self.codec.decode(token)
            self._cache.put(token, verified)
        return verified

    def _check(self, verified: VerifiedToken, expected_type: str) -> TokenState:
        """Type, then the store: known, not revoked; then expiry."""
        if verified.typ != expected_type:
            raise WrongTokenType(detail=f"{verified.typ} token where {expected_type} expected")
        try:
            state = self.store.lookup(verified.jti)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        if state is None:
            raise UnknownToken(detail="unknown token")
        if (
            state.typ != verified.typ
            or state.subject != verified.principal
            or state.family != verified.fid
            or state.generation != verified.gen
        ):
            # Signed with our key, but not the token the store issued under
            # this id: refuse it as unknown rather than trust either side.
            raise UnknownToken(detail="claims do not match the issued token")
        if state.revoked:
            revoked = TokenRevoked(detail="revoked")
            revoked.state = state
            revoked.token = verified
            raise revoked
        if verified.cid is not None and state.allowed_cidrs is None:
            # The client's row is gone (deleted, or never registered): fail closed.
            raise TokenRevoked(detail="client no longer exists")
        if verified.exp + self.config.leeway <= now():
            raise TokenExpired(detail="expired")
        return state

    def check_ip(self, state: TokenState, ip: str | None) -> None:
        """Raise :class:`IPNotAuthorized` unless ``ip`` is in the token's client whitelist."""
        if not state.allowed_cidrs or state.allowed_cidrs == "[]":
            return
        cidrs = self._cidrs(state.allowed_cidrs)
        if not cidrs.allows(ip):
            raise IPNotAuthorized(detail="ip outside whitelist")

    def _cidrs(self, serialized: str) -> CidrSet:
        cidrs = self._cidr_cache.get(serialized)
        if cidrs is None:
            cidrs = CidrSet(json.loads(serialized))
            if len(self._cidr_cache) > 1024:
                self._cidr_cache.clear()
            self._cidr_cache[serialized] = cidrs
        return cidrs

    def request_ip(self, environ: Mapping[str, Any]) -> str | None:
        return client_ip(environ, self.config.trusted_proxies, self.config.trusted_proxy_cidrs)

    def authenticate(self, environ: Mapping[str, Any]) -> VerifiedToken:
        """Authenticate a WSGI request by its bearer access token.

        Raises, in this order: :class:`MissingAuthorization`,
        :class:`InvalidToken`, :class:`TokenExpired`, :class:`IPNotAuthorized`
        (and :class:`StoreUnavailable` when the store cannot answer, or the
        replica is older than ``LOGOUT_MAX_STALENESS``).

        A token this process has fully checked before takes the hot path: no
        signature check and no query, but revocation (against the replica),
        expiry and the client's whitelist are checked again, every time.
        """
        return self._authenticate(environ.get("HTTP_AUTHORIZATION") or "", None, environ)

    def authenticate_token(self, token: str, environ: Mapping[str, Any]) -> VerifiedToken:
        """:meth:`authenticate` for an access token found elsewhere (a session cookie)."""
        return self._authenticate(token, token, environ)

    def _authenticate(self, key: str, token: str | None, environ: Mapping[str, Any]) -> VerifiedToken:
        """The check behind both: ``key`` is what the hot-path cache is keyed
        by (the whole ``Authorization`` header, or the token itself), ``token``
        the token when it is not to be parsed out of a header.

        Keying by the header means a header this process has checked before is
        found with one look-up (of its tail, :data:`HOT_TAIL`) and one compare,
        without parsing (a token is found by itself); any other spelling of the same token is a miss,
        checked in full and cached under its own key.
        """
        replica = self.replica
        if token is None:
            cache = self._hot
            hot = cache._items.get(key[-HOT_TAIL:])
        else:
            cache = self._hot_tokens
            hot = cache._items.get(key)
        if hot is not None and hot[5] == key:
            verified, expires, epoch, cidrs, _, _ = hot
            # The hot path: nothing revoked or changed since this entry was
            # checked (one integer compare for every table of the replica),
            # the replica fresh, the token unexpired. The middleware has the
            # same test inline (BearerMiddleware.__call__).
            if epoch == replica.epoch and time.monotonic() <= replica.fresh_until and time.time() < expires:
                if cidrs is not None and not cidrs.allows(self.request_ip(environ)):
                    raise IPNotAuthorized(detail="ip outside whitelist")
                return verified
            return self._recheck(cache, key, hot, environ)
        return self._first_sight(cache, key, token, environ)

    def _recheck(self, cache: _HotMap, key: str, hot: _Hot, environ: Mapping[str, Any]) -> VerifiedToken:
        """A token checked before, when something changed since: every check, in the documented order."""
        verified, expires, _, cidrs, client_version, _ = hot
        replica = self.replica
        if not replica.running:
            replica.ensure_running()
        epoch = replica.epoch  # before the tables: a change after this read makes the entry stale again
        if time.monotonic() > replica.fresh_until and not replica.catch_up():
            raise StoreUnavailable(detail="revocation replica is stale")
        if replica.revoked(verified.jti, verified.fid, verified.principal, verified.gen):
            raise TokenRevoked(detail="revoked (replica)")
        if expires <= now():
            raise TokenExpired(detail="expired")
        if verified.cid is not None and replica.client_versions.get(verified.cid, 0) != client_version:
            # The client's record (its whitelist) changed since: ask the store again.
            return self._first_sight(cache, key, None, environ, verified)
        if cidrs is not None and not cidrs.allows(self.request_ip(environ)):
            raise IPNotAuthorized(detail="ip outside whitelist")
        cache.keep(key, verified, expires, epoch, cidrs, client_version)
        return verified

    def _first_sight(
        self,
        cache: _HotMap,
        key: str,
        token: str | None,
        environ: Mapping[str, Any],
        verified: VerifiedToken | None = None,
    ) -> VerifiedToken:
        """A token this process has not checked yet: its signature, then the store."""
        replica = self.replica
        if not replica.running:
            replica.ensure_running()
        if verified is None:
            verified = self._decode(token if token is not None else bearer_token(key))
        # Read before the store: a change after it will not match the entry.
        epoch = replica.epoch
        cid_version = replica.client_versions.get(verified.cid, 0) if verified.cid is not None else 0
        state = self._check(verified, ACCESS)
        cidrs = self._cidrs(state.allowed_cidrs) if state.allowed_cidrs and state.allowed_cidrs != "[]" else None
        if cidrs is not None and not cidrs.allows(self.request_ip(environ)):
            raise IPNotAuthorized(detail="ip outside whitelist")
        cache.keep(key, verified, verified.exp + self.config.leeway, epoch, cidrs, cid_version)
        return verified

    # -- rotating ---------------------------------------------------------

    def refresh(self, refresh_token: str, *, ip: str | None = None) -> TokenPair:
        """Exchange a refresh token for a new pair in the same family.

        The presented refresh token is revoked in the same transaction that
        records its successor, guarded so that two concurrent refreshes with
        one token cannot both succeed.

        An end user's token (no ``cid``) is only refreshed while
        :attr:`user_exists` says the user exists; otherwise its session is
        revoked and :class:`TokenRevoked` raised. API clients are checked by
        their client row instead (a deleted client's tokens are refused).
        """
        verified, cvh = self._refreshable(refresh_token, ip=ip)
        try:
            with self.store.transaction() as conn:
                pair, rows = self._mint(
                    verified.sub, verified.cid, verified.fid, verified.gen, extra=_carried(verified), cvh=cvh
                )
                if not self.store.revoke_token(verified.jti, conn, replaced_by=pair.refresh.jti):
                    raise TokenRevoked(detail="refresh token already rotated")
                self.store.record_tokens(conn, rows)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        signals.token_refreshed.send(self, pair=pair, previous_jti=verified.jti)
        return pair

    def refresh_access(self, refresh_token: str, *, ip: str | None = None) -> TokenPair:
        """:meth:`refresh` without rotation: a new access token in the same
        family; the presented refresh token stays valid and is handed back.

        The same checks as :meth:`refresh` (a rotated-out token is refused and
        may set off reuse detection; a user the ``user_exists`` check no longer
        knows, or whose credential version changed, loses the session), and
        the same custom claims on the new access token.
        """
        verified, cvh = self._refreshable(refresh_token, ip=ip)
        try:
            with self.store.transaction() as conn:
                minted, rows = self._mint(
                    verified.sub, verified.cid, verified.fid, verified.gen, extra=_carried(verified), cvh=cvh
                )
                self.store.record_tokens(conn, [row for row in rows if row.typ == ACCESS])
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        pair = TokenPair(minted.access_token, refresh_token, minted.access, verified, minted.expires_in)
        signals.token_refreshed.send(self, pair=pair, previous_jti=None)
        return pair

    def _refreshable(self, refresh_token: str, *, ip: str | None) -> tuple[VerifiedToken, str | None]:
        """The checks every refresh makes, rotating or not: the token (with the
        whitelist and reuse detection), then, for an end user, that the user
        still exists and that their credential version is the one the token
        was issued under. A failed user check ends the session. Returns the
        token and its ``cvh`` claim, to carry over."""
        verified, _ = self._verify_refresh(refresh_token, ip=ip)
        if verified.cid is None and self.user_exists is not None and not self.user_exists(verified.sub):
            self.revoke_family(verified.fid)
            raise TokenRevoked(detail="the user no longer exists")
        cvh = verified.claims.get("cvh")
        if verified.cid is None and self.credential_version is not None:
            current = self._credential_hash(verified.sub)
            if current is None or not isinstance(cvh, str) or not hmac.compare_digest(cvh, current):
                self.revoke_family(verified.fid)
                raise TokenRevoked(detail="the user's credentials changed")
        return verified, cvh if isinstance(cvh, str) else None

    def _verify_refresh(self, refresh_token: str, *, ip: str | None) -> tuple[VerifiedToken, TokenState]:
        """:meth:`verify` for a refresh token and the client's whitelist, then
        reuse detection on a rotated one.

        The whitelist comes first: a client token presented from outside it
        changes nothing, not even by setting off reuse detection.
        """
        try:
            verified, state = self.verify(refresh_token, expected_type=REFRESH)
        except TokenRevoked as revoked:
            if revoked.state is not None:
                self.check_ip(revoked.state, ip)
            self._detect_reuse(revoked)
            raise
        self.check_ip(state, ip)
        return verified, state

    def _detect_reuse(self, revoked: TokenRevoked) -> None:
        """Revoke the family of a rotated refresh token presented again.

        A refresh token is rotated out on use, so only a copy can come back.
        Within ``LOGOUT_REUSE_GRACE_SECONDS`` of its rotation it is merely
        refused (two tabs refreshing at once); after that its family, every
        token refreshed from the same sign-in, is revoked.
        """
        state: TokenState | None = getattr(revoked, "state", None)
        token: VerifiedToken | None = getattr(revoked, "token", None)
        if state is None or token is None or state.replaced_by is None or state.revoked_at is None:
            return  # revoked by a logout, not by rotation
        if state.family_revoked or state.generation != state.current_generation:
            return  # already dead for another reason: nothing more to end
        if time.time() - state.revoked_at <= self.config.reuse_grace:
            return
        self.revoke_family(token.fid)
        logger.warning(
            "flask_logout: refresh token reuse detected for %s; session %s revoked", token.principal, token.fid
        )
        signals.reuse_detected.send(self, token=token)
        raise ReuseDetected(detail="rotated refresh token reused; family revoked")

    def verify_for_signout(self, refresh_token: str, *, ip: str | None = None) -> tuple[VerifiedToken, TokenState]:
        """:meth:`verify` for a sign-out: any genuine refresh token of a live session will do.

        A refresh token rotated out by a refresh (another tab, or a thief who
        refreshed first) is still accepted, so the victim can end the thief's
        session and a stale tab can sign out. A sign-out never raises the
        reuse alarm: ending the session is what the owner wants. Refused as
        revoked: a token whose session already ended, or whose user signed
        out everywhere since; expired tokens are refused as expired.

        ``ip`` is the request's address: an API client's token from outside
        its whitelist is refused (:class:`IPNotAuthorized`) before anything else.
        """
        try:
            verified, state = self.verify(refresh_token, expected_type=REFRESH)
        except TokenRevoked as revoked:
            rotated: TokenState | None = revoked.state
            token: VerifiedToken | None = revoked.token
            if rotated is not None:
                self.check_ip(rotated, ip)
            if (
                rotated is None
                or token is None
                or rotated.replaced_by is None  # revoked by a sign-out, not by rotation
                or rotated.family_revoked
                or rotated.generation != rotated.current_generation
            ):
                raise
            if token.exp + self.config.leeway <= now():
                raise TokenExpired(detail="expired") from None
            return token, rotated
        self.check_ip(state, ip)
        return verified, state

    # -- revoking ---------------------------------------------------------

    def end_session(
        self, refresh_token: str, *, ip: str | None = None, idempotent: bool = False
    ) -> tuple[VerifiedToken, SsoLogin | None]:
        """Sign out the session of a refresh token: revoke its family in one write.

        ``ip`` is the request's address (:meth:`request_ip`): an API client's
        token is only honoured from inside the client's whitelist, and from
        outside it nothing changes (:class:`IPNotAuthorized`). The token may
        have been rotated out (see :meth:`verify_for_signout`).

        With ``idempotent``, a genuine refresh token whose session already
        ended, or that has expired, is a success too (its family is revoked,
        a no-op when it already was): signing out what is signed out is
        done. Only a token we did not issue (forged, malformed, unknown, an
        access token) is refused, with :class:`InvalidToken`.

        Returns the token and, for a session that came through an OpenID
        provider, what is needed to send the user on to its end-session URL.
        """
        try:
            verified, _ = self.verify_for_signout(refresh_token, ip=ip)
        except (TokenRevoked, TokenExpired):
            if not idempotent:
                raise
            verified = self._genuine_refresh(refresh_token, ip=ip)
        self.revoke_family(verified.fid)
        try:
            return verified, self.store.family_sso(verified.fid)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None

    def _genuine_refresh(self, refresh_token: str, *, ip: str | None) -> VerifiedToken:
        """A refresh token we issued, live or not: signature, type, and the store's row.

        Raises :class:`InvalidToken` for anything else, and
        :class:`IPNotAuthorized` for an API client's token from outside its whitelist.
        """
        verified = self._decode(refresh_token)
        if verified.typ != REFRESH:
            raise WrongTokenType(detail=f"{verified.typ} token where {REFRESH} expected")
        try:
            state = self.store.lookup(verified.jti)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        if (
            state is None
            or state.typ != verified.typ
            or state.subject != verified.principal
            or state.family != verified.fid
            or state.generation != verified.gen
        ):
            raise UnknownToken(detail="unknown token")
        self.check_ip(state, ip)
        return verified

    def revoke_presented(self, token: str, *, client_id: str | None = None, any_client: bool = False) -> str:
        """RFC 7009 revocation of a token string.

        An access token is revoked alone; a refresh token takes its family.
        Returns ``"revoked"``, ``"invalid"`` (not a token of ours: nothing to
        do, and RFC 7009 still answers 200) or ``"foreign"`` (issued to
        another API client, which this client may not revoke).
        """
        try:
            verified = self._cache.get(token) or self.codec.decode(token)
        except InvalidToken:
            return "invalid"
        if verified.cid is not None and verified.cid != client_id and not any_client:
            return "foreign"
        if verified.typ == ACCESS:
            self.revoke_token(verified.jti, access_expires_at=verified.exp + self.config.leeway)
        else:
            self.revoke_family(verified.fid)
        return "revoked"

    def revoke_provider_sessions(
        self, provider: str, *, sid: str | None, sub: str | None, once: tuple[str, int] | None = None
    ) -> int | None:
        """End the sessions an OpenID provider's back-channel logout names.

        ``once`` (a logout token's id and expiry) makes it a one-time
        operation: ``None`` means that token was used before (a replay).
        """
        try:
            ended = self.store.revoke_provider_sessions(provider, sid, sub, once=once)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        self.replica.wake()  # the families ended are in the log: read it now
        if ended is not None:
            signals.backchannel_logout_received.send(self, provider=provider, sid=sid, sub=sub, ended=ended)
        return ended

    def logout_all(self, token: VerifiedToken) -> None:
        """End every access and refresh token of the token's client or user (O(1))."""
        self.revoke_principal(token.principal)

    def _seen_here(self, kind: str, key: str, value: int | None = None, expires_at: int | None = None) -> None:
        """Apply a revocation this process just committed: visible here at once."""
        if expires_at is None:
            expires_at = int(time.time()) + self.store.event_ttl
        self.replica.apply(Event(0, kind, key, value, expires_at))

    def revoke_principal(self, principal: str) -> None:
        try:
            generation = self.store.bump_generation(principal)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        self._seen_here("gen", principal, generation)
        scope, _, key = principal.partition(":")
        signals.logged_out.send(self, scope=scope, key=key)
        logger.info("flask_logout: revoked all tokens of %s", principal)

    def revoke_user(self, user_id: str) -> None:
        """End every session and token of an end user (O(1))."""
        self.revoke_principal(principal_key(user_id, None))

    def credentials_changed(self, user_id: str) -> None:
        """End every session and token of an end user whose password (or other
        credential) changed: one write, seen by every process (O(1)).

        The same as :meth:`revoke_user`, under the name to call from a
        password change. Sessions signed in after this call are not touched.
        """
        self.revoke_user(user_id)

    def _credential_hash(self, user_id: str) -> str | None:
        """The ``cvh`` claim for ``user_id``: a keyed hash of its credential version.

        Keyed (HMAC-SHA256 with a key derived from the configured secret), so
        the claim does not disclose the version (a counter, a hash's salt) to
        whoever reads the token. ``None`` without a loader, or when the
        loader knows no version for the user.
        """
        if self.credential_version is None:
            return None
        version = self.credential_version(user_id)
        if version is None:
            return None
        if not isinstance(version, str):
            raise TypeError("the credential_version_loader must return a str or None")
        key = self.config.client_secret_key
        if key is None:
            raise RuntimeError(
                "a credential version loader needs a secret: set LOGOUT_SECRET_KEY, SECRET_KEY or "
                "LOGOUT_CLIENT_SECRET_KEY"
            )
        mac = hmac.new(hmac.new(key, CREDENTIAL_KEY_LABEL, hashlib.sha256).digest(), digestmod=hashlib.sha256)
        mac.update(user_id.encode("utf-8") + b"\x00" + version.encode("utf-8"))
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode()

    def revoke_client(self, client_id: str) -> None:
        """End every token of an API client."""
        self.revoke_principal(principal_key(client_id, client_id))

    def revoke_family(self, family: str) -> bool:
        """End one session: every token refreshed from one sign-in.

        True if this call ended it; False if it was already ended (or unknown).
        """
        try:
            ended = self.store.revoke_family(family)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        self._seen_here("fid", family)  # harmless if already known; safe if ended elsewhere
        if ended:
            signals.logged_out.send(self, scope="family", key=family)
        return ended

    def revoke_token(self, jti: str, *, access_expires_at: int | None = None) -> None:
        """End one token. Pass ``access_expires_at`` (its ``exp``) for an access
        token, so that every process's replica learns of it."""
        try:
            with self.store.transaction() as conn:
                self.store.revoke_token(jti, conn, access_expires_at=access_expires_at)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        if access_expires_at is not None:
            self._seen_here("jti", jti, expires_at=access_expires_at)
        signals.logged_out.send(self, scope="token", key=jti)

    def live_sessions(self, subject: str, *, client_id: str | None = None) -> list[SessionInfo]:
        """The sign-ins of a user (or API client) that can still be refreshed."""
        try:
            return self.store.live_sessions(principal_key(subject, client_id), now())
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None

    def jwks(self) -> dict[str, Any]:
        """The public verification key as a JWK Set (RFC 7517), for RS/PS/ES algorithms.

        Empty for HMAC: a shared secret is never published.
        """
        if self._keys_pending:
            self._ensure_keys()
        return {"keys": self.codec.public_jwks()}

    # -- API clients ------------------------------------------------------

    def hash_secret(self, secret: str) -> str:
        """The stored form of a client secret, by ``LOGOUT_CLIENT_SECRET_HASH``.

        ``hmac-sha256`` (the default) stores ``hmac-sha256$<hex>``: HMAC-SHA256
        keyed with a key derived from ``LOGOUT_CLIENT_SECRET_KEY`` (else
        ``LOGOUT_SECRET_KEY``, else ``SECRET_KEY``). Any other value is a
        werkzeug password-hash method.
        """
        if self.config.secret_hash_method == HMAC_SECRET_HASH:
            return HMAC_HASH_PREFIX + self._hmac(secret)
        return generate_password_hash(secret, method=self.config.secret_hash_method)

    def _hmac(self, secret: str) -> str:
        key = self.config.client_secret_key
        assert key is not None  # load_config requires one for hmac-sha256
        return hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()

    def secret_matches(self, stored_hash: str, secret: str) -> bool:
        """Whether ``secret`` is the one ``stored_hash`` was made from (constant time).

        Hashes made by werkzeug (``scrypt:...``, ``pbkdf2:...``, the earlier
        default) keep verifying whatever the setting says.
        """
        if stored_hash.startswith(HMAC_HASH_PREFIX):
            if self.config.client_secret_key is None:
                return False  # configured for a werkzeug method: no key to check it with
            expected = (HMAC_HASH_PREFIX + self._hmac(secret)).encode()
            return hmac.compare_digest(stored_hash.encode(), expected)
        return check_password_hash(stored_hash, secret)

    def register_client(self, client_id: str, secret: str, allowed_cidrs: Sequence[str] = ()) -> None:
        """Create or replace an API client. The secret is stored hashed only.

        Re-registering an existing client with a *different* secret revokes
        every token the client holds, in the same transaction: a secret is
        usually replaced because it leaked, and tokens obtained with the
        leaked one must not outlive it. Re-registering with the same secret
        (say, to change the whitelist, or at every start-up) revokes nothing.
        """
        if not client_id or not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_LENGTH:
            raise ValueError(f"client_id must be a non-empty string of at most {MAX_CLIENT_ID_LENGTH} characters")
        if not is_text(client_id):
            raise ValueError("client_id must be valid text (UTF-8, no NUL)")
        if not is_text(secret) or len(secret) > MAX_CLIENT_SECRET_LENGTH:
            raise ValueError(
                f"client secret must be a non-empty string of at most {MAX_CLIENT_SECRET_LENGTH} characters"
            )
        if isinstance(allowed_cidrs, (str, bytes)):
            raise TypeError(
                f"allowed_cidrs must be a list of CIDR strings, e.g. [{allowed_cidrs!r}], not a single string"
            )
        cidrs = CidrSet(allowed_cidrs)  # raises ValueError naming a malformed CIDR
        try:
            generation = self.store.put_client(
                client_id,
                self.hash_secret(secret),
                cidrs.networks,
                same_secret=lambda stored: self.secret_matches(stored, secret),
            )
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        if generation is not None:
            self._seen_here("gen", principal_key(client_id, client_id), generation)
            signals.logged_out.send(self, scope="client", key=client_id)
            logger.info("flask_logout: client %s has a new secret; its tokens were revoked", client_id)
        self._seen_here("client", client_id)

    def delete_client(self, client_id: str) -> bool:
        """Delete an API client and revoke every token it holds, in one transaction.

        Every process learns of it through the replication log, like a
        logout-all. A client created again under the same id starts afresh:
        none of the old tokens come back. False if there was no such client.
        """
        try:
            generation = self.store.delete_client(client_id)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        if generation is None:
            return False
        self._seen_here("gen", principal_key(client_id, client_id), generation)
        self._seen_here("client", client_id)
        signals.logged_out.send(self, scope="client", key=client_id)
        logger.info("flask_logout: deleted client %s and revoked its tokens", client_id)
        return True

    def authenticate_client(self, client_id: str, secret: str, *, ip: str | None = None) -> ClientRecord:
        """Check an API client's credentials (constant time) and its whitelist.

        An unknown id is checked against a dummy hash of the configured kind,
        so it costs what a wrong secret costs: with ``hmac-sha256`` one HMAC,
        never a password hash. A stored werkzeug hash that verifies is
        replaced by the configured form (a one-time migration per client).
        """
        if (
            not is_text(client_id)
            or not is_text(secret)
            or len(client_id) > MAX_CLIENT_ID_LENGTH
            or len(secret) > MAX_CLIENT_SECRET_LENGTH
        ):
            # No client can have such an id (PostgreSQL text cannot even hold
            # NUL): wrong credentials, not a store failure. Same cost as a miss.
            self.secret_matches(self._dummy_hash, "-")
            raise InvalidCredentials(detail="impossible client id or secret")
        try:
            record = self.store.get_client(client_id)
        except SQLAlchemyError as exc:
            raise _store_down(exc) from None
        ok = self.secret_matches(record.secret_hash if record else self._dummy_hash, secret)
        if record is None or not ok:
            raise InvalidCredentials(detail="bad client credentials")
        if record.allowed_cidrs and not CidrSet(record.allowed_cidrs).allows(ip):
            raise IPNotAuthorized(detail="login from ip outside whitelist")
        if self.config.secret_hash_method == HMAC_SECRET_HASH and not record.secret_hash.startswith(HMAC_HASH_PREFIX):
            self._rehash(record, secret)
        return record

    def _rehash(self, record: ClientRecord, secret: str) -> None:
        """Store a verified legacy (werkzeug) hash in the fast form; a failure only delays it."""
        try:
            self.store.update_client_secret_hash(record.client_id, record.secret_hash, self.hash_secret(secret))
        except SQLAlchemyError as exc:
            logger.warning(
                "flask_logout: re-hashing the secret of %s failed: %s", record.client_id, exc.__class__.__name__
            )

    def login_client(self, client_id: str, secret: str, *, ip: str | None = None) -> TokenPair:
        record = self.authenticate_client(client_id, secret, ip=ip)
        return self.issue_tokens(record.client_id, client_id=record.client_id)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    A missing or blank header is :class:`MissingAuthorization`; any other
    scheme, a missing token, extra parts or bad characters are
    :class:`InvalidToken` (the scheme name is case-insensitive, RFC 7235).
    """
    if header is None or not header.strip():
        raise MissingAuthorization(detail="no authorization header")
    if header.startswith("Bearer ") and " " not in header[7:] and "\t" not in header[7:] and len(header) > 7:
        return header[7:]  # the usual form, without splitting
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise InvalidToken(detail="not a bearer authorization")
    return parts[1]


def is_text(value: object) -> TypeGuard[str]:
    """A non-empty string, encodable as UTF-8 and free of NUL: what every store and hash can take.

    A JSON string may hold a lone surrogate (``"\\ud800"``) that no UTF-8
    encoder accepts, or a NUL that PostgreSQL text cannot hold.
    """
    if not isinstance(value, str) or not value or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _custom_claims(claims: Mapping[str, Any] | None) -> dict[str, Any]:
    """``claims`` checked: string names, none of them reserved, JSON-serialisable values."""
    if not claims:
        return {}
    extra = dict(claims)
    for name in extra:
        if not isinstance(name, str):
            raise TypeError(f"claim names must be strings, not {name!r}")
    reserved = sorted(set(extra) & RESERVED_CLAIMS)
    if reserved:
        raise ValueError(f"reserved claim names cannot be set: {', '.join(reserved)}")
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"claims must be JSON-serialisable: {exc}") from None
    return extra


def _carried(token: VerifiedToken) -> dict[str, Any]:
    """The custom claims of ``token`` (see ``issue_tokens(claims=...)``), carried to its successors."""
    return {name: value for name, value in token.claims.items() if name not in RESERVED_CLAIMS}


def _new_id() -> str:
    """128 random bits in hex: never starts with '-', so it is safe as a CLI argument."""
    return secrets.token_hex(16)


def _redis_channel(config: LogoutConfig) -> Any:
    """The Redis push channel of ``LOGOUT_REDIS_URL``, or None."""
    if config.redis_url is None or not config.push:
        return None
    from .push_redis import RedisChannel

    return RedisChannel(
        config.redis_url, config.push_channel, timeout=config.store_timeout, heartbeat=config.push_heartbeat
    )


def _store_down(exc: SQLAlchemyError) -> StoreUnavailable:
    # The exception text can hold SQL parameters (token ids): log its class only.
    logger.error("flask_logout: token store error: %s", exc.__class__.__name__)
    return StoreUnavailable(detail=exc.__class__.__name__)
