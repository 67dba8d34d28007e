"""Numeric bounds of the wire contract: what the store's columns can hold.

Every number that reaches the database is checked against these in the decoder and the models, so
the database never refuses a batch for a number it cannot hold (issue 9: a seq of 2⁶³ once stopped
all ingestion).
"""

from __future__ import annotations

import sys

__all__ = [
    "FLOAT_MAX",
    "INT32_MAX",
    "INT64_MAX",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "TEXT_MAX",
]

INT32_MAX = 2**31 - 1  # integer columns (gap counts, spool depth)
INT64_MAX = 2**63 - 1  # bigint columns (seq, counters)
FLOAT_MAX = sys.float_info.max  # double precision: a larger number cannot be stored, only refused
# Timestamps: 2000-01-01 (nothing older is plausible telemetry; the store's partitions start there)
# to 9999-12-31 (the largest instant datetime and timestamptz share).
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 253_402_300_799_999
TEXT_MAX = 500  # free-text fields of the wire (gap reasons) are cut to this many characters
