"""The MQTT wire contract, version 1. See docs/wire-format.md."""

from parkpulse.wire._accounts import RESERVED_GATEWAY_IDS, RESERVED_ID_PREFIXES, reserved_gateway_id
from parkpulse.wire._config_keys import generate_key_pair, load_signing_key, load_verify_key
from parkpulse.wire._config_push import (
    CONFIG_MAX_BYTES,
    LOCAL_ONLY_KEYS,
    ConfigPush,
    config_digest,
    config_payload,
    parse_config_push,
    signed_message,
)
from parkpulse.wire._config_state import ConfigState
from parkpulse.wire._decode import DecodedBatch, DecodedGap, RejectedReading, decode_batch
from parkpulse.wire._envelopes import (
    ResendRequest,
    batch_envelope,
    batch_payload,
    parse_resend_request,
    resend_request_payload,
    status_payload,
)
from parkpulse.wire._limits import FLOAT_MAX, INT32_MAX, INT64_MAX, MAX_TS_MS, MIN_TS_MS
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
    config_topic,
    data_topic,
    parse_topic,
    resend_topic,
    shared_data_subscription,
    status_topic,
)

__all__ = [
    "CONFIG_MAX_BYTES",
    "FLOAT_MAX",
    "ID_PATTERN",
    "INT32_MAX",
    "INT64_MAX",
    "LOCAL_ONLY_KEYS",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "RESERVED_GATEWAY_IDS",
    "RESERVED_ID_PREFIXES",
    "WIRE_VERSION",
    "Batch",
    "ConfigPush",
    "ConfigState",
    "CounterEvent",
    "DecodedBatch",
    "DecodedGap",
    "DeviceHealth",
    "Gap",
    "Quality",
    "Reading",
    "RejectedReading",
    "ResendRequest",
    "Status",
    "TopicParts",
    "alerts_topic",
    "batch_envelope",
    "batch_payload",
    "config_digest",
    "config_payload",
    "config_topic",
    "data_topic",
    "decode_batch",
    "epoch_ms",
    "generate_key_pair",
    "load_signing_key",
    "load_verify_key",
    "parse_config_push",
    "parse_resend_request",
    "parse_topic",
    "resend_request_payload",
    "resend_topic",
    "reserved_gateway_id",
    "shared_data_subscription",
    "signed_message",
    "status_payload",
    "status_topic",
]
