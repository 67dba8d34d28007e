"""ParkPulse shared kernel: wire contract, metric catalogue, settings, store schema."""

from parkpulse.errors import ParkPulseError

__version__ = "0.1.0"

__all__ = ["ParkPulseError", "__version__"]
