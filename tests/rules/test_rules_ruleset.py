"""Rule sets load by name, carry sources, and a broken one reports every problem at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rules._ruleset import DATA_DIR, RuleSetError, list_rule_sets, load_rule_set, unverified_figures
from rules.cli import rules_app


def test_every_shipped_rule_set_loads() -> None:
    names = list_rule_sets()
    assert "henan-2025" in names and len(names) >= 3
    for name in names:
        rs = load_rule_set(name)
        assert rs.name == name and rs.version
    assert load_rule_set().name == "henan-2025"  # the default


def _figures(obj: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(obj, dict):
        if "value" in obj and isinstance(obj["value"], int | float) and not isinstance(obj["value"], bool):
            found.append(obj)
        for v in obj.values():
            found += _figures(v)
    elif isinstance(obj, list):
        for v in obj:
            found += _figures(v)
    return found


def test_every_figure_in_the_data_files_names_its_source() -> None:
    for path in DATA_DIR.rglob("*.yaml"):
        if path.name == "units.yaml":
            continue
        for fig in _figures(yaml.safe_load(path.read_text(encoding="utf-8"))):
            assert isinstance(fig.get("source"), str) and len(str(fig["source"])) > 3, (path.name, fig)


def test_broken_rule_set_reports_every_problem_in_every_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    coal = data / "coal" / "gbt2589-2020.yaml"
    doc = yaml.safe_load(coal.read_text(encoding="utf-8"))
    del doc["carriers"]["diesel"]  # 1: a required carrier missing
    coal.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    carbon = data / "carbon" / "emission-factors.yaml"
    doc = yaml.safe_load(carbon.read_text(encoding="utf-8"))
    doc["grids"]["national"]["by_year"][2023]["source"] = ""  # 2: a figure without a source
    carbon.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    mu = data / "mu" / "huangyan-2022-zhengzhou-class.yaml"
    doc = yaml.safe_load(mu.read_text(encoding="utf-8"))
    doc["indicators"]["mu_taxx"] = doc["indicators"].pop("mu_tax")  # 3: unknown indicator
    doc["class_method"]["params"]["a_share"]["value"] = 1.5  # 4: share out of range
    mu.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    smart = data / "smart" / "smart-workshop-henan.yaml"
    doc = yaml.safe_load(smart.read_text(encoding="utf-8"))
    doc["indicators"]["oee"]["check"] = "greater_than"  # 5: unknown built-in check
    smart.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RuleSetError) as exc:
        load_rule_set("henan-2025", data_dir=data)
    text = str(exc.value)
    paths = [p.path for p in exc.value.problems]
    assert "carbon/emission-factors.yaml.grids.national.by_year[2023].source" in paths, text
    assert any(
        p == "coal/gbt2589-2020.yaml.carriers" and v.value == "diesel"
        for p, v in zip(paths, exc.value.problems, strict=True)
    ), text
    assert "mu/huangyan-2022-zhengzhou-class.yaml.indicators.mu_taxx" in paths, text
    assert "mu/huangyan-2022-zhengzhou-class.yaml.class_method.params.a_share.value" in paths, text
    assert "smart/smart-workshop-henan.yaml.indicators.oee.check" in paths, text


def test_unknown_rule_set_names_the_known_ones() -> None:
    with pytest.raises(RuleSetError, match="henan-2025"):
        load_rule_set("atlantis-2030")


def test_another_city_is_a_new_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    index = yaml.safe_load((data / "rule_sets" / "henan-2025.yaml").read_text(encoding="utf-8"))
    index["name"] = "xinxiang-2026"
    index["components"]["mu_scheme"] = "mu/henan-anyang-2018.yaml"
    (data / "rule_sets" / "xinxiang-2026.yaml").write_text(
        yaml.safe_dump(index, allow_unicode=True), encoding="utf-8"
    )
    rs = load_rule_set("xinxiang-2026", data_dir=data)
    assert rs.mu.name == "henan-anyang-2018" and rs.mu.class_method.params["a_rank_by"] == [
        "mu_tax",
        "rd_intensity",
    ]


def test_validate_cli_lists_every_unverified_figure_with_file_key_value_and_note() -> None:
    res = CliRunner().invoke(rules_app, ["validate", "henan-2025"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "valid" in out and "huangyan-2022-zhengzhou-class" in out
    assert (
        "unverified: coal/gbt2589-2020.yaml carriers.electricity.dengjia_default = 0.3 — The published" in out
    )
    assert "unverified: coal/gbt2589-2020.yaml carriers.water.dangliang = 0.2571 — Not settled" in out
    assert "unverified: coal/gbt2589-2020.yaml steam_by_pressure = table of 9 rows" in out
    assert "unverified: carbon/emission-factors.yaml fuels.natural_gas.carbon = 15.3" in out
    assert "unverified: mu/huangyan-2022-zhengzhou-class.yaml class_method.params.rounding = half_up" in out
    assert (
        "unverified: smart/smart-workshop-henan.yaml" in out and "unverified: green/gbt36132-2025.yaml" in out
    )
    assert "unverified: alerts:data/emission_limits.yaml" in out  # referenced, read only
    # verified figures are not listed
    assert "grids.central_china" not in out and "carriers.electricity.dangliang" not in out
    zz = CliRunner().invoke(rules_app, ["validate", "zhengzhou-2018"])
    assert (
        zz.exit_code == 0
        and "unverified: mu/zhengzhou-2018.yaml indicators.mu_profit.weight = 1" in zz.output
    )


def test_unverified_figures_reads_every_file_once() -> None:
    rs = load_rule_set("henan-2025")
    found = unverified_figures(rs)
    keys = [(u.file, u.key) for u in found]
    assert len(keys) == len(set(keys))
    assert ("coal/gbt2589-2020.yaml", "carriers.electricity.dengjia_default") in keys


def test_broken_steam_table_and_grid_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    coal = data / "coal" / "gbt2589-2020.yaml"
    doc = yaml.safe_load(coal.read_text(encoding="utf-8"))
    doc["steam_by_pressure"]["table"][2] = [5.0, 88]  # not descending after 4.5
    coal.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    carbon = data / "carbon" / "emission-factors.yaml"
    doc = yaml.safe_load(carbon.read_text(encoding="utf-8"))
    doc["grids"]["central_china"]["fallback"] = "atlantis"
    carbon.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RuleSetError) as exc:
        load_rule_set("henan-2025", data_dir=data)
    paths = {p.path: p.value for p in exc.value.problems}
    assert paths.get("coal/gbt2589-2020.yaml.steam_by_pressure.table[2]") == [5.0, 88], str(exc.value)
    assert paths.get("carbon/emission-factors.yaml.grids.central_china.fallback") == "atlantis", str(
        exc.value
    )
