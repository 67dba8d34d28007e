"""OPC UA production line: an asyncua server with a few machines (state, good/reject counts, energy, ideal rate).

    line = OpcuaLine("line1", machines=("filler", "capper"), port=0)
    line.start()                 # a background thread runs the server
    line.url                     # opc.tcp://127.0.0.1:<port>/parkpulse/line1
    line.truth()                 # {"filler": {"state_code": 120, "good_count": ..., ...}, ...}
    line.stop(); line.start()    # stopped and started again on the same port (a "server restart")

Address space (namespace `urn:parkpulse:sim:opcua-line`, index 2 on a fresh server):
Objects/2:<line>/2:<machine>/2:{State, GoodCount, RejectCount, EnergyKWh, IdealRate}, with the
string node ids `ns=2;s=<line>.<machine>.<Variable>`. `State` carries the machine's own state
code (`STATE_CODES`: 100 off, 110 idle, 120 running, 130 fault, 140 planned stop), not the
catalogue's, so a gateway needs a value map. Counters are cumulative (UInt32 parts, Double kWh).

Security: `security="none"` offers the None endpoint only; `"basic256sha256"` offers
Basic256Sha256 Sign and SignAndEncrypt only, with a self-signed server certificate generated
into `cert_dir` (kept across restarts). `users={"name": "password"}` turns anonymous access off.
Client certificates are accepted without a trust list (a simulator, not a hardened server).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulators.errors import SimulatorError
from simulators.mqtt_sensors import FAULT, IDLE, OFF, PLANNED_STOP, RUNNING, LineState

__all__ = ["NAMESPACE", "STATE_CODES", "VARIABLES", "OpcuaLine", "write_certificate"]

NAMESPACE = "urn:parkpulse:sim:opcua-line"
STATE_CODES = {OFF: 100, IDLE: 110, RUNNING: 120, FAULT: 130, PLANNED_STOP: 140}
"""The simulated machines' own state codes, by catalogue state (0 off … 4 planned stop)."""
VARIABLES = ("State", "GoodCount", "RejectCount", "EnergyKWh", "IdealRate")
# share of the rated power drawn in each state
_LOAD = {OFF: 0.0, IDLE: 0.3, RUNNING: 0.9, FAULT: 0.1, PLANNED_STOP: 0.1}

log = logging.getLogger("simulators.opcua")


def write_certificate(cert_path: Path, key_path: Path, *, name: str, uri: str, server: bool) -> None:
    """A self-signed OPC UA application certificate (DER) and its key (PEM), with the URI in its SAN."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)


class _Users:
    """asyncua user manager: a name/password table (compared as given)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class _Machine:
    name: str
    state: LineState
    rated_kw: float
    energy_kwh: float


class OpcuaLine:
    """An OPC UA server for one production line, run in its own thread and event loop."""

    def __init__(
        self,
        line_id: str = "line1",
        machines: tuple[str, ...] = ("filler", "capper", "labeller"),
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        security: Literal["none", "basic256sha256"] = "none",
        users: dict[str, str] | None = None,
        cert_dir: Path | None = None,
        seed: int = 1,
        ideal_rate: float = 1200.0,
        reject_ratio: float = 0.02,
        rated_kw: float = 15.0,
        update_s: float = 0.5,
        time_scale: float = 1.0,
    ) -> None:
        if not line_id.replace("-", "").replace("_", "").isalnum():
            raise SimulatorError(f"line_id must be letters, digits, - and _ (got {line_id!r})")
        if not machines or len(set(machines)) != len(machines):
            raise SimulatorError(f"machines must be distinct names, at least one (got {machines!r})")
        if security not in ("none", "basic256sha256"):
            raise SimulatorError(f"security must be none or basic256sha256 (got {security!r})")
        if update_s <= 0 or time_scale <= 0:
            raise SimulatorError(f"update_s and time_scale must be > 0 (got {update_s!r}, {time_scale!r})")
        self.line_id = line_id
        self.host = host
        self.port = port or _free_port(host)
        self.security = security
        self.users = dict(users or {})
        self.update_s = update_s
        self.time_scale = time_scale
        self.application_uri = f"urn:parkpulse:sim:opcua-line:{line_id}"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cert_dir is None and security != "none":
            self._tmp = tempfile.TemporaryDirectory(prefix="pp-opcua-")
            cert_dir = Path(self._tmp.name)
        self.cert_dir = cert_dir
        self.machines = [
            _Machine(
                m,
                LineState(seed=seed + i, ideal_rate=ideal_rate, reject_ratio=reject_ratio),
                rated_kw,
                float(LineState(seed=seed + i).rng.randint(1_000, 90_000)),
            )
            for i, m in enumerate(machines)
        ]
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.starts = 0

    # ------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/parkpulse/{self.line_id}"

    @property
    def server_certificate(self) -> Path:
        if self.cert_dir is None:
            raise SimulatorError("this line runs without security: no server certificate")
        return self.cert_dir / "server-cert.der"

    def node_id(self, machine: str, variable: str) -> str:
        return f"ns=2;s={self.line_id}.{machine}.{variable}"

    def browse_path(self, machine: str, variable: str) -> str:
        return f"0:Objects/2:{self.line_id}/2:{machine}/2:{variable}"

    # ---------------------------------------------------------------- truth
    def truth(self) -> dict[str, dict[str, float]]:
        """Per machine: its state code, catalogue state, counters, energy and ideal rate now."""
        with self._lock:
            return {
                m.name: {
                    "state_code": float(STATE_CODES[m.state.state]),
                    "machine_state": float(m.state.state),
                    "good_count": float(m.state.good),
                    "reject_count": float(m.state.reject),
                    "elec_import_kwh": m.energy_kwh,
                    "ideal_rate_pcs_h": m.state.ideal_rate,
                }
                for m in self.machines
            }

    def set_state(self, machine: str, state: int) -> None:
        """Force a machine into a catalogue state (0..4) now (for tests and demos)."""
        if state not in STATE_CODES:
            raise SimulatorError(f"state must be one of {sorted(STATE_CODES)} (got {state!r})")
        with self._lock:
            for m in self.machines:
                if m.name == machine:
                    m.state.state = state
                    m.state.remaining = 3600.0
                    return
        raise SimulatorError(f"no machine {machine!r} (known: {[m.name for m in self.machines]})")

    def _advance(self, dt: float) -> None:
        with self._lock:
            for m in self.machines:
                s = m.state.state  # the energy of this step at the state it started in
                m.state.advance(dt)
                m.energy_kwh += m.rated_kw * _LOAD[s] * dt / 3600.0

    # --------------------------------------------------------------- server
    def _ensure_certificate(self) -> None:
        assert self.cert_dir is not None
        cert, key = self.cert_dir / "server-cert.der", self.cert_dir / "server-key.pem"
        if not (cert.exists() and key.exists()):
            write_certificate(
                cert, key, name=f"ParkPulse sim {self.line_id}", uri=self.application_uri, server=True
            )

    async def _build(self) -> tuple[Server, dict[tuple[str, str], Any]]:
        server = Server()
        if self.users:
            server.iserver.set_user_manager(_Users(self.users))  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"ParkPulse simulated line {self.line_id}")
        await server.set_application_uri(self.application_uri)
        if self.security == "none":
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            self._ensure_certificate()
            assert self.cert_dir is not None
            await server.load_certificate(str(self.cert_dir / "server-cert.der"))
            await server.load_private_key(str(self.cert_dir / "server-key.pem"))
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                ]
            )
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        ns = await server.register_namespace(NAMESPACE)
        line = await server.nodes.objects.add_object(
            ua.NodeId(ua.String(f"{self.line_id}"), ua.Int16(ns)), ua.QualifiedName(self.line_id, ns)
        )
        nodes: dict[tuple[str, str], Any] = {}
        truth = self.truth()
        for m in self.machines:
            obj = await line.add_object(
                ua.NodeId(ua.String(f"{self.line_id}.{m.name}"), ua.Int16(ns)), ua.QualifiedName(m.name, ns)
            )
            t = truth[m.name]
            initial = {
                "State": ua.Variant(int(t["state_code"]), ua.VariantType.Int32),
                "GoodCount": ua.Variant(int(t["good_count"]), ua.VariantType.UInt32),
                "RejectCount": ua.Variant(int(t["reject_count"]), ua.VariantType.UInt32),
                "EnergyKWh": ua.Variant(t["elec_import_kwh"], ua.VariantType.Double),
                "IdealRate": ua.Variant(t["ideal_rate_pcs_h"], ua.VariantType.Double),
            }
            for var, value in initial.items():
                nid = ua.NodeId(ua.String(f"{self.line_id}.{m.name}.{var}"), ua.Int16(ns))
                nodes[(m.name, var)] = await obj.add_variable(nid, ua.QualifiedName(var, ns), value)
        return server, nodes

    async def _publish(self, nodes: dict[tuple[str, str], Any]) -> None:
        for name, t in self.truth().items():
            values = {
                "State": ua.Variant(int(t["state_code"]), ua.VariantType.Int32),
                "GoodCount": ua.Variant(int(t["good_count"]), ua.VariantType.UInt32),
                "RejectCount": ua.Variant(int(t["reject_count"]), ua.VariantType.UInt32),
                "EnergyKWh": ua.Variant(t["elec_import_kwh"], ua.VariantType.Double),
                "IdealRate": ua.Variant(t["ideal_rate_pcs_h"], ua.VariantType.Double),
            }
            for var, value in values.items():
                await nodes[(name, var)].write_value(value)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server, nodes = await self._build()
        await server.start()
        try:
            self._ready.set()
            last = time.monotonic()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.update_s)
                now = time.monotonic()
                self._advance((now - last) * self.time_scale)
                last = now
                await self._publish(nodes)
        finally:
            await server.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self, timeout: float = 15.0) -> OpcuaLine:
        if self._thread is not None:
            raise SimulatorError(f"OPC UA line {self.line_id} already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, name=f"parkpulse-sim-opcua-{self.line_id}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SimulatorError(f"OPC UA line {self.line_id} did not start within {timeout} s")
        error = self._start_error()
        if error is not None:
            self._thread.join(5)
            self._thread = None
            raise SimulatorError(f"OPC UA line {self.line_id} could not start on {self.url}: {error}")
        self.starts += 1
        return self

    def _start_error(self) -> BaseException | None:
        """What made the server thread fail to start (set by that thread)."""
        return self._error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (clients see the connection close); start() serves again on the same port."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed on its own
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise SimulatorError(f"OPC UA line {self.line_id} did not stop within {timeout} s")
        self._thread = None

    def close(self) -> None:
        """Stop, and remove the generated certificates (when this line made its own folder)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> OpcuaLine:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
