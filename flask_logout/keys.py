"""Signing keys kept in the store, so they can be rotated without a restart.

With ``LOGOUT_KEYRING = True`` the RS/PS/ES signing keys live in the
``logout_keys`` table. The newest key that is not retired signs; every key
that is not retired, or was retired less than one refresh-token lifetime
(plus the leeway and an hour) ago, verifies and is published in the JWKS, so a token signed just before a
rotation keeps working until it expires, and clients that cache the JWKS see
the new key before any token carries it.

``flask logout keys rotate`` adds a key and retires the others; the change
goes through the replication log, so every process switches within
``LOGOUT_SYNC_INTERVAL`` (at once with PostgreSQL push).

Private keys are stored as PKCS#8 PEM, encrypted with
``LOGOUT_KEYRING_PASSPHRASE`` when it is set. Whoever can read the table
without the passphrase can sign tokens: set one, or keep the database as
guarded as the key itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .config import EC_ALGORITHMS, ConfigError, _thumbprint

_CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}


@dataclass(frozen=True)
class StoredKey:
    kid: str
    algorithm: str
    private_pem: str
    created_at: float
    retired_at: float | None


@dataclass(frozen=True)
class LoadedKeys:
    """What a codec needs: the key that signs and the keys that verify, by ``kid``."""

    signing_kid: str
    signing_key: Any
    verifying: dict[str, Any]


def generate(algorithm: str) -> Any:
    """A new private key for ``algorithm``."""
    if algorithm in EC_ALGORITHMS:
        return ec.generate_private_key(_CURVES[EC_ALGORITHMS[algorithm]])
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def to_pem(private: Any, passphrase: bytes | None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem: bytes = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return pem.decode()


def from_pem(pem: str, passphrase: bytes | None) -> Any:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=passphrase)
    except (TypeError, ValueError):
        raise ConfigError(
            "LOGOUT_KEYRING_PASSPHRASE", "cannot decrypt the signing keys in the store (wrong or missing passphrase)"
        ) from None


def kid_of(private: Any, algorithm: str) -> str:
    return _thumbprint(private.public_key(), algorithm)


def select(keys: list[StoredKey], passphrase: bytes | None, verify_for: int, now: float | None = None) -> LoadedKeys:
    """Pick the signing key and the verifying keys from the stored ones."""
    current = time.time() if now is None else now
    active = [k for k in keys if k.retired_at is None]
    if not active:
        raise ConfigError("LOGOUT_KEYRING", "the store holds no active signing key; run flask logout keys rotate")
    signer = max(active, key=lambda k: (k.created_at, k.kid))
    verifying = {}
    for key in keys:
        if key.retired_at is None or key.retired_at + verify_for > current:
            verifying[key.kid] = from_pem(key.private_pem, passphrase).public_key()
    return LoadedKeys(signer.kid, from_pem(signer.private_pem, passphrase), verifying)
