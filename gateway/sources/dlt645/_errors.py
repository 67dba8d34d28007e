"""Errors of the `dlt645` source: a transport failure and a meter's abnormal reply are apart."""

from __future__ import annotations

from parkpulse.errors import ParkPulseError

__all__ = ["AbnormalReply", "DecodeError", "Dlt645Error", "FrameError", "TransportError"]


class Dlt645Error(ParkPulseError):
    """Base of every error of the DL/T 645 source."""


class TransportError(Dlt645Error):
    """No usable answer: timeout, port or connection failure."""


class FrameError(TransportError):
    """Bytes arrived but do not make a good frame (checksum, end byte, length, wrong address)."""


class DecodeError(Dlt645Error):
    """A good frame whose data does not fit the profile's format (not BCD, wrong length)."""


class AbnormalReply(Dlt645Error):
    """The meter answered with the abnormal-reply bit set; `word` is its error word, `names` its set bits."""

    def __init__(self, control: int, word: int, names: list[str]) -> None:
        self.control, self.word, self.names = control, word, names
        shown = ", ".join(names) or "no bit set"
        super().__init__(f"abnormal reply 0x{control:02X}, error word 0x{word:02X}: {shown}")
