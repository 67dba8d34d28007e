"""ParkPulse rules engine: standards as versioned data, pure evaluations, stored explainable results."""

__all__: list[str] = []
