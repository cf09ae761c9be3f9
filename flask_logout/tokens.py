"""Encoding and decoding JWTs, and nothing else.

Decoding accepts exactly one algorithm, the configured one (RFC 8725 section
3.1), so a token cannot pick its own (``alg: none``, or HS256 signed with a
public RSA key). Expiry is *not* checked here: the validator checks it after
the revocation look-up, so that the order of checks (and thus of answers) is
the one the API documents give, and so that a cached token is still
re-checked for expiry on every request. ``iat`` and ``nbf`` are checked here,
with ``LOGOUT_LEEWAY``: a token from a host whose clock is a little fast is
accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from .config import LogoutConfig
from .errors import InvalidToken

ACCESS = "access"
REFRESH = "refresh"
TOKEN_TYPES = (ACCESS, REFRESH)

_REQUIRED = ["jti", "typ", "sub", "fid", "gen", "iat", "exp"]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claim shapes were checked.

    ``claims`` is the whole payload; the attributes are the claims the core
    relies on. Handed to applications as ``environ["flask_logout.token"]``.
    """

    jti: str
    typ: str
    sub: str
    fid: str
    gen: int
    iat: int
    exp: int
    cid: str | None
    claims: dict[str, Any] = field(repr=False, compare=False)
    #: The key whose generation counter ends every token of its owner
    #: (computed once: the request path reads it on every request).
    principal: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "principal", principal_key(self.sub, self.cid))


def principal_key(sub: str, cid: str | None) -> str:
    """API clients and end users live in separate namespaces: a client named
    like a user can never log that user out, or the reverse."""
    return f"client:{cid}" if cid is not None else f"user:{sub}"


class TokenCodec:
    """Signs and verifies tokens with the configured algorithm and key."""

    def __init__(self, config: LogoutConfig) -> None:
        self._config = config
        self._options: Any = {"verify_exp": False, "require": _REQUIRED}
        self._signing_key: Any = None
        self._headers: dict[str, str] | None = None
        self._verifying: dict[str | None, Any] = {}
        if config.signing_key is not None:
            self.use_keys(config.key_id, config.signing_key, {config.key_id: config.verifying_key})

    def use_keys(self, signing_kid: str | None, signing_key: Any, verifying: dict[Any, Any]) -> None:
        """Switch keys (key rotation). Tokens must name one of ``verifying`` by ``kid``."""
        self._verifying = dict(verifying)
        self._headers = {"kid": signing_kid} if signing_kid else None
        self._signing_key = signing_key

    def encode(self, claims: dict[str, Any]) -> str:
        payload = dict(claims)
        if self._config.issuer:
            payload["iss"] = self._config.issuer
        if self._config.audience:
            payload["aud"] = self._config.audience
        return jwt.encode(payload, self._signing_key, algorithm=self._config.algorithm, headers=self._headers)

    def public_jwks(self) -> list[dict[str, Any]]:
        """The verification key as JWKs with ``kid``, ``alg`` and ``use``."""
        if self._config.algorithm.startswith("HS"):
            return []
        from jwt.algorithms import get_default_algorithms

        algorithm = get_default_algorithms()[self._config.algorithm]
        keys = []
        for kid, public in self._verifying.items():
            jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
            jwk.update({"kid": kid, "alg": self._config.algorithm, "use": "sig"})
            keys.append(jwk)
        return keys

    def decode(self, token: str) -> VerifiedToken:
        """Verify signature, issuer, audience and claim types; raise :class:`InvalidToken`."""
        verifying = self._verifying
        if len(verifying) == 1 and None in verifying:
            key = verifying[None]  # one key and no kid: an HMAC secret
        else:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.PyJWTError as exc:
                raise InvalidToken(detail=f"jwt: {exc.__class__.__name__}") from None
            if not isinstance(kid, str) or kid not in verifying:
                raise InvalidToken(detail="unknown kid")
            key = verifying[kid]
        try:
            decoded = jwt.api_jwt.decode_complete(
                token,
                key,
                algorithms=[self._config.algorithm],
                options=self._options,
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway,  # for iat and nbf; exp is checked by the caller
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(detail=f"jwt: {exc.__class__.__name__}") from None
        return _verified(decoded["payload"])


def _verified(claims: dict[str, Any]) -> VerifiedToken:
    jti, typ, sub, fid = claims["jti"], claims["typ"], claims["sub"], claims["fid"]
    gen, iat, exp, cid = claims["gen"], claims["iat"], claims["exp"], claims.get("cid")
    if not (
        isinstance(jti, str)
        and typ in TOKEN_TYPES
        and isinstance(sub, str)
        and isinstance(fid, str)
        and _is_int(gen)
        and _is_int(iat)
        and _is_int(exp)
        and (cid is None or isinstance(cid, str))
    ):
        raise InvalidToken(detail="malformed claims")
    return VerifiedToken(jti=jti, typ=typ, sub=sub, fid=fid, gen=gen, iat=iat, exp=exp, cid=cid, claims=claims)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def now() -> int:
    return int(time.time())
