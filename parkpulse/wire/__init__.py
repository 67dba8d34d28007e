"""The MQTT wire contract, version 1. See docs/wire-format.md."""

from parkpulse.wire._decode import DecodedBatch, RejectedReading, decode_batch
from parkpulse.wire._models import (
    WIRE_VERSION,
    Batch,
    CounterEvent,
    DeviceHealth,
    Gap,
    Reading,
    Status,
    epoch_ms,
)
from parkpulse.wire._quality import Quality
from parkpulse.wire._topics import (
    ID_PATTERN,
    TopicParts,
    alerts_topic,
    data_topic,
    parse_topic,
    resend_topic,
    shared_data_subscription,
    status_topic,
)

__all__ = [
    "ID_PATTERN",
    "WIRE_VERSION",
    "Batch",
    "CounterEvent",
    "DecodedBatch",
    "DeviceHealth",
    "Gap",
    "Quality",
    "Reading",
    "RejectedReading",
    "Status",
    "TopicParts",
    "alerts_topic",
    "data_topic",
    "decode_batch",
    "epoch_ms",
    "parse_topic",
    "resend_topic",
    "shared_data_subscription",
    "status_topic",
]
