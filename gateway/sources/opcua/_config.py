"""The `opcua` key of a gateway file (a list of server connections with their devices and nodes) and its cross-checks.

Node ids follow the OPC UA text form (`ns=2;s=Line1.State`, `ns=2;i=1005`); browse paths are
`/`-separated qualified names from the Root folder (`0:Objects/2:Line1/2:GoodCount`), resolved
when the gateway connects. Paths of certificate, key and password files are taken as written:
relative ones are relative to the gateway's working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from asyncua import ua
from asyncua.ua.uaerrors import UaStringParsingError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import Field, field_validator

from gateway.sources._plugin import DEVICE_PATTERN, NAME_PATTERN, CheckContext, PluginKeys, Strict
from parkpulse.catalogue import Metric, load_catalogue
from parkpulse.errors import FieldError

__all__ = [
    "OpcuaDevice",
    "OpcuaKeys",
    "OpcuaNode",
    "OpcuaSecurity",
    "OpcuaServer",
    "opcua_problems",
    "parse_browse_path",
    "parse_node_id",
]

_URL = re.compile(r"^opc\.tcp://[^/:@\s]+(:\d{1,5})?(/\S*)?$")
_SEGMENT = re.compile(r"^(\d{1,5}):(.+)$")


def parse_node_id(text: str) -> ua.NodeId:
    """A node id in its text form; ValueError naming what is wrong."""
    if not text.startswith(("ns=", "i=", "s=", "g=", "b=")):
        raise ValueError("must be a node id like ns=2;s=Line1.State or ns=2;i=1005")
    try:
        return ua.NodeId.from_string(text)
    except UaStringParsingError:
        raise ValueError("not a valid node id (like ns=2;s=Line1.State or ns=2;i=1005)") from None


def parse_browse_path(text: str) -> list[ua.QualifiedName]:
    """`0:Objects/2:Line1/2:GoodCount` -> qualified names from the Root folder; ValueError naming the bad segment."""
    segments = text.strip("/").split("/")
    out: list[ua.QualifiedName] = []
    for seg in segments:
        m = _SEGMENT.match(seg)
        if m is None or not m.group(2).strip():
            raise ValueError(
                f"segment {seg!r} is not <namespace index>:<browse name> (e.g. 0:Objects/2:Line1/2:GoodCount)"
            )
        out.append(ua.QualifiedName(m.group(2), int(m.group(1))))
    return out


class OpcuaSecurity(Strict):
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = Field(
        default=None, description="the gateway's application certificate (DER or PEM)"
    )
    private_key: Path | None = Field(default=None, description="its private key (PEM)")
    server_certificate: Path | None = Field(
        default=None,
        description="the server certificate the gateway trusts (DER or PEM); any other is refused",
    )


class OpcuaNode(Strict):
    node: str | None = Field(default=None, description="node id, e.g. ns=2;s=Line1.State")
    browse_path: str | None = Field(default=None, description="e.g. 0:Objects/2:Line1/2:GoodCount")
    metric: str
    mode: Literal["subscribe", "poll"] | None = Field(default=None, description="default: the device's")
    sampling_interval_ms: float | None = Field(default=None, ge=0, le=3_600_000)
    scale: float = Field(default=1.0, description="multiplies the value, e.g. 0.001 for Wh -> kWh")
    value_map: dict[int, int | str] | None = Field(
        default=None, description="the machine's own state codes -> catalogue states (code or name)"
    )

    @field_validator("value_map", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: object) -> object:
        if isinstance(v, dict):
            for code, target in v.items():
                if isinstance(target, bool):
                    raise ValueError(
                        f"the state of {code} reads as {target}: quote state names (YAML takes off/on/no/yes as booleans)"
                    )
        return v

    @field_validator("node")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        if v is not None:
            parse_node_id(v)
        return v

    @field_validator("browse_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            parse_browse_path(v)
        return v

    @property
    def address(self) -> str:
        """The node id or browse path as written (how errors name the node)."""
        return self.node or self.browse_path or ""


class OpcuaDevice(Strict):
    id: str = Field(pattern=DEVICE_PATTERN)
    mode: Literal["subscribe", "poll"] | None = Field(default=None, description="default: the server entry's")
    poll_interval_s: float | None = Field(default=None, gt=0, le=86400)
    nodes: list[OpcuaNode] = Field(min_length=1)


class OpcuaServer(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    url: str = Field(description="opc.tcp://host:port[/path]")
    security: OpcuaSecurity = OpcuaSecurity()
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = Field(default=None, description="a file holding the password (one line)")
    password_env: str | None = Field(default=None, description="an environment variable holding the password")
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: float = Field(default=1000.0, gt=0, le=3_600_000)
    sampling_interval_ms: float = Field(default=500.0, ge=0, le=3_600_000)
    poll_interval_s: float = Field(default=5.0, gt=0, le=86400)
    repeat_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="a subscribed value that has not changed is sent again this often (steady states fill every bucket)",
    )
    timeout_s: float = Field(default=4.0, gt=0, le=120)
    reconnect_min_s: float = Field(default=1.0, gt=0, le=3600)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    max_clock_skew_s: float = Field(default=300.0, gt=0)
    devices: list[OpcuaDevice] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _URL.match(v):
            raise ValueError("must be opc.tcp://host[:port][/path] (no user:password@ in it)")
        return v

    def read_password(self) -> str | None:
        """The password from `password`, `password_file` or `password_env` (checked at load)."""
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip("\r\n")
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


class OpcuaKeys(PluginKeys):
    """The top-level key the `opcua` source owns."""

    opcua: list[OpcuaServer] = Field(default_factory=list)


def opcua_problems(ctx: CheckContext, *, opcua: Sequence[OpcuaServer | None]) -> list[FieldError]:
    """Unique entry names and device ids, catalogue metrics and states, security files, one password source."""
    catalogue = load_catalogue().by_name()
    problems: list[FieldError] = []
    names: dict[str, int] = {}
    for i, s in enumerate(opcua):
        if s is None:
            continue
        at = f"opcua[{i}]"
        if s.name in names:
            problems.append(FieldError(f"{at}.name", s.name, f"name already used by opcua[{names[s.name]}]"))
        names.setdefault(s.name, i)
        if s.reconnect_max_s < s.reconnect_min_s:
            problems.append(
                FieldError(f"{at}.reconnect_max_s", s.reconnect_max_s, "must be at least reconnect_min_s")
            )
        problems += _security_problems(at, s.security)
        problems += _credential_problems(at, s)
        for j, d in enumerate(s.devices):
            dat = f"{at}.devices[{j}]"
            first = ctx.claim_device(d.id, dat)
            if first is not None:
                problems.append(FieldError(f"{dat}.id", d.id, f"device id already used by {first}"))
            problems += _node_problems(dat, d, catalogue)
    return problems


def _node_problems(at: str, d: OpcuaDevice, catalogue: dict[str, Metric]) -> list[FieldError]:
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    for k, n in enumerate(d.nodes):
        nat = f"{at}.nodes[{k}]"
        if (n.node is None) == (n.browse_path is None):
            problems.append(FieldError(nat, n.address or None, "give exactly one of node and browse_path"))
        metric = catalogue.get(n.metric)
        if metric is None:
            problems.append(FieldError(f"{nat}.metric", n.metric, "not a catalogue metric"))
            continue
        if n.metric in seen:
            problems.append(
                FieldError(f"{nat}.metric", n.metric, f"already read by {at}.nodes[{seen[n.metric]}]")
            )
        seen.setdefault(n.metric, k)
        if n.value_map is None:
            continue
        if not metric.states:
            problems.append(FieldError(f"{nat}.value_map", n.metric, "only a state metric takes a value_map"))
            continue
        by_name = {v: c for c, v in metric.states.items()}
        for code, target in n.value_map.items():
            if target not in metric.states and target not in by_name:
                problems.append(
                    FieldError(
                        f"{nat}.value_map.{code}",
                        target,
                        f"not a state of {n.metric} (known: {', '.join(f'{c} {v}' for c, v in metric.states.items())})",
                    )
                )
    return problems


def _security_problems(at: str, sec: OpcuaSecurity) -> list[FieldError]:
    sat = f"{at}.security"
    files = {
        "certificate": sec.certificate,
        "private_key": sec.private_key,
        "server_certificate": sec.server_certificate,
    }
    if sec.policy == "None":
        return [
            FieldError(f"{sat}.{k}", str(v), "only with policy Basic256Sha256")
            for k, v in files.items()
            if v is not None
        ]
    problems: list[FieldError] = []
    for k, v in files.items():
        if v is None:
            problems.append(FieldError(f"{sat}.{k}", None, f"required with policy {sec.policy}"))
            continue
        why = _pki_file_problem(v, is_key=k == "private_key")
        if why:
            problems.append(FieldError(f"{sat}.{k}", str(v), why))
    return problems


def _pki_file_problem(path: Path, *, is_key: bool) -> str | None:
    """Why `path` is not a readable certificate (DER or PEM) or unencrypted PEM private key, or None."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    try:
        if is_key:
            serialization.load_pem_private_key(data, password=None)
        elif data.lstrip().startswith(b"-----BEGIN"):
            x509.load_pem_x509_certificate(data)
        else:
            x509.load_der_x509_certificate(data)
    except (ValueError, TypeError) as exc:
        what = "an unencrypted PEM private key" if is_key else "an X.509 certificate (DER or PEM)"
        return f"not {what}: {exc}"
    return None


def _credential_problems(at: str, s: OpcuaServer) -> list[FieldError]:
    sources = [k for k in ("password", "password_file", "password_env") if getattr(s, k) is not None]
    problems: list[FieldError] = []
    if len(sources) > 1:
        problems.append(
            FieldError(
                f"{at}.{sources[1]}", sources, "give only one of password, password_file, password_env"
            )
        )
    if sources and s.username is None:
        problems.append(FieldError(f"{at}.username", None, f"required with {sources[0]}"))
    if s.username is not None and not sources:
        problems.append(
            FieldError(f"{at}.password", None, "a username needs password, password_file or password_env")
        )
    if s.password_file is not None:
        try:
            s.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(FieldError(f"{at}.password_file", str(s.password_file), f"cannot read: {why}"))
    if s.password_env is not None and s.password_env not in os.environ:
        problems.append(FieldError(f"{at}.password_env", s.password_env, "environment variable is not set"))
    return problems
