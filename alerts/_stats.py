"""Counters of one alert engine (exported on /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineStats"]


@dataclass
class EngineStats:
    batches: int = 0
    rejected_batches: int = 0
    statuses: int = 0
    fired: int = 0
    cleared: int = 0
    refreshed: int = 0
    events_published: int = 0
    webhooks_delivered: int = 0
    errors: int = 0
