"""Alert engine: emission exceedance (HJ 75/76), data gaps, meter tamper signs, thresholds and
rates of change, with a lifecycle, an audit trail, MQTT notifications and signed webhooks.

Run it with `parkpulse alerts run`; see alerts/README.md.
"""

from alerts._emission import HourResult, convert_to_reference_o2, evaluate_hour
from alerts._engine import AlertEngine
from alerts._limits_sync import LimitRow, SyncResult, limit_rows, sync_limits, sync_limits_async
from alerts._ruleset import HJ212_FLAGS, EmissionLimits, Rule, RuleSet, load_rules
from alerts._settings import AlertSettings
from alerts._stats import EngineStats
from alerts._tracker import Action, Obs, Tracker
from alerts._webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature

__all__ = [
    "HJ212_FLAGS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Action",
    "AlertEngine",
    "AlertSettings",
    "EmissionLimits",
    "EngineStats",
    "HourResult",
    "LimitRow",
    "Obs",
    "Rule",
    "RuleSet",
    "SyncResult",
    "Tracker",
    "convert_to_reference_o2",
    "evaluate_hour",
    "limit_rows",
    "load_rules",
    "sign",
    "sync_limits",
    "sync_limits_async",
    "verify_signature",
]
