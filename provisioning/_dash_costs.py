"""能源费用 — energy cost: time-of-use periods, carriers, the demand charge, register checks and
what moving load from peak to valley hours would save.

Every figure comes from the cost views (parkpulse/db/views/50_costs.sql, docs/database.md "Cost
views"): yuan = quantity × the price of the firm's assigned tariff, with the tariff's version and
its `verified` mark. No price lives here: the shifting estimate reads the peak and valley prices
of the firm's tariff from `v_firm_cost_daily`. The panels read the views' rows through the bounded
functions pp_firm_cost_daily / pp_firm_cost_monthly, which price only the dashboard's days.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from provisioning._board import Board, stats, table_panel, textbox_variable, timeseries_panel
from provisioning._sqlparts import PARK_FILTER, day_filter, firm_filter

__all__ = ["SHIFT_DEFAULT_KWH", "SHIFT_VARIABLE", "energy_cost"]

SHIFT_VARIABLE = "shift_kwh"
SHIFT_DEFAULT_KWH = "1000"

# Period codes of the cost views → the labels the panels show (Chinese first, as the titles).
_PERIODS = (
    ("sharp", "尖峰 sharp"),
    ("peak", "高峰 peak"),
    ("flat", "平段 flat"),
    ("valley", "低谷 valley"),
    ("unpriced", "未定价 unpriced"),
    ("demand", "需量 demand"),
    ("capacity", "容量 capacity"),
    ("all", "全部 all"),
)
_CARRIERS = (
    ("electricity", "电 electricity"),
    ("natural_gas", "天然气 natural gas"),
    ("water", "水 water"),
    ("steam", "蒸汽 steam"),
)


def _label(column: str, labels: tuple[tuple[str, str], ...]) -> str:
    """A SQL CASE that shows a code column with its label (unknown codes as they are)."""
    whens = " ".join(f"WHEN '{code}' THEN '{text}'" for code, text in labels)
    return f"CASE {column} {whens} ELSE {column} END"


PERIOD = _label("period", _PERIODS)

CARRIER = _label("carrier", _CARRIERS)

# The cost functions (parkpulse/db/views/50_costs.sql) over the dashboard's days and firms: they read
# only that range, where the views would price the firms' whole history (issues 15, 16).
_RANGE = "ARRAY[$firm]::text[], $__timeFrom()::timestamptz::date, $__timeTo()::timestamptz::date"
COST_DAILY = f"pp_firm_cost_daily({_RANGE})"
COST_MONTHLY = f"pp_firm_cost_monthly({_RANGE})"

# The X of the shifting estimate: the text box's value if it is a plain non-negative number, else
# NULL (the panel then says why). Grafana inserts a text box's value with `'` doubled, so inside
# the quotes below it stays a literal whatever is typed.
_SHIFT_TEXT = f"btrim('${SHIFT_VARIABLE}')"
_SHIFT_KWH = f"CASE WHEN {_SHIFT_TEXT} ~ '^([0-9]+[.]?[0-9]*|[.][0-9]+)$' THEN {_SHIFT_TEXT}::numeric END"


def energy_cost() -> dm.Dashboard:
    b = Board(
        uid="pp-energy-cost",
        title="能源费用",
        description="Energy cost of the chosen firms from their assigned tariffs: electricity by "
        "time-of-use period, every carrier, the share of peak-period energy, the month's demand "
        "(or capacity) charge, days whose meter registers disagree with the computed period split, "
        "and what shifting X kWh from peak to valley hours would save. Prices and their verified "
        "marks come from costs/data/tariffs.yaml via `parkpulse tariffs sync`.",
        tags=["cost", "tariff", "manager"],
        time_from="now-90d",
        extra_variables=(
            textbox_variable(
                SHIFT_VARIABLE,
                "移峰电量 X kWh",
                "Energy moved from peak (高峰) to valley (低谷) hours for the saving estimate, kWh; "
                "a non-negative number.",
                SHIFT_DEFAULT_KWH,
            ),
        ),
    )
    _add_stats(b)
    _add_series(b)
    _add_tables(b)
    return b.build()


def _add_stats(b: Board) -> None:
    b.add(
        stats(
            "区间能源费用 Cost in range",
            "Cost of the selected firms over the time range, yuan: electricity energy charge "
            "(all periods), the other carriers with a tariff, and their sum. The monthly demand or "
            "capacity charge is not included here (see its own panel).",
            f"""
        SELECT sum(cost_yuan) FILTER (WHERE carrier = 'electricity') AS "电费 electricity 元",
               sum(cost_yuan) FILTER (WHERE carrier <> 'electricity') AS "其他能源 other 元",
               sum(cost_yuan) AS "合计 total 元"
        FROM {COST_DAILY}
        WHERE {PARK_FILTER}
        """,
            unit="none",
            w=10,
            decimals=0,
        )
    )
    b.add(
        stats(
            "峰段电量占比 (尖峰+高峰) Peak share",
            "Share of the electricity in sharp (尖峰) and peak (高峰) periods of all priced "
            "electricity of the selected firms over the time range, %.",
            f"""
        SELECT 100 * sum(quantity) FILTER (WHERE period IN ('sharp', 'peak'))
               / nullif(sum(quantity) FILTER (WHERE period IN ('sharp', 'peak', 'flat', 'valley')), 0)
               AS "峰段占比 peak share"
        FROM {COST_DAILY}
        WHERE {PARK_FILTER} AND carrier = 'electricity'
        """,
            unit="percent",
            w=5,
            decimals=1,
            thresholds=((None, "green"), (40.0, "orange"), (60.0, "red")),
        )
    )
    b.add(
        stats(
            "本月基本电费 (需量/容量) Demand charge",
            "The two-part tariff's charge of the newest month in the time range "
            "(the demand or capacity row of v_firm_cost_monthly, read through pp_firm_cost_monthly): "
            "the selected firms' yuan and their maximum demand in kW (reported by the meters where "
            "they have a demand register, else 4 × the largest 15-minute kWh).",
            f"""
        WITH m AS (
          SELECT month, period AS capacity_basis, cost_yuan, quantity AS demand_kw
          FROM {COST_MONTHLY}
          WHERE {PARK_FILTER} AND period IN ('demand', 'capacity')
        )
        SELECT sum(cost_yuan) AS "基本电费 元",
               sum(demand_kw) FILTER (WHERE capacity_basis = 'demand') AS "最大需量 kW"
        FROM m
        WHERE month = (SELECT max(month) FROM m)
        """,
            unit="none",
            w=9,
            decimals=0,
        )
    )


def _add_series(b: Board) -> None:
    tou = timeseries_panel(
        "分时电费 (日) Electricity cost by period",
        "Electricity energy charge per day and time-of-use period (sharp 尖峰, peak 高峰, flat 平段, "
        "valley 低谷), selected firms, yuan; days without a tariff are left out.",
        f"""
        SELECT day::timestamptz AS "time", {PERIOD} AS metric, sum(cost_yuan) AS value
        FROM {COST_DAILY}
        WHERE {PARK_FILTER} AND carrier = 'electricity' AND cost_yuan IS NOT NULL
        GROUP BY day, period
        ORDER BY 1, 2
        """,
        unit="currencyCNY",
        w=12,
        bars_style=True,
    )
    b.add(tou.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL)))
    carriers = timeseries_panel(
        "分品种费用 (日) Cost by carrier",
        "Cost per day and energy carrier (electricity energy charge, natural gas, water, steam …), "
        "selected firms, yuan; carriers without a tariff are left out.",
        f"""
        SELECT day::timestamptz AS "time", {CARRIER} AS metric, sum(cost_yuan) AS value
        FROM {COST_DAILY}
        WHERE {PARK_FILTER} AND cost_yuan IS NOT NULL
        GROUP BY day, carrier
        ORDER BY 1, 2
        """,
        unit="currencyCNY",
        w=12,
        bars_style=True,
    )
    b.add(carriers.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL)))


# Per firm: the newest day in the range with both a peak and a valley price, and those prices.
_SHIFT_SQL = f"""
    WITH d AS (
      SELECT firm_id, day, min(tariff_id) AS tariff_id, min(tariff_version) AS tariff_version,
             min(voltage_class) AS voltage_class,
             max(price) FILTER (WHERE period = 'peak') AS peak_price,
             max(price) FILTER (WHERE period = 'valley') AS valley_price,
             bool_and(verified) AS verified
      FROM {COST_DAILY}
      WHERE {PARK_FILTER} AND carrier = 'electricity' AND period IN ('peak', 'valley')
        AND price IS NOT NULL
      GROUP BY firm_id, day
      HAVING count(DISTINCT period) = 2
    ), cur AS (
      SELECT DISTINCT ON (firm_id) * FROM d ORDER BY firm_id, day DESC
    ), x AS (
      SELECT {_SHIFT_KWH} AS kwh
    )
    SELECT cur.firm_id AS "企业 firm", cur.tariff_id AS "电价 tariff", cur.tariff_version AS "版本 version",
           cur.voltage_class AS "电压等级 voltage", cur.day AS "价格日 price day",
           cur.peak_price AS "高峰价 peak 元/kWh", cur.valley_price AS "低谷价 valley 元/kWh",
           x.kwh AS "X kWh", x.kwh * (cur.peak_price - cur.valley_price) AS "可节省 saving 元",
           cur.verified AS "已核实 verified",
           CASE WHEN x.kwh IS NULL
                THEN 'X 须为非负数 (kWh) / X must be a non-negative number of kWh, got '''
                     || {_SHIFT_TEXT} || ''''
           END AS "说明 note"
    FROM cur CROSS JOIN x
    ORDER BY cur.firm_id
    """


def _add_tables(b: Board) -> None:
    b.add(
        table_panel(
            "移峰填谷测算 X kWh Peak-to-valley shift",
            "What moving X kWh (the variable 移峰电量 X) from peak (高峰) to valley (低谷) hours "
            "would save per firm: X × (peak price − valley price) of the firm's tariff as priced on "
            "its newest day in the time range with both periods. 'verified' is false while the "
            "tariff's figures are not checked against their primary source.",
            _SHIFT_SQL,
            w=12,
        )
    )
    b.add(
        table_panel(
            "分时电量与表计寄存器不符 Register mismatches",
            "Days and periods where the meters' own per-tariff registers (elec_import_kwh_sharp/peak/"
            "flat/valley) disagree with the split computed from the tariff's schedule by more than the "
            "tolerance (v_firm_tou_register_check): a meter's clock or period table is wrong, or the "
            "tariff's schedule is.",
            f"""
        SELECT day AS "日期 day", firm_id AS "企业 firm", {PERIOD} AS "时段 period",
               computed_kwh AS "计算 computed kWh", register_kwh AS "寄存器 register kWh",
               diff_kwh AS "差值 diff kWh", tolerance_kwh AS "容差 tolerance kWh",
               register_meters AS "表计 meters", tariff_id AS "电价 tariff", tariff_version AS "版本 version",
               CASE WHEN suspect THEN '可疑 suspect' ELSE '' END AS "计数 counter"
        FROM v_firm_tou_register_check
        WHERE {firm_filter()} AND mismatch AND {day_filter()}
        ORDER BY day DESC, firm_id, period
        LIMIT 500
        """,
            w=12,
        )
    )
    b.add(
        table_panel(
            "月度费用明细 Monthly cost",
            "Cost per firm, month, carrier and period with the price and how it was formed "
            "(v_firm_cost_monthly), including the two-part tariff's demand or capacity charge; "
            "'verified' false marks figures not checked against their primary source.",
            f"""
        SELECT month AS "月份 month", firm_id AS "企业 firm", {CARRIER} AS "品种 carrier",
               {PERIOD} AS "时段 period", quantity AS "数量 quantity", unit AS "单位 unit",
               price AS "单价 price", price_unit AS "价格单位 price unit", cost_yuan AS "费用 元",
               tariff_id AS "电价 tariff", tariff_version AS "版本 version", price_basis AS "计价 basis",
               verified AS "已核实 verified", days AS "天数 days"
        FROM {COST_MONTHLY}
        WHERE {PARK_FILTER}
        ORDER BY month DESC, firm_id, carrier, period
        LIMIT 1000
        """,
            w=24,
        )
    )
