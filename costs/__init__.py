"""Costs: time-of-use tariffs as versioned data, firms' tariff assignments, and energy in yuan.

The tariffs live in costs/data/tariffs.yaml (with sources and verified marks); `parkpulse tariffs
sync` copies them into the database, `parkpulse tariffs assign` gives a firm a tariff, and the
cost views (parkpulse/db/views/50_costs.sql: v_firm_cost_daily, v_firm_cost_monthly, …) price
the metered energy. See costs/README.md.
"""

from costs._assign import Assignment, AssignmentError, assign_tariff, list_assignments
from costs._sync import PriceRow, SyncResult, price_rows, sync_tariffs
from costs._tariffs import (
    DEFAULT_TARIFFS_FILE,
    PERIODS,
    Tariff,
    TariffError,
    TariffsFile,
    TariffVersion,
    load_tariffs,
    parse_span,
)

__all__ = [
    "DEFAULT_TARIFFS_FILE",
    "PERIODS",
    "Assignment",
    "AssignmentError",
    "PriceRow",
    "SyncResult",
    "Tariff",
    "TariffError",
    "TariffVersion",
    "TariffsFile",
    "assign_tariff",
    "list_assignments",
    "load_tariffs",
    "parse_span",
    "price_rows",
    "sync_tariffs",
]
