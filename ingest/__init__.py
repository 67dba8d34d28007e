"""ParkPulse ingest: MQTT 5 shared subscription → PostgreSQL, exactly once, ack after commit.

See ingest/README.md for settings, metrics and guarantees.
"""

from ingest.service import IngestError, IngestService
from ingest.settings import IngestSettings

__all__ = ["IngestError", "IngestService", "IngestSettings"]
