"""The `opcua` source: machines and meters behind OPC UA servers, by subscription or polling.

It owns the key `opcua` of a gateway file (`_config.py`), the value mapping (`_values.py`), the
session with its security, identity and browse-path resolution (`_session.py`), the running
source with its reconnect loop and its part of `check` (`_source.py`), and its errors
(`_errors.py`).
"""

from __future__ import annotations

from typing import ClassVar

from gateway.sources._plugin import SourcePlugin
from gateway.sources.opcua import _source
from gateway.sources.opcua._config import (
    OpcuaDevice,
    OpcuaKeys,
    OpcuaNode,
    OpcuaSecurity,
    OpcuaServer,
    opcua_problems,
    parse_browse_path,
    parse_node_id,
)
from gateway.sources.opcua._errors import BrowsePathNotFound, OpcuaError, OpcuaRefused, OpcuaTransportError
from gateway.sources.opcua._source import OpcuaSource
from gateway.sources.opcua._values import NodeSpec, Outcome, status_quality, to_row

__all__ = [
    "BrowsePathNotFound",
    "Keys",
    "NodeSpec",
    "OpcuaDevice",
    "OpcuaError",
    "OpcuaKeys",
    "OpcuaNode",
    "OpcuaRefused",
    "OpcuaSecurity",
    "OpcuaServer",
    "OpcuaSource",
    "OpcuaTransportError",
    "Outcome",
    "parse_browse_path",
    "parse_node_id",
    "status_quality",
    "to_row",
]


class Keys(OpcuaKeys):
    plugin: ClassVar[SourcePlugin] = SourcePlugin(
        name="opcua",
        description="machines and meters behind OPC UA servers (subscriptions or polling)",
        problems=opcua_problems,
        build=_source.build,
        check=_source.check,
        summary=_source.summary,
    )
