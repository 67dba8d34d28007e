"""`parkpulse demo`: a whole simulated park, end to end, on one machine."""

__all__: list[str] = []
