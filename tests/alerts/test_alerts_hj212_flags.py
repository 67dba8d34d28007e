"""HJ 212 data flags per edition (alerts/data/hj212_flags.yaml): tables, exclusion per
edition, a device's edition from its profile (real PostgreSQL), and refused rule files."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from alerts import HJ212_FLAGS, load_rules
from alerts._emission import evaluate_hour
from alerts._hj212 import FlagTables, device_excluded_flags, load_flag_tables
from parkpulse.errors import ValidationReport
from parkpulse.registry import ParkFile, import_registry

H = datetime(2026, 3, 2, 10, tzinfo=UTC)
DATA = Path(__file__).resolve().parents[2] / "alerts" / "data"


def _shipped() -> dict:
    return yaml.safe_load((DATA / "hj212_flags.yaml").read_text(encoding="utf-8"))


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "hj212_flags.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return p


def test_both_editions_parse_with_the_catalogue_codes_and_sources() -> None:
    t = load_flag_tables()
    assert set(t.editions) == {"2017", "2025"} and t.default_edition == "2017"
    # the catalogue's cems_flag encoding: N F M S D C T B = 0..7, the same letter for a code in both editions
    assert t.codes("2017") == {"N": 0, "F": 1, "M": 2, "S": 3, "D": 4, "C": 5, "T": 6, "B": 7} == HJ212_FLAGS
    assert t.codes("2025") == t.codes("2017")
    assert t.letters() == {0: "N", 1: "F", 2: "M", 3: "S", 4: "D", 5: "C", 6: "T", 7: "B"}
    # default exclusions: stopped, maintenance, fault, calibration, comms; S and T are kept
    assert t.default_excluded("2017") == t.default_excluded("2025") == {"F", "M", "D", "C", "B"}
    e17, e25 = t.editions["2017"], t.editions["2025"]
    assert e17.standard == "HJ 212-2017" and e25.standard == "HJ 212-2025"
    assert str(e25.in_force) == "2026-01-01" and e25.replaces == "HJ 212-2017"
    assert e17.commands["minute"].code == 2051 and e25.commands["hour"].code == 2061
    # the 2017 table is checked, the 2025 one is not: every 2025 flag is listed as unverified
    assert all(e17.flag_verified(k) for k in e17.flags)
    assert not any(e25.flag_verified(k) for k in e25.flags)
    lines = t.unverified()
    assert any(line.startswith("HJ 212-2025 data flags N F M S D C T B") for line in lines)
    assert not any(line.startswith("HJ 212-2017") for line in lines)
    # the shipped profile speaks 2017; a profile the file does not know speaks the default
    assert t.edition_of_profile("cems-analyser") == "2017" and t.edition_of_profile("some-logger") == "2017"
    assert t.edition_of_profile(None) == "2017"


def _hour(flags: list[str], values: list[float]) -> tuple[list, list, list]:
    pol, ox, fl = [], [], []
    for i, (f, v) in enumerate(zip(flags, values, strict=True)):
        t = H + timedelta(minutes=i, seconds=20)
        pol.append((t, v, 0))
        ox.append((t, 3.5, 0))  # at the gas-boiler reference O2: converted = measured
        fl.append((t, float(HJ212_FLAGS[f]), 0))
    return pol, ox, fl


def test_a_flag_excluded_in_one_edition_only_changes_that_editions_hour() -> None:
    t = load_flag_tables()
    spec = {"2017": ["F", "M", "D", "C", "B"], "2025": ["F", "M", "D", "C", "B", "T"]}
    assert t.excluded(spec, "2017") == {"F", "M", "D", "C", "B"}
    assert t.excluded(spec, "2025") == {"F", "M", "D", "C", "B", "T"}
    # 50 minutes NOx 100 flagged N, then 10 minutes 400 flagged T (over range), O2 at reference
    pol, ox, fl = _hour(["N"] * 50 + ["T"] * 10, [100.0] * 50 + [400.0] * 10)
    # 2017: T kept → 60 valid minutes, mean (50 × 100 + 10 × 400) / 60 = 9000 / 60 = 150
    r17 = evaluate_hour(H, pol, ox, fl, o2_ref=3.5, excluded_flags=t.excluded(spec, "2017"))
    assert (r17.valid_minutes, r17.excluded, r17.valid) == (60, 0, True)
    assert r17.avg_converted == pytest.approx(150.0)
    # 2025 (as this rule says): T excluded → 50 valid minutes, mean 100, 10 counted as flag:T
    r25 = evaluate_hour(H, pol, ox, fl, o2_ref=3.5, excluded_flags=t.excluded(spec, "2025"))
    assert (r25.valid_minutes, r25.excluded, r25.excluded_by, r25.valid) == (50, 10, {"flag:T": 10}, True)
    assert r25.avg_converted == pytest.approx(100.0)
    # the limit 120 is broken under 2017 only
    assert r17.exceeded(120.0) and not r25.exceeded(120.0)
    # an edition the mapping leaves out keeps its defaults; a plain list applies to both
    assert t.excluded({"2025": ["T"]}, "2017") == {"F", "M", "D", "C", "B"}
    assert t.excluded(["M"], "2017") == t.excluded(["M"], "2025") == {"M"}
    # no rule value: the default edition's defaults (T kept): 150 as under 2017
    assert evaluate_hour(H, pol, ox, fl, o2_ref=3.5).avg_converted == pytest.approx(150.0)


def test_a_device_speaks_the_edition_of_its_profile(db: str, unique_id: str, tmp_path: Path) -> None:
    doc = _shipped()
    doc["profiles"]["cems-logger-2025"] = "2025"
    tables = load_flag_tables(_write(tmp_path, doc))
    stack = {"id": "cems-1", "kind": "cems", "fuel": "gas", "age_class": "existing", "poll_interval_s": 60.0}
    pf = ParkFile.model_validate(
        {
            "park": {"id": unique_id, "name": "测试园区"},
            "firms": [
                {
                    "id": f"{unique_id}-f1",
                    "name": "测试企业",
                    "land_mu": 100,
                    "gateways": [
                        {"id": f"{unique_id}-g1", "devices": [{**stack, "profile": "cems-analyser"}]},
                        {"id": f"{unique_id}-g2", "devices": [{**stack, "profile": "cems-logger-2025"}]},
                    ],
                }
            ],
        }
    )
    with psycopg.connect(db) as conn:
        import_registry(conn, pf)
        pks = dict(
            conn.execute(
                "SELECT gateway_id, device_pk FROM v_devices WHERE kind = 'cems' AND park_id = %s",
                (unique_id,),
            ).fetchall()
        )
    spec = {"2025": ["F", "M", "D", "C", "B", "T"]}

    async def resolve(pk: int) -> frozenset[str]:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            return await device_excluded_flags(conn, pk, spec, tables)

    assert asyncio.run(resolve(pks[f"{unique_id}-g1"])) == {"F", "M", "D", "C", "B"}  # 2017 defaults
    assert asyncio.run(resolve(pks[f"{unique_id}-g2"])) == {
        "F",
        "M",
        "D",
        "C",
        "B",
        "T",
    }  # the rule's 2025 list
    assert asyncio.run(resolve(-1)) == {"F", "M", "D", "C", "B"}  # unknown device: the default edition


def _rules_with(tmp_path: Path, excluded: object) -> Path:
    doc = yaml.safe_load((DATA / "alert_rules.yaml").read_text(encoding="utf-8"))
    rule = next(r for r in doc["rules"] if r["kind"] == "emission")
    rule["params"]["excluded_flags"] = excluded
    p = tmp_path / "rules.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return p


def _problems(path: Path) -> list[tuple[str, object]]:
    with pytest.raises(ValidationReport) as exc:
        load_rules(path)
    return [(p.path, p.value) for p in exc.value.problems]


def test_unknown_flags_and_editions_in_the_rule_file_are_refused_naming_the_field(tmp_path: Path) -> None:
    i = next(
        i
        for i, r in enumerate(yaml.safe_load((DATA / "alert_rules.yaml").read_text())["rules"])
        if r["kind"] == "emission"
    )
    field = f"rules[{i}].params.excluded_flags"
    assert _problems(_rules_with(tmp_path, ["F", "X"])) == [(field, "X")]
    assert set(_problems(_rules_with(tmp_path, {"2025": ["Q"], "2019": ["F"]}))) == {
        (f"{field}.2025", "Q"),
        (f"{field}.2019", "2019"),
    }
    assert _problems(_rules_with(tmp_path, {"2017": ["N"]})) == [(f"{field}.2017", "N")]
    # accepted: a mapping per edition, and no value at all (each edition's defaults)
    assert load_rules(_rules_with(tmp_path, {"2017": ["F"], "2025": ["F", "T"]}))
    doc = yaml.safe_load(_rules_with(tmp_path, None).read_text())
    del next(r for r in doc["rules"] if r["kind"] == "emission")["params"]["excluded_flags"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert load_rules(tmp_path / "rules.yaml")


def test_the_flag_file_is_refused_when_the_catalogue_cannot_carry_it(tmp_path: Path) -> None:
    # a flag only 2025 has needs a new code, and the catalogue's cems_flag states must carry it first
    doc = _shipped()
    doc["editions"]["2025"]["flags"]["X"] = {"code": 8, "zh": "新标记", "en": "new", "invalidates": True}
    with pytest.raises(ValidationReport) as exc:
        load_flag_tables(_write(tmp_path, doc))
    assert [(p.path, p.value) for p in exc.value.problems] == [
        ("hj212_flags.yaml.editions.2025.flags.X.code", 8)
    ]
    # an edition may not renumber an existing letter: existing data keeps its meaning
    doc = _shipped()
    doc["editions"]["2025"]["flags"]["T"]["code"] = 7
    with pytest.raises(ValidationReport) as exc:
        load_flag_tables(_write(tmp_path, doc))
    paths = {p.path for p in exc.value.problems}
    assert paths == {
        "hj212_flags.yaml.editions.2025.flags.T.code"
    }  # T = 7 clashes with B, 2017's T = 6, the catalogue
    # unknown editions in default_edition / profiles, and N that invalidates, are named
    doc = _shipped()
    doc["default_edition"] = "2030"
    doc["profiles"]["x"] = "2019"
    doc["editions"]["2017"]["flags"]["N"]["invalidates"] = True
    with pytest.raises(ValidationReport) as exc:
        load_flag_tables(_write(tmp_path, doc))
    assert {(p.path, p.value) for p in exc.value.problems} == {
        ("hj212_flags.yaml.default_edition", "2030"),
        ("hj212_flags.yaml.profiles.x", "2019"),
        ("hj212_flags.yaml.editions.2017.flags.N.invalidates", True),
    }
    assert isinstance(load_flag_tables(), FlagTables)
