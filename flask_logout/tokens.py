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
from jwt.algorithms import HMACAlgorithm

from .config import HMAC_ALGORITHMS, LogoutConfig
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


class PreparedHMAC(HMACAlgorithm):
    """pyjwt's HMAC algorithm, checking each secret once instead of on every token.

    pyjwt checks, on every encode and decode, that an HMAC secret is not an
    asymmetric key in disguise (PEM, SSH, DER, JWK: the algorithm-confusion
    attack of RFC 8725 section 2.1), trying to load it with two of
    cryptography's DER parsers: about 8 us, a fifth of a decode. Here the
    secrets are this library's own configuration, admitted once (with
    pyjwt's own checks, which raise :class:`jwt.InvalidKeyError`); any other
    key still gets pyjwt's checks on every call. Signing and verifying are
    pyjwt's, unchanged.
    """

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[Any, bytes] = {}

    def admit(self, key: str | bytes) -> None:
        """Check ``key`` with pyjwt's checks and remember the prepared form."""
        self._prepared[key] = super().prepare_key(key)

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        return prepared if prepared is not None else super().prepare_key(key)


def _pyjwt(algorithm: str) -> tuple[jwt.PyJWT, PreparedHMAC | None]:
    """A pyjwt instance of the codec's own (the module-level one is left
    alone), with :class:`PreparedHMAC` for an HMAC algorithm where this pyjwt
    version lets it be registered; otherwise pyjwt's default algorithm."""
    instance = jwt.PyJWT()
    jws = getattr(instance, "_jws", None)  # pyjwt keeps its JWS object there (2.x)
    if algorithm not in HMAC_ALGORITHMS or not isinstance(jws, jwt.PyJWS):
        return instance, None
    prepared = PreparedHMAC(getattr(HMACAlgorithm, f"SHA{algorithm[2:]}"))
    jws.unregister_algorithm(algorithm)
    jws.register_algorithm(algorithm, prepared)
    return instance, prepared


class TokenCodec:
    """Signs and verifies tokens with the configured algorithm and key."""

    def __init__(self, config: LogoutConfig) -> None:
        self._config = config
        self._jwt, self._hmac = _pyjwt(config.algorithm)
        self._options: Any = {"verify_exp": False, "require": _REQUIRED}
        self._signing_key: Any = None
        self._headers: dict[str, str] | None = None
        self._verifying: dict[str | None, Any] = {}
        if config.signing_key is not None:
            self.use_keys(config.key_id, config.signing_key, {config.key_id: config.verifying_key})

    def use_keys(self, signing_kid: str | None, signing_key: Any, verifying: dict[Any, Any]) -> None:
        """Switch keys (key rotation). Tokens must name one of ``verifying`` by ``kid``."""
        if self._hmac is not None:
            for key in (signing_key, *verifying.values()):
                if key is not None:
                    self._hmac.admit(key)
        self._verifying = dict(verifying)
        self._headers = {"kid": signing_kid} if signing_kid else None
        self._signing_key = signing_key

    def encode(self, claims: dict[str, Any]) -> str:
        payload = dict(claims)
        if self._config.issuer:
            payload["iss"] = self._config.issuer
        if self._config.audience:
            payload["aud"] = self._config.audience
        return self._jwt.encode(payload, self._signing_key, algorithm=self._config.algorithm, headers=self._headers)

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
            decoded = self._jwt.decode_complete(
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
