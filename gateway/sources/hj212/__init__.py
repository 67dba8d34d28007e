"""The `hj212` source: a TCP receiver for CEMS data loggers speaking HJ 212-2017 or HJ 212-2025.

It owns the key `hj212` of a gateway file (`_config.py`), the protocol tables (`protocol.yaml`,
`_tables.py`), the packet codec (`_packet.py`), the mapping to catalogue metrics (`_mapping.py`),
the dead letters (`_deadletter.py`), the receiver (`_server.py`) and its part of `check`
(`_check.py`).
"""

from __future__ import annotations

from typing import ClassVar

from gateway.sources._plugin import SourcePlugin
from gateway.sources.hj212 import _check, _server
from gateway.sources.hj212._config import Hj212Keys, Hj212Listen, Hj212Logger, hj212_problems
from gateway.sources.hj212._deadletter import DeadLetters
from gateway.sources.hj212._mapping import MetricInfo, map_data
from gateway.sources.hj212._packet import (
    Frame,
    Framer,
    Hj212Error,
    Junk,
    Packet,
    PacketError,
    build_packet,
    crc16,
    parse_segment,
)
from gateway.sources.hj212._server import Hj212Receiver, dead_letter_path
from gateway.sources.hj212._tables import EditionTable, load_tables

__all__ = [
    "DeadLetters",
    "EditionTable",
    "Frame",
    "Framer",
    "Hj212Error",
    "Hj212Keys",
    "Hj212Listen",
    "Hj212Logger",
    "Hj212Receiver",
    "Junk",
    "Keys",
    "MetricInfo",
    "Packet",
    "PacketError",
    "build_packet",
    "crc16",
    "dead_letter_path",
    "load_tables",
    "map_data",
    "parse_segment",
]


class Keys(Hj212Keys):
    plugin: ClassVar[SourcePlugin] = SourcePlugin(
        name="hj212",
        description="CEMS data loggers sending HJ 212-2017/2025 packets over TCP",
        problems=hj212_problems,
        build=_server.build,
        check=_check.check,
        summary=_server.summary,
    )
