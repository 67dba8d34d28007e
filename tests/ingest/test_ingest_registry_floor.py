"""The history floor of each device: registration time less the window, for any window size."""

from __future__ import annotations

import psycopg
import pytest

from ingest._registry import load_registry
from parkpulse.registry import import_registry
from parkpulse.synthetic import synthetic_park


@pytest.mark.parametrize("window", [0, 365 * 86400, 10**7, 10**7 + 0.5])
def test_a_window_beyond_25_days_given_as_an_int_does_not_overflow(db: str, window: float) -> None:
    """An int parameter above 2^31/1000 s used to be sent as int4 and overflow in `* 1000`."""
    with psycopg.connect(db) as conn:
        import_registry(conn, synthetic_park("pf", firms=1, meters_per_gateway=2))
        conn.commit()
        (reg_ms,) = conn.execute(
            "SELECT floor(extract(epoch FROM min(registered_at)) * 1000)::bigint FROM devices"
        ).fetchone()  # type: ignore[misc]
        data = load_registry(conn, window)
    floors = [f for per_gw in data.floors.values() for f in per_gw.values()]
    assert len(floors) == 2
    assert min(floors) == pytest.approx(reg_ms - window * 1000, abs=1)
