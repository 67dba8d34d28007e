"""Password hashing (argon2id, argon2-cffi defaults follow RFC 9106's recommended profile) and the
password policy applied wherever a password is set (`parkpulse users add|set-password`)."""

from __future__ import annotations

import json
import string
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from parkpulse.text import first_control

__all__ = [
    "MIN_DISTINCT_CHARACTERS",
    "MIN_PASSWORD_LENGTH",
    "check_password_policy",
    "common_passwords",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MIN_DISTINCT_CHARACTERS = 4
# A user name this long or longer may not appear anywhere in the password (shorter: not equal).
_NAME_INSIDE_MIN = 3
_HASHER = PasswordHasher()  # argon2id
# A real hash of a random string, verified against for unknown users so timing says nothing.
_DUMMY = _HASHER.hash("parkpulse-no-such-user-password")
_DECORATION = string.digits + string.punctuation + " "
_UNLEET = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "@": "a", "$": "s", "!": "i"})
_RUNS = (
    "01234567890",
    "09876543210",
    string.ascii_lowercase,
    string.ascii_lowercase[::-1],
    "qwertyuiop",
    "poiuytrewq",
    "asdfghjkl",
    "lkjhgfdsa",
    "zxcvbnm",
    "mnbvcxz",
)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list (console/common_passwords.json), lower-cased."""
    text = resources.files("console").joinpath("common_passwords.json").read_text(encoding="utf-8")
    return frozenset(p.casefold() for p in json.loads(text)["passwords"])


def _common_forms(folded: str) -> set[str]:
    """The password and its undecorated / un-substituted forms, for the common-password check."""
    forms = {folded, folded.strip(_DECORATION), folded.rstrip(_DECORATION), folded.lstrip(_DECORATION)}
    forms |= {f.translate(_UNLEET) for f in list(forms)}
    forms |= {f.strip(_DECORATION) for f in list(forms)}
    return {f for f in forms if f}


def _is_run(folded: str) -> bool:
    """A stretch of a keyboard row, the alphabet or the digits (forwards or backwards)."""
    return any(folded in run * 3 for run in _RUNS)


def check_password_policy(password: str, user_name: str | None = None) -> str | None:
    """None when acceptable, else the reason (never echoing the password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters long"
    if password.strip() != password:
        return "must not start or end with white space"
    if first_control(password) is not None:
        return "must not contain control characters"
    folded = password.casefold()
    if len(set(folded)) < MIN_DISTINCT_CHARACTERS:
        return (
            f"must use at least {MIN_DISTINCT_CHARACTERS} different characters (not one repeated character)"
        )
    if user_name:
        name = user_name.casefold()
        if folded == name or (len(name) >= _NAME_INSIDE_MIN and name in folded) or folded == name[::-1]:
            return "must not be or contain the user name"
    if _common_forms(folded) & common_passwords():
        return "is a common password (in the list shipped with the console); choose a less guessable one"
    if _is_run(folded):
        return "is a keyboard or number sequence; choose a less guessable one"
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
