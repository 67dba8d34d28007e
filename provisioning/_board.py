"""A thin layer over grafana-foundation-sdk: one dashboard with the park and firm variables (and
any extra ones a dashboard declares), panels that always use the ParkPulse PostgreSQL datasource, stable ids and uids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from grafana_foundation_sdk.builders import barchart, common, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from provisioning._pgquery import DATASOURCE, SqlQuery

__all__ = ["GRAFANA_BUILD", "Board", "bars", "stats", "table_panel", "textbox_variable", "timeseries_panel"]

GRAFANA_BUILD = "11.6"
"""The Grafana build the SDK generates for (grafana-foundation-sdk 1769699379!11.6.0)."""


class _PanelBuilder(Protocol):
    def build(self) -> dm.Panel: ...
    def id(self, id_val: int) -> Self: ...


@dataclass
class Board:
    """Dashboard under construction. `add()` places panels left to right, 24 columns a row."""

    uid: str
    title: str
    description: str
    tags: list[str]
    time_from: str = "now-30d"
    refresh: str = "5m"
    extra_variables: tuple[cogbuilder.Builder[dm.VariableModel], ...] = ()
    """Variables after `park` and `firm` (e.g. a text box the panels read)."""
    _next_id: int = 1
    _panels: list[Any] = field(default_factory=list)

    def add(self, panel: _PanelBuilder) -> None:
        panel.id(self._next_id)
        self._next_id += 1
        self._panels.append(panel)

    def row(self, title: str) -> None:
        self._panels.append(dash.Row(title).id(self._next_id))
        self._next_id += 1

    def build(self) -> dm.Dashboard:
        b = (
            dash.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(["parkpulse", *self.tags])
            .time(self.time_from, "now")
            .timezone("browser")
            .refresh(self.refresh)
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .with_variable(_park_variable())
            .with_variable(_firm_variable())
            .link(
                dash.DashboardLink("ParkPulse")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["parkpulse"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )
        for v in self.extra_variables:
            b = b.with_variable(v)
        for p in self._panels:
            b = b.with_row(p) if isinstance(p, dash.Row) else b.with_panel(p)
        return b.build()


def _park_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("park")
        .label("园区 Park")
        .description("The park: every park with devices or evaluated results.")
        .datasource(DATASOURCE)
        .query("SELECT park_id FROM v_devices UNION SELECT park_id FROM v_park_scorecard ORDER BY 1")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(False)
        .include_all(False)
        .allow_custom_value(False)
    )


def _firm_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("firm")
        .label("企业 Firm")
        .description("Firms of the park with devices or evaluated years: multi-select, All by default.")
        .datasource(DATASOURCE)
        .query(
            "SELECT firm_id FROM v_devices WHERE park_id = '$park' "
            "UNION SELECT firm_id FROM v_firm_kpi_year WHERE park_id = '$park' ORDER BY 1"
        )
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .allow_custom_value(False)
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def textbox_variable(name: str, label: str, description: str, default: str) -> dash.TextBoxVariable:
    """A free-text variable (Grafana inserts its value as typed, `'` doubled: the SQL quotes it)."""
    option = dm.VariableOption(selected=True, text=default, value=default)
    return (
        dash.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(default)
        .current(option)
        .options([option])
    )


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def timeseries_panel(
    title: str,
    description: str,
    sql: str,
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    bars_style: bool = False,
    interval: str | None = None,
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQuery(sql).time_series())
        .unit(unit)
        .span(w)
        .height(h)
        .fill_opacity(10 if not bars_style else 80)
        .draw_style(cm.GraphDrawStyle.BARS if bars_style else cm.GraphDrawStyle.LINE)
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if interval:
        p = p.interval(interval)
    return p


def stats(
    title: str,
    description: str,
    sql: str,
    *,
    unit: str = "short",
    w: int = 6,
    h: int = 5,
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    decimals: int | None = None,
) -> stat.Panel:
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQuery(sql).table())
        .unit(unit)
        .span(w)
        .height(h)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(*thresholds))
    )
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def table_panel(title: str, description: str, sql: str, *, w: int = 12, h: int = 8) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQuery(sql).table())
        .span(w)
        .height(h)
        .show_header(True)
        .filterable(True)
    )


def bars(
    title: str,
    description: str,
    sql: str,
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    stacked: bool = False,
) -> barchart.Panel:
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQuery(sql).table())
        .unit(unit)
        .span(w)
        .height(h)
        .show_value(cm.VisibilityMode.AUTO)
        .stacking(cm.StackingMode.NORMAL if stacked else cm.StackingMode.NONE)
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
