"""The `modbus` source: Modbus TCP and RTU devices read through their profiles.

It owns the keys `profiles_dir`, `buses` and `devices` of a gateway file (`_config.py`), the
device profiles (`_profiles.py`, the YAML in `PROFILES_DIR`), the request planning
(`_plan.py`), the links (`_link.py`) and the polling (`_poller.py`).
"""

from __future__ import annotations

from typing import ClassVar

from gateway.sources._plugin import SourcePlugin
from gateway.sources.modbus import _poller
from gateway.sources.modbus._config import (
    Device,
    ExtraRegister,
    ModbusKeys,
    RtuBus,
    Scale,
    TcpBus,
    modbus_problems,
)
from gateway.sources.modbus._link import ExceptionReply, Link, TransportError
from gateway.sources.modbus._plan import MAX_REGISTERS, decode_request, decode_value, plan_requests
from gateway.sources.modbus._poller import DevicePlan, ModbusSource, plan_device, read_device_once
from gateway.sources.modbus._profiles import PROFILES_DIR, Profile, list_profiles, load_profile, parse_profile

__all__ = [
    "MAX_REGISTERS",
    "PROFILES_DIR",
    "Device",
    "DevicePlan",
    "ExceptionReply",
    "ExtraRegister",
    "Keys",
    "Link",
    "ModbusKeys",
    "ModbusSource",
    "Profile",
    "RtuBus",
    "Scale",
    "TcpBus",
    "TransportError",
    "decode_request",
    "decode_value",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "plan_device",
    "plan_requests",
    "read_device_once",
]


class Keys(ModbusKeys):
    plugin: ClassVar[SourcePlugin] = SourcePlugin(
        name="modbus",
        description="Modbus TCP and RTU devices read through device profiles",
        problems=modbus_problems,
        build=_poller.build,
        check=_poller.check,
        summary=_poller.summary,
        location_tags=frozenset({"tcp", "rtu"}),  # pydantic names the bus model chosen by `type`
    )
