"""Encoding and decoding JWTs, and nothing else.

Decoding accepts exactly one algorithm, the configured one (RFC 8725 section
3.1), so a token cannot pick its own (``alg: none``, or HS256 signed with a
public RSA key). Expiry is *not* checked here: the validator checks it after
the revocation look-up, so that the order of checks (and thus of answers) is
the one the API documents give, and so that a cached token is still
re-checked for expiry on every request.
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
        self._headers = {"kid": config.key_id} if config.key_id else None
        self._options: Any = {"verify_exp": False, "require": _REQUIRED}

    def encode(self, claims: dict[str, Any]) -> str:
        payload = dict(claims)
        if self._config.issuer:
            payload["iss"] = self._config.issuer
        if self._config.audience:
            payload["aud"] = self._config.audience
        return jwt.encode(payload, self._config.signing_key, algorithm=self._config.algorithm, headers=self._headers)

    def public_jwks(self) -> list[dict[str, Any]]:
        """The verification key as JWKs with ``kid``, ``alg`` and ``use``."""
        if self._config.algorithm.startswith("HS"):
            return []
        from jwt.algorithms import get_default_algorithms

        jwk: dict[str, Any] = get_default_algorithms()[self._config.algorithm].to_jwk(
            self._config.verifying_key, as_dict=True
        )
        jwk.update({"kid": self._config.key_id, "alg": self._config.algorithm, "use": "sig"})
        return [jwk]

    def decode(self, token: str) -> VerifiedToken:
        """Verify signature, issuer, audience and claim types; raise :class:`InvalidToken`."""
        try:
            decoded = jwt.api_jwt.decode_complete(
                token,
                self._config.verifying_key,
                algorithms=[self._config.algorithm],
                options=self._options,
                issuer=self._config.issuer,
                audience=self._config.audience,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(detail=f"jwt: {exc.__class__.__name__}") from None
        if self._config.key_id and decoded["header"].get("kid") != self._config.key_id:
            raise InvalidToken(detail="unknown kid")
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
