"""The `modbus` source: Modbus TCP and RTU devices read through their profiles."""

from __future__ import annotations

from gateway.sources import register_source
from gateway.sources.modbus._link import ExceptionReply, Link, TransportError
from gateway.sources.modbus._poller import (
    DevicePlan,
    ModbusPlugin,
    ModbusSource,
    plan_device,
    read_device_once,
)

__all__ = [
    "DevicePlan",
    "ExceptionReply",
    "Link",
    "ModbusPlugin",
    "ModbusSource",
    "TransportError",
    "plan_device",
    "read_device_once",
]

register_source(ModbusPlugin())
