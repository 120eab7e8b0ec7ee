"""Hashing and generation of every secret Tether keeps.

Two kinds of secret, two hashes:

* **Passwords** are chosen by people and may be weak, so they get argon2 (slow on
  purpose). Hashing runs in a worker thread so the event loop never stalls on it.
* **Generated secrets** (API keys, device credentials) carry 256 random bits, so a brute
  force is hopeless whatever the hash; SHA-256 is then the right tool. It keeps a
  reconnect storm of 20,000 devices from costing 20,000 argon2 runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tether.core.errors import Unauthorized

_hasher = PasswordHasher()

API_KEY_PREFIX = "tk"


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def generate_secret() -> str:
    """A 256-bit URL-safe random secret (device credentials, signing keys)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(secret_hash: str | None, secret: str) -> bool:
    if not secret_hash:
        return False
    return hmac.compare_digest(secret_hash, hash_secret(secret))


def generate_api_key() -> tuple[str, str, str]:
    """A new API key as ``(full_key, prefix, secret)``; only the prefix is stored in clear.

    The key reads ``tk_<prefix>_<secret>``: the prefix finds the row, the secret is checked
    against its hash, and the ``tk_`` marker lets log scanners spot leaked keys.
    """
    prefix = secrets.token_hex(6)
    secret = generate_secret()
    return f"{API_KEY_PREFIX}_{prefix}_{secret}", prefix, secret


def split_api_key(key: str) -> tuple[str, str]:
    """``(prefix, secret)`` of a key, or :class:`Unauthorized` if it is not one of ours."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        raise Unauthorized("malformed API key")
    return parts[1], parts[2]


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX + "_")
