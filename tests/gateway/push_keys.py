"""The platform's config-push key pair for the managed-gateway tests (made once per test run)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY = Ed25519PrivateKey.generate()
"""Signs the pushes the tests publish, as the fleet publisher does."""

_DIR = Path(tempfile.mkdtemp(prefix="pp_push_key_"))
PUBLIC_PEM = _DIR / "fleet.pub"
PUBLIC_PEM.write_bytes(
    KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)
