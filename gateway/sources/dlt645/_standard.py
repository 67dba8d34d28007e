"""The figures of DL/T 645 this source uses (framing bytes, control codes, error words), read
from `standard.yaml` next to this module, where each has its source and a verified mark."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from parkpulse.errors import ConfigError

__all__ = ["STANDARD_FILE", "Edition", "EditionRules", "Standard", "standard"]

STANDARD_FILE = Path(__file__).resolve().parent / "standard.yaml"
Edition = Literal["2007", "1997"]


@dataclass(frozen=True, slots=True)
class EditionRules:
    edition: Edition
    di_bytes: int
    read: int
    read_follow: int
    read_address: int | None
    max_read_len: int
    default_baudrate: int
    error_bits: dict[int, str]

    def error_names(self, word: int) -> list[str]:
        """The names of the bits set in an error word (unknown bits as `bit N`)."""
        return [self.error_bits.get(b, f"bit {b}") for b in range(8) if word >> b & 1]


@dataclass(frozen=True, slots=True)
class Standard:
    start: int
    end: int
    preamble_byte: int
    data_offset: int
    bits_per_byte: int
    broadcast_address: str
    wildcard_byte: int
    direction_bit: int
    abnormal_bit: int
    follow_bit: int
    function_mask: int
    editions: dict[str, EditionRules]

    def rules(self, edition: str) -> EditionRules:
        return self.editions[edition]


def _edition(name: str, raw: dict[str, Any]) -> EditionRules:
    return EditionRules(
        edition="2007" if name == "2007" else "1997",
        di_bytes=int(raw["di_bytes"]),
        read=int(raw["read"]),
        read_follow=int(raw["read_follow"]),
        read_address=None if raw.get("read_address") is None else int(raw["read_address"]),
        max_read_len=int(raw["max_read_len"]),
        default_baudrate=int(raw["default_baudrate"]),
        error_bits={int(k): str(v) for k, v in raw["error_bits"].items()},
    )


@lru_cache(maxsize=1)
def standard() -> Standard:
    try:
        raw = yaml.safe_load(STANDARD_FILE.read_text(encoding="utf-8"))
        f, c = raw["framing"], raw["control"]
        return Standard(
            start=int(f["start"]),
            end=int(f["end"]),
            preamble_byte=int(f["preamble_byte"]),
            data_offset=int(f["data_offset"]),
            bits_per_byte=int(f["bits_per_byte"]),
            broadcast_address=str(f["broadcast_address"]),
            wildcard_byte=int(f["wildcard_byte"]),
            direction_bit=int(c["direction_bit"]),
            abnormal_bit=int(c["abnormal_bit"]),
            follow_bit=int(c["follow_bit"]),
            function_mask=int(c["function_mask"]),
            editions={str(k): _edition(str(k), v) for k, v in raw["editions"].items()},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{STANDARD_FILE}: cannot read the DL/T 645 figures: {exc!r}") from None
