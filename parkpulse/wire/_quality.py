from __future__ import annotations

from enum import IntEnum

__all__ = ["Quality"]


class Quality(IntEnum):
    """Quality of a reading, carried end to end and stored.

    The number is also the severity: the worst quality of a set is the max.
    """

    GOOD = 0
    MANUAL = 1  # entered by a person
    SUBSTITUTED = 2  # estimated or substituted value
    UNCERTAIN = 3  # e.g. outside the metric's plausible range
    BAD = 4  # read failed; value may be null

    @classmethod
    def parse(cls, v: object) -> Quality:
        if isinstance(v, bool):
            raise ValueError(f"quality must be 0..4 or a name, got {v!r}")
        if isinstance(v, int):
            return cls(v)
        if isinstance(v, str):
            return cls[v.upper()]
        raise ValueError(f"quality must be 0..4 or a name, got {v!r}")
