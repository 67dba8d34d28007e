"""One OPC UA session (asyncua): security and identity, browse-path resolution, reads, error classes.

asyncua's own reconnect is off (`auto_reconnect=False`): the source runs its own loop with
backoff and builds a fresh client, resolves the browse paths again and re-creates the
subscription after every loss, so a restarted server (new namespace table, no old
subscriptions) is handled like a first connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.sources.opcua._config import OpcuaServer, parse_browse_path, parse_node_id
from gateway.sources.opcua._errors import BrowsePathNotFound, OpcuaError, OpcuaRefused, OpcuaTransportError
from gateway.sources.opcua._values import NodeSpec

__all__ = ["classify", "close_client", "open_client", "read_nodes", "resolve_nodes", "ts_ms"]

log = logging.getLogger("parkpulse.gateway.opcua")

# asyncua's DEBUG records dump whole requests, the ActivateSession request with the user's
# password among them: its loggers are held at INFO whatever the gateway's log level.
logging.getLogger("asyncua").setLevel(logging.INFO)

# what a refusal most likely means, for the operator
_HINTS = {
    "BadUserAccessDenied": "wrong user name or password?",
    "BadIdentityTokenInvalid": "wrong user name or password?",
    "BadIdentityTokenRejected": "wrong user name or password, or this identity is not allowed?",
    "BadSecurityPolicyRejected": "the server does not offer this security policy and mode",
    "BadCertificateUntrusted": "the server does not trust the gateway's certificate",
    "BadCertificateInvalid": "a certificate is invalid or expired",
    "BadSecurityChecksFailed": "the server refused the gateway's certificate or signature",
}


def classify(exc: BaseException, what: str) -> OpcuaError:
    """An exception from asyncua as a transport failure or the server's refusal, with a clear message."""
    if isinstance(exc, OpcuaError):
        return exc
    if isinstance(exc, UaStatusCodeError):
        name = ua.StatusCode(exc.code).name
        hint = _HINTS.get(name)
        return OpcuaRefused(f"{what}: the server refused ({name}){f': {hint}' if hint else ''}")
    if isinstance(exc, TimeoutError):
        return OpcuaTransportError(f"{what}: no answer (timeout)")
    if isinstance(exc, OSError | ConnectionError):
        return OpcuaTransportError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, UaError):
        # e.g. "Server certificate mismatch": the server is not the one whose certificate we trust
        return OpcuaRefused(f"{what}: {exc}")
    return OpcuaTransportError(f"{what}: {type(exc).__name__}: {exc}")


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


def _application_uri(cert_der: bytes) -> str | None:
    """The URI in the certificate's subject alternative name (the client must present it as its own)."""
    try:
        san = x509.load_der_x509_certificate(cert_der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def open_client(
    s: OpcuaServer, on_lost: Callable[[Exception], Coroutine[Any, Any, None]] | None = None
) -> Client:
    """A connected, activated client for one server entry; raises OpcuaTransportError or OpcuaRefused."""
    client = Client(s.url, timeout=s.timeout_s, watchdog_intervall=1.0, auto_reconnect=False)
    client.name = client.description = "ParkPulse gateway"
    client.session_timeout = 600_000  # ms; what servers commonly grant
    sec = s.security
    try:
        if sec.policy == "Basic256Sha256":
            assert sec.certificate and sec.private_key and sec.server_certificate  # checked at load
            cert = _der(sec.certificate)
            client.application_uri = _application_uri(cert) or client.application_uri
            mode = getattr(ua.MessageSecurityMode, sec.mode)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=uacrypto.CertProperties(cert, extension="der"),
                private_key=uacrypto.CertProperties(sec.private_key.read_bytes(), extension="pem"),
                server_certificate=uacrypto.CertProperties(_der(sec.server_certificate), extension="der"),
                mode=mode,
            )
    except (OSError, ValueError) as exc:
        raise OpcuaRefused(f"security setup for {s.url}: {exc}") from None
    if s.username is not None:
        client.set_user(s.username)
        password = s.read_password()
        if password is not None:
            client.set_password(password)
    client.connection_lost_callback = on_lost
    try:
        await asyncio.wait_for(client.connect(), s.timeout_s * 3)
    except BaseException as exc:
        await close_client(client)
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise classify(exc, f"connect to {s.url}" + (f" as {s.username!r}" if s.username else "")) from None
    return client


async def close_client(client: Client) -> None:
    """Disconnect, never raising and never waiting long on a dead server."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 2.0)
    with contextlib.suppress(Exception):
        client.disconnect_socket()


async def resolve_nodes(client: Client, specs: Sequence[NodeSpec]) -> list[Node | OpcuaError]:
    """The node of every spec: node ids as given, browse paths translated from the Root folder in one request.

    A browse path that does not resolve gives a BrowsePathNotFound in its place (the others stand)."""
    out: list[Node | OpcuaError] = []
    paths: list[ua.BrowsePath] = []
    where: list[int] = []
    for i, spec in enumerate(specs):
        n = spec.node
        if n.node is not None:
            out.append(client.get_node(parse_node_id(n.node)))
            continue
        assert n.browse_path is not None
        rel = ua.RelativePath()
        for qn in parse_browse_path(n.browse_path):
            el = ua.RelativePathElement()
            el.ReferenceTypeId = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))
            el.IsInverse = False  # type: ignore[assignment]  # asyncua types it as its Boolean marker
            el.IncludeSubtypes = True  # type: ignore[assignment]
            el.TargetName = qn
            rel.Elements.append(el)
        bp = ua.BrowsePath()
        bp.StartingNode = ua.NodeId(ua.Int32(ObjectIds.RootFolder))
        bp.RelativePath = rel
        paths.append(bp)
        where.append(i)
        out.append(BrowsePathNotFound(n.browse_path, "not resolved yet"))
    if paths:
        try:
            results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
        except Exception as exc:
            raise classify(exc, "translate browse paths") from None
        for i, res in zip(where, results, strict=True):
            path = specs[i].node.browse_path or ""
            if res.StatusCode.is_good() and res.Targets:
                out[i] = client.get_node(res.Targets[0].TargetId)
            else:
                out[i] = BrowsePathNotFound(path, ua.StatusCode(res.StatusCode.value).name)
    return out


async def read_nodes(client: Client, nodes: Sequence[Node]) -> list[ua.DataValue]:
    """The values of `nodes` in one Read request; raises OpcuaTransportError or OpcuaRefused."""
    try:
        return await client.read_attributes(list(nodes), AttributeIds.Value)
    except Exception as exc:
        raise classify(exc, "read") from None


def ts_ms(dt: datetime | None) -> int | None:
    """A DataValue timestamp (datetime, UTC; naive taken as UTC) as epoch milliseconds; None when unset."""
    if dt is None or dt.year < 1700:  # the OPC UA "no time" (1601-01-01)
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
