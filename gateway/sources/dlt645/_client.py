"""DL/T 645 exchanges over a link: read one data identifier (following subsequent frames when a
reply is split) and the broadcast read of a lone meter's address."""

from __future__ import annotations

from gateway.sources.dlt645._errors import FrameError
from gateway.sources.dlt645._frame import address_bytes, check_reply, di_bytes, encode_frame
from gateway.sources.dlt645._link import Link
from gateway.sources.dlt645._standard import EditionRules

__all__ = ["MAX_FOLLOW_FRAMES", "read_address", "read_di"]

MAX_FOLLOW_FRAMES = 32  # a reply split into more frames than this is refused (a loop, not data)
WILDCARD_ALL = "AA" * 6


async def read_di(link: Link, address: str, di: str, rules: EditionRules, timeout: float) -> bytes:
    """The data of one identifier (after the DI echo; subsequent frames joined). Caller holds `link.lock`.

    Raises TransportError (FrameError for a garbled or wrong reply) or AbnormalReply."""
    want = di_bytes(di, rules)
    frame = await link.transact(encode_frame(address, rules.read, want, link.preamble), timeout)
    assert frame is not None
    check_reply(frame, address, rules.read, rules)
    data = _strip_di(frame.data, want, di)
    seq = 0
    while frame.more_follows:
        seq += 1
        if seq > MAX_FOLLOW_FRAMES:
            raise FrameError(f"more than {MAX_FOLLOW_FRAMES} subsequent frames for {di}")
        body = want + (bytes([seq]) if rules.edition == "2007" else b"")
        frame = await link.transact(encode_frame(address, rules.read_follow, body, link.preamble), timeout)
        assert frame is not None
        check_reply(frame, address, rules.read_follow, rules)
        part = _strip_di(frame.data, want, di)
        if rules.edition == "2007":  # DI + data + SEQ
            if not part or part[-1] != seq:
                raise FrameError(
                    f"subsequent frame of {di}: sequence {part[-1] if part else None}, asked {seq}"
                )
            part = part[:-1]
        data += part
    return data


def _strip_di(data: bytes, want: bytes, di: str) -> bytes:
    if data[: len(want)] != want:
        raise FrameError(
            f"reply for data identifier {bytes(reversed(data[: len(want)])).hex().upper()}, asked {di}"
        )
    return data[len(want) :]


async def read_address(link: Link, rules: EditionRules, timeout: float) -> str:
    """Broadcast read-address (2007 only): the address of the one meter on the line."""
    if rules.read_address is None:
        raise ValueError(f"DL/T 645-{rules.edition} has no read-address command")
    frame = await link.transact(encode_frame(WILDCARD_ALL, rules.read_address, b"", link.preamble), timeout)
    assert frame is not None
    check_reply(frame, WILDCARD_ALL, rules.read_address, rules)
    if len(frame.data) != 6:
        raise FrameError(f"read-address reply with {len(frame.data)} data bytes (6 expected)")
    answered = bytes(reversed(frame.data)).hex().upper()
    try:
        address_bytes(answered)
    except ValueError:
        raise FrameError(f"read-address reply {answered} is not 12 BCD digits") from None
    if answered != frame.address:
        raise FrameError(f"read-address reply names {answered} in its data and {frame.address} in its header")
    return answered
