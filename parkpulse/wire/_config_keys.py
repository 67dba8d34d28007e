"""The platform's config-push signing key and the gateways' copy of its public half (PEM files).

`parkpulse fleet keygen` writes both; the private key stays with the fleet publisher (mode 0600),
the public key is provisioned on every managed gateway at install (`managed.verify_key`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["generate_key_pair", "load_signing_key", "load_verify_key"]


def generate_key_pair(private_path: Path, public_path: Path) -> Ed25519PublicKey:
    """Write a new Ed25519 key pair; refuses to overwrite an existing private key."""
    if private_path.exists():
        raise FileExistsError(f"{private_path}: a signing key is already there; move it away first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    public_path.write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pub


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The platform's private key; ValueError names the file (never its content)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 key (got {type(key).__name__})")
    return key


def load_verify_key(path: Path) -> Ed25519PublicKey:
    """A gateway's copy of the platform's public key; ValueError names the file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable PEM public key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key (got {type(key).__name__})")
    return key
