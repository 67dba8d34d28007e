"""Password hashing: argon2id (argon2-cffi defaults follow RFC 9106's recommended profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MIN_PASSWORD_LENGTH", "check_password_policy", "hash_password", "needs_rehash", "verify_password"]

MIN_PASSWORD_LENGTH = 10
_HASHER = PasswordHasher()  # argon2id
# A real hash of a random string, verified against for unknown users so timing says nothing.
_DUMMY = _HASHER.hash("parkpulse-no-such-user-password")


def check_password_policy(password: str) -> str | None:
    """None when acceptable, else the reason (never echoing the password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > 1024:
        return "must be at most 1024 characters long"
    if password.strip() != password:
        return "must not start or end with white space"
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
