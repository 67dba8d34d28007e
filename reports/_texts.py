"""Labels of the reports in Chinese (default) and English."""

from __future__ import annotations

from reports.errors import ReportInputError

LANGS = ("zh", "en")

_T: dict[str, tuple[str, str]] = {
    "title_firm": ("企业能源{kind}报告", "Firm energy report ({kind})"),
    "title_park": ("园区能源{kind}报告", "Park energy report ({kind})"),
    "month": ("月度", "monthly"),
    "year": ("年度", "yearly"),
    "summary": ("概要", "Summary"),
    "energy": ("能源消费", "Energy"),
    "daily": ("每日能耗", "Daily energy"),
    "kpi": ("强度与亩均", "Intensity and mu"),
    "cost": ("能源费用", "Cost"),
    "alerts": ("排放告警", "Emission alerts"),
    "completeness": ("数据完整性", "Data completeness"),
    "gaps": ("数据缺口", "Data gaps"),
    "scorecard": ("园区评分", "Park scorecard"),
    "park": ("园区", "Park"),
    "firm": ("企业", "Firm"),
    "firm_id": ("企业编号", "Firm id"),
    "period": ("统计期", "Period"),
    "generated": ("生成时间", "Generated"),
    "rule_set": ("规则集版本", "Rule set version"),
    "tariff": ("电价版本", "Tariff version"),
    "none": ("无", "none"),
    "carrier": ("能源品种", "Carrier"),
    "direction": ("方向", "Direction"),
    "unit": ("单位", "Unit"),
    "quantity": ("实物量", "Quantity"),
    "coef": ("折标系数 (kgce/单位)", "Coefficient (kgce/unit)"),
    "tce": ("折标煤 (tce)", "Standard coal (tce)"),
    "share": ("占比", "Share"),
    "total": ("合计", "Total"),
    "suspect": ("存疑", "Suspect"),
    "day": ("日期", "Day"),
    "year_col": ("年度", "Year"),
    "energy_tce": ("综合能耗 (tce)", "Energy (tce)"),
    "intensity": ("能耗强度 (tce/万元)", "Intensity (tce/10⁴ CNY)"),
    "intensity_change": ("强度变化 (%)", "Intensity change (%)"),
    "mu_tax": ("亩均税收 (万元/亩)", "Tax per mu (10⁴ CNY/mu)"),
    "mu_av": ("亩均增加值 (万元/亩)", "Added value per mu (10⁴ CNY/mu)"),
    "score": ("综合得分", "Score"),
    "class": ("亩均分类", "Mu class"),
    "cost_month": ("月份", "Month"),
    "tou_period": ("时段", "Period"),
    "price": ("单价", "Price"),
    "price_unit": ("单价单位", "Price unit"),
    "cost_yuan": ("费用 (元)", "Cost (yuan)"),
    "verified": ("已核实", "Verified"),
    "mismatch": ("分时寄存器不符", "Register mismatch"),
    "no_tariff": ("未分配电价：{firms}", "no tariff assigned: {firms}"),
    "alert_id": ("告警编号", "Alert"),
    "severity": ("级别", "Severity"),
    "device": ("设备", "Device"),
    "gateway": ("网关", "Gateway"),
    "metric": ("指标", "Metric"),
    "state": ("状态", "State"),
    "opened": ("开始", "Opened"),
    "resolved": ("结束", "Resolved"),
    "value": ("数值", "Value"),
    "limit": ("限值", "Limit"),
    "valid_hours": ("有效小时数 (h)", "Valid hours (h)"),
    "exceeded_hours": ("超标小时数 (h)", "Exceeded hours (h)"),
    "kind": ("类型", "Kind"),
    "poll": ("采集周期 (s)", "Poll interval (s)"),
    "expected": ("应收条数", "Expected readings"),
    "received": ("实收条数", "Received readings"),
    "start": ("起", "Start"),
    "end": ("止", "End"),
    "count": ("条数", "Count"),
    "reason": ("原因", "Reason"),
    "indicator": ("指标", "Indicator"),
    "target": ("目标", "Target"),
    "met": ("达标", "Met"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "import": ("输入", "import"),
    "export": ("输出", "export"),
    "electricity": ("电力", "electricity"),
    "natural_gas": ("天然气", "natural gas"),
    "steam": ("蒸汽", "steam"),
    "water": ("新水", "water"),
    "heat": ("热力", "heat"),
    "sharp": ("尖峰", "sharp peak"),
    "peak": ("高峰", "peak"),
    "flat": ("平段", "flat"),
    "valley": ("低谷", "valley"),
    "demand": ("需量电费", "demand charge"),
    "capacity": ("容量电费", "capacity charge"),
    "all": ("全部", "all"),
    "unpriced": ("未计价", "unpriced"),
    "open": ("未关闭", "open"),
    "closed": ("已关闭", "closed"),
    "chart_daily": ("每日用电量 (kWh)", "Daily electricity (kWh)"),
    "chart_cost": ("各时段费用 (元)", "Cost by period (yuan)"),
    "more_rows": ("另有 {n} 行见 Excel 版", "{n} more rows in the Excel version"),
    "completeness_def": (
        "应收条数 = 统计期内设备在册时长 ÷ 采集周期；实收条数 = 设备上报最多的指标的读数条数。",
        "Expected = seconds registered in the period ÷ poll interval; received = readings of the device's best-reported metric.",
    ),
    "note_no_coefficient": (
        "{firm}：{carrier}（{unit}）在规则结果中没有折标系数，未折标",
        "{firm}: no standard-coal coefficient for {carrier} ({unit}) in the rules results; not converted",
    ),
    "note_kpi_year": (
        "年度指标取自 {years} 年的规则结果（统计期所在年尚无结果）",
        "yearly indicators are from the rules results of {years} (none yet for the period's year)",
    ),
    "note_no_results": (
        "{year} 年及以前没有规则结果：请先运行 parkpulse rules run --year {year}",
        "no rules results for {year} or earlier: run parkpulse rules run --year {year}",
    ),
    "note_scorecard_year": ("园区评分取自 {year} 年", "the scorecard is that of {year}"),
    "note_export": ("合计折标煤已扣除输出电量", "the total deducts exported electricity"),
}


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ReportInputError("lang", lang, "must be zh or en")
    return lang


def t(key: str, lang: str, **kw: object) -> str:
    """The label in `lang`; an unknown key (a carrier or period the table lacks) is shown as itself."""
    pair = _T.get(key)
    if pair is None:
        return key
    text = pair[0] if lang == "zh" else pair[1]
    return text.format(**kw) if kw else text


def note_text(note: str, lang: str) -> str:
    """A report note (`code:args`) in words."""
    code, _, rest = note.partition(":")
    if code == "no_coefficient":
        firm, carrier, unit = ([*rest.split(":"), "", "", ""])[:3]
        return t("note_no_coefficient", lang, firm=firm, carrier=t(carrier, lang), unit=unit)
    if code == "kpi_year":
        return t("note_kpi_year", lang, years=rest)
    if code == "no_results":
        return t("note_no_results", lang, year=rest)
    if code == "scorecard_year":
        return t("note_scorecard_year", lang, year=rest)
    return note
