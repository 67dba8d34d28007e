"""Helpers of the fleet tests: a registered park with two gateways, and managed configurations."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY = Ed25519PrivateKey.generate()
"""The platform's signing key in these tests; gateways verify with KEY.public_key()."""


@dataclass
class Registry:
    dsn: str
    park: str
    firm: str
    other_firm: str
    gw: str  # in `firm`
    gw2: str  # in `other_firm`

    def conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def registry(db: str, unique_id: str) -> Registry:
    r = Registry(db, unique_id, f"{unique_id}-f1", f"{unique_id}-f2", f"{unique_id}-g1", f"{unique_id}-g2")
    with r.conn() as conn:
        conn.execute("INSERT INTO parks (park_id, name) VALUES (%s, 'Fleet park')", (r.park,))
        for firm, gw in ((r.firm, r.gw), (r.other_firm, r.gw2)):
            conn.execute(
                "INSERT INTO firms (firm_id, park_id, name, land_mu) VALUES (%s, %s, %s, 10)",
                (firm, r.park, firm),
            )
            conn.execute("INSERT INTO gateways (gateway_id, firm_id) VALUES (%s, %s)", (gw, firm))
    return r


BASE: dict[str, Any] = {
    "buses": [{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": 1502}],
    "devices": [
        {"id": "incomer", "bus": "lan", "device_id": 1, "profile": "eastron-sdm630", "interval_s": 5},
    ],
    "mqtt": [],
}


def config(*devices: dict[str, Any], **top: Any) -> dict[str, Any]:
    """BASE with more devices (unit ids 2, 3, … unless given) and top-level keys replaced."""
    out = copy.deepcopy(BASE)
    for i, d in enumerate(devices, start=2):
        out["devices"].append({"bus": "lan", "device_id": i, "interval_s": 5, **d})
    out.update(top)
    return out


PARK_PROFILE: dict[str, Any] = {
    "name": "acme-pump-meter",
    "manufacturer": "ACME",
    "model": "PM-1",
    "source": {"document": "ACME PM-1 register map", "edition": "2025-03"},
    "address_base": 0,
    "registers": [
        {"metric": "elec_import_kwh", "address": 0, "type": "f32", "unit": "kWh"},
        {"metric": "active_power_kw", "address": 2, "type": "f32", "unit": "kW"},
    ],
}
