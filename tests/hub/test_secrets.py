"""Secrets: nothing is stored in clear, and keys parse strictly."""

from __future__ import annotations

import pytest

from tether.core.errors import Unauthorized
from tether.hub import secrets


async def test_password_hash_is_argon2_and_verifies() -> None:
    hashed = await secrets.hash_password("correct horse")
    assert hashed.startswith("$argon2")
    assert "correct horse" not in hashed
    assert await secrets.verify_password(hashed, "correct horse")
    assert not await secrets.verify_password(hashed, "wrong")
    assert not await secrets.verify_password("garbage", "x")


def test_generated_secret_hash() -> None:
    secret = secrets.generate_secret()
    hashed = secrets.hash_secret(secret)
    assert secret not in hashed
    assert secrets.verify_secret(hashed, secret)
    assert not secrets.verify_secret(hashed, secret + "x")
    assert not secrets.verify_secret(None, secret)


def test_api_key_format() -> None:
    key, prefix, secret = secrets.generate_api_key()
    assert secrets.looks_like_api_key(key)
    assert secrets.split_api_key(key) == (prefix, secret)
    for bad in ("tk_", "tk__x", "xx_a_b", "tk_a_"):
        with pytest.raises(Unauthorized):
            secrets.split_api_key(bad)
