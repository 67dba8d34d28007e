"""Fixtures of the fleet tests. They reuse the console's, ingest's and the production broker's test
kits (tests/console, tests/ingest, tests/deploy), put on the import path here; helpers live in
platform_testkit.py (`from conftest import` would be ambiguous across test folders)."""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _folder in ("console", "ingest", "deploy"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

from console_testkit import client_as, make_client, world  # noqa: E402
from ingest_testkit import park, start_ingest  # noqa: E402
from platform_testkit import registry  # noqa: E402

__all__ = ["client_as", "make_client", "park", "registry", "start_ingest", "world"]
