"""Errors of the `opcua` source: no usable connection, kept apart from the server's own refusals."""

from __future__ import annotations

from parkpulse.errors import ParkPulseError

__all__ = ["BrowsePathNotFound", "OpcuaError", "OpcuaRefused", "OpcuaTransportError"]


class OpcuaError(ParkPulseError):
    """Something went wrong talking to an OPC UA server."""


class OpcuaTransportError(OpcuaError):
    """No usable answer: connection refused or lost, timeout, broken secure channel."""


class OpcuaRefused(OpcuaError):
    """The server answered with an error: identity or security refused, a node it does not have."""


class BrowsePathNotFound(OpcuaRefused):
    """A configured browse path does not resolve to a node on the server."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"browse path {path!r} not found on the server ({reason})")
