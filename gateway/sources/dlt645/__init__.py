"""The `dlt645` source: DL/T 645-2007 and -1997 electricity meters on RS-485 or a transparent TCP converter.

It owns the keys `dlt645_profiles_dir`, `dlt645_buses` and `dlt645_meters` of a gateway file
(`_config.py`). The standard's figures are data (`standard.yaml`, read by `_standard.py`); frames
(`_frame.py`), value formats (`_bcd.py`), meter profiles (`_profiles.py`, YAML in `PROFILES_DIR`),
the line (`_link.py`), the exchanges (`_client.py`) and the polling (`_poller.py`).
"""

from __future__ import annotations

from typing import ClassVar

from gateway.sources._plugin import SourcePlugin
from gateway.sources.dlt645 import _poller
from gateway.sources.dlt645._bcd import ValueFormat, from_bcd, parse_format, to_bcd
from gateway.sources.dlt645._client import read_address, read_di
from gateway.sources.dlt645._config import Dlt645Keys, Meter, MeterScale, SerialBus, TcpBus, dlt645_problems
from gateway.sources.dlt645._errors import AbnormalReply, DecodeError, Dlt645Error, FrameError, TransportError
from gateway.sources.dlt645._frame import Frame, address_bytes, address_text, encode_frame, find_frame
from gateway.sources.dlt645._link import Link
from gateway.sources.dlt645._poller import (
    Dlt645Source,
    MeterPlan,
    PollResult,
    Read,
    decode_read,
    discover,
    plan_meter,
    poll,
)
from gateway.sources.dlt645._profiles import (
    PROFILES_DIR,
    Item,
    Profile,
    list_profiles,
    load_profile,
    parse_profile,
)
from gateway.sources.dlt645._standard import STANDARD_FILE, EditionRules, standard

__all__ = [
    "PROFILES_DIR",
    "STANDARD_FILE",
    "AbnormalReply",
    "DecodeError",
    "Dlt645Error",
    "Dlt645Keys",
    "Dlt645Source",
    "EditionRules",
    "Frame",
    "FrameError",
    "Item",
    "Keys",
    "Link",
    "Meter",
    "MeterPlan",
    "MeterScale",
    "PollResult",
    "Profile",
    "Read",
    "SerialBus",
    "TcpBus",
    "TransportError",
    "ValueFormat",
    "address_bytes",
    "address_text",
    "decode_read",
    "discover",
    "encode_frame",
    "find_frame",
    "from_bcd",
    "list_profiles",
    "load_profile",
    "parse_format",
    "parse_profile",
    "plan_meter",
    "poll",
    "read_address",
    "read_di",
    "standard",
    "to_bcd",
]


class Keys(Dlt645Keys):
    plugin: ClassVar[SourcePlugin] = SourcePlugin(
        name="dlt645",
        description="DL/T 645-2007/-1997 electricity meters on RS-485 or a transparent TCP converter",
        problems=dlt645_problems,
        build=_poller.build,
        check=_poller.check,
        summary=_poller.summary,
        location_tags=frozenset({"serial", "tcp"}),
    )
