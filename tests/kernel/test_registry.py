from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from parkpulse.errors import ValidationReport
from parkpulse.registry import MovesRefused, import_registry, load_park_file, plan_import

GOOD = """
park: {id: zz-demo, name: 示范园区, province: 河南, city: 郑州}
clusters:
  - {id: zz-elec, name: 电子信息}
firms:
  - id: acme
    name: 甲公司
    cluster: zz-elec
    land_mu: 120.5
    workshops: [{id: acme-w1, name: 一车间}]
    gateways:
      - id: acme-gw1
        devices:
          - {id: main, kind: meter, profile: eastron-sdm630, meter_level: 1, carrier: electricity, workshop: acme-w1}
          - {id: line1, kind: line}
"""

BAD = """
park: {id: ZZ Demo, name: 示范园区}
clusters: []
firms:
  - id: acme
    name: 甲公司
    cluster: nowhere
    land_mu: -3
    gateways:
      - id: acme-gw1
        devices:
          - {id: main, kind: toaster}
  - id: beta
    name: 乙公司
    cluster: nowhere
    land_mu: 10
    gateways:
      - id: beta-gw
        devices:
          - {id: m, kind: meter, carrier: plutonium}
          - {id: m, kind: meter}
"""


def test_import_is_idempotent(tmp_path: Path, db: str) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(GOOD, encoding="utf-8")
    pf = load_park_file(f)
    with psycopg.connect(db) as conn:
        assert import_registry(conn, pf)["devices"] == 2
        import_registry(conn, pf)
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (2,)
        assert conn.execute("SELECT land_mu FROM firms WHERE firm_id = 'acme'").fetchone()[
            0
        ] == pytest.approx(120.5)


def test_every_bad_entry_is_reported_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(BAD, encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        load_park_file(f)
    paths = {p.path for p in exc.value.problems}
    assert {"park.id", "firms[0].land_mu", "firms[0].gateways[0].devices[0].kind"} <= paths
    # cross-references are checked once the shapes are right: fix shapes, keep the references wrong
    f.write_text(
        BAD.replace("ZZ Demo", "zz-demo").replace("-3", "3").replace("toaster", "meter"), encoding="utf-8"
    )
    with pytest.raises(ValidationReport) as exc:
        load_park_file(f)
    paths = {p.path for p in exc.value.problems}
    assert paths == {
        "firms[0].cluster",
        "firms[1].cluster",
        "firms[1].gateways[0].devices[0].carrier",
        "firms[1].gateways[0].devices[1].id",
    }


# --- issue 9: an import never moves a firm (and its history) to another park silently ---

ROOT = Path(__file__).resolve().parents[2]


def _park_yaml(park: str, firm: str, gateway: str, *, firm_name: str = "甲公司") -> str:
    return f"""
park: {{id: {park}, name: 园区 {park}}}
firms:
  - id: {firm}
    name: {firm_name}
    land_mu: 50
    gateways:
      - id: {gateway}
        devices:
          - {{id: main, kind: meter, meter_level: 1, carrier: electricity}}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parkpulse.cli", "registry", "import", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _state(db: str, firm: str) -> tuple[object, ...]:
    """Where the firm, its readings and the parks are, and how many audit rows there are."""
    with psycopg.connect(db) as conn:
        return (
            conn.execute("SELECT park_id, name FROM firms WHERE firm_id = %s", (firm,)).fetchone(),
            conn.execute(
                "SELECT park_id, count(*) FROM v_readings WHERE firm_id = %s GROUP BY park_id", (firm,)
            ).fetchall(),
            conn.execute("SELECT park_id FROM parks ORDER BY park_id").fetchall(),
            conn.execute("SELECT count(*) FROM registry_audit").fetchone(),
        )


def test_reparenting_a_firm_is_refused_unless_move_and_then_audited(
    tmp_path: Path, db: str, unique_id: str
) -> None:
    park_a, park_b, firm, gw = f"{unique_id}-a", f"{unique_id}-b", f"{unique_id}-f1", f"{unique_id}-gw"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(_park_yaml(park_a, firm, gw), encoding="utf-8")
    b.write_text(_park_yaml(park_b, firm, gw, firm_name="甲公司（新）"), encoding="utf-8")
    with psycopg.connect(db) as conn:
        import_registry(conn, load_park_file(a))
        conn.execute(
            """INSERT INTO readings (device_pk, metric_id, ts, value)
               SELECT d.device_pk, m.metric_id, now() - g * interval '1 minute', g
               FROM devices d, metrics m, generate_series(1, 5) g
               WHERE d.gateway_id = %s AND m.name = 'active_power_kw'""",
            (gw,),
        )
    before = _state(db, firm)
    assert before == ((park_a, "甲公司"), [(park_a, 5)], [(park_a,)], (0,))

    # park B's file lists f1: refused, naming the entry, the id, its park and the new one; nothing written
    res = _cli(str(b), "--database-url", db)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert (
        f"firms[0].id: re-parenting refused, firm {firm} is in park {park_a} and this file puts it in park {park_b}"
        in res.stderr.replace("\n", " ")
    )
    assert "5 readings" in res.stderr and "--move" in res.stderr
    assert _state(db, firm) == before

    # --dry-run prints what would change and changes nothing, moves included
    res = _cli(str(b), "--database-url", db, "--dry-run", "--move")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 to add, 0 to update, 1 to move, 2 unchanged" in res.stdout
    assert f"+ park {park_b}" in res.stdout
    assert f"> firm {firm}: park {park_a} → park {park_b} (1 gateway, 1 device, 5 readings)" in res.stdout
    assert (
        f"park_id: '{park_a}' → '{park_b}'" in res.stdout and "name: '甲公司' → '甲公司（新）'" in res.stdout
    )
    assert _state(db, firm) == before

    # --move: moved with its history, shown as a diff, recorded in the audit
    res = _cli(str(b), "--database-url", db, "--move")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (
        f"> moved firm {firm}: park {park_a} → park {park_b} (1 gateway, 1 device, 5 readings)" in res.stdout
    )
    assert f"park_id: '{park_a}' → '{park_b}'" in res.stdout
    assert _state(db, firm) == ((park_b, "甲公司（新）"), [(park_b, 5)], [(park_a,), (park_b,)], (1,))
    with psycopg.connect(db) as conn:
        audit = conn.execute(
            "SELECT action, entity, entity_id, from_park_id, to_park_id, diff, carried, source "
            "FROM registry_audit"
        ).fetchall()
        assert audit == [
            (
                "move",
                "firm",
                firm,
                park_a,
                park_b,
                {"park_id": [park_a, park_b], "name": ["甲公司", "甲公司（新）"]},
                {"gateways": 1, "devices": 1, "readings": 5},
                str(b),
            )
        ]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM registry_audit")

    # importing the same file again moves nothing and audits nothing
    res = _cli(str(b), "--database-url", db)
    assert res.returncode == 0 and "0 moved, 4 unchanged" in res.stdout, res.stdout + res.stderr
    assert _state(db, firm)[3] == (1,)


def test_gateway_or_cluster_of_another_park_is_refused_unless_move(
    tmp_path: Path, db: str, unique_id: str
) -> None:
    park_a, park_b = f"{unique_id}-a", f"{unique_id}-b"
    a = tmp_path / "a.yaml"
    a.write_text(
        _park_yaml(park_a, f"{unique_id}-f1", f"{unique_id}-gw")
        + f"clusters: [{{id: {unique_id}-c, name: 电子}}]\n",
        encoding="utf-8",
    )
    b = tmp_path / "b.yaml"  # a new firm f2 in park B claims park A's gateway and cluster
    b.write_text(
        _park_yaml(park_b, f"{unique_id}-f2", f"{unique_id}-gw").replace(
            "land_mu: 50", f"land_mu: 50\n    cluster: {unique_id}-c"
        )
        + f"clusters: [{{id: {unique_id}-c, name: 电子}}]\n",
        encoding="utf-8",
    )
    with psycopg.connect(db) as conn:
        import_registry(conn, load_park_file(a))
        with pytest.raises(MovesRefused) as exc:
            import_registry(conn, load_park_file(b))
        got = {(p.path, p.value) for p in exc.value.problems}
        assert got == {("clusters[0].id", f"{unique_id}-c"), ("firms[0].gateways[0].id", f"{unique_id}-gw")}
        gw = next(p for p in exc.value.problems if p.path == "firms[0].gateways[0].id")
        assert (
            f"gateway {unique_id}-gw belongs to firm {unique_id}-f1 in park {park_a} and this file puts it "
            f"under firm {unique_id}-f2 in park {park_b}"
        ) in gw.reason
        assert conn.execute(
            "SELECT count(*) FROM firms WHERE firm_id = %s", (f"{unique_id}-f2",)
        ).fetchone() == (0,)
        assert conn.execute("SELECT firm_id FROM gateways").fetchall() == [(f"{unique_id}-f1",)]

        import_registry(conn, load_park_file(b), move=True, source="b.yaml")
        assert conn.execute("SELECT firm_id FROM gateways").fetchall() == [(f"{unique_id}-f2",)]
        assert conn.execute("SELECT park_id FROM clusters").fetchall() == [(park_b,)]
        audit = conn.execute(
            "SELECT entity, from_parent, to_parent, from_park_id, to_park_id FROM registry_audit "
            "ORDER BY audit_id"
        ).fetchall()
        assert audit == [
            ("cluster", park_a, park_b, park_a, park_b),
            ("gateway", f"{unique_id}-f1", f"{unique_id}-f2", park_a, park_b),
        ]


def test_control_characters_and_unstorable_numbers_are_refused_with_their_path(
    tmp_path: Path, db: str
) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(
        GOOD.replace("name: 示范园区", 'name: "示范\\0园区"')
        .replace("name: 甲公司", 'name: 甲公司\n    name_en: "\\e[31mACME"\n    credit_code: "91\\x07"')
        .replace("land_mu: 120.5", "land_mu: .inf")
        .replace(
            "{id: line1, kind: line}", '{id: line1, kind: line, rated_power_kw: 1.0e+39, name: "L\\t1"}'
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValidationReport) as exc:
        load_park_file(f)
    got = {p.path: p for p in exc.value.problems}
    assert set(got) == {
        "park.name",
        "firms[0].name_en",
        "firms[0].credit_code",
        "firms[0].land_mu",
        "firms[0].gateways[0].devices[1].rated_power_kw",
        "firms[0].gateways[0].devices[1].name",
    }
    assert got["park.name"].reason == "control character U+0000 at position 2 is not allowed"
    assert got["park.name"].value == "示范\x00园区"
    # the CLI names them too, without a traceback, and writes nothing
    res = _cli(str(f), "--database-url", db)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "park.name: control character U+0000" in res.stderr
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM parks").fetchone() == (0,)


def test_dry_run_of_an_imported_file_reports_no_change_and_then_each_update(tmp_path: Path, db: str) -> None:
    """Values stored as real and numeric compare as stored: an unchanged file is reported unchanged."""
    f = tmp_path / "park.yaml"
    text = GOOD.replace(
        "land_mu: 120.5", "land_mu: 0.30000000000000004\n    production_start: 2019-03-01"
    ).replace(
        "{id: line1, kind: line}", "{id: line1, kind: line, poll_interval_s: 0.1, rated_power_kw: 333.3}"
    )
    f.write_text(text, encoding="utf-8")
    with psycopg.connect(db) as conn:
        import_registry(conn, load_park_file(f))
        plan = plan_import(conn, load_park_file(f))
        assert plan.summary() == "0 to add, 0 to update, 0 to move, 7 unchanged"
        f.write_text(text.replace("333.3", "333.4").replace("name: 一车间", "name: 二车间"), encoding="utf-8")
        plan = plan_import(conn, load_park_file(f))
        assert [(c.action, c.entity, c.id, c.diff) for c in plan.changes if c.action != "unchanged"] == [
            ("update", "workshop", "acme-w1", {"name": ("一车间", "二车间")}),
            ("update", "device", "acme-gw1/line1", {"rated_power_kw": (pytest.approx(333.3), 333.4)}),
        ]


@pytest.mark.parametrize("gateway_id", ["ingest", "alerts", "pp-gw-zz-demo-x"])
def test_a_gateway_may_not_take_a_platform_account_name(tmp_path: Path, gateway_id: str) -> None:
    """Issue 9: a gateway `ingest` once passed the registry, and the ACL then held `user ingest` twice."""
    f = tmp_path / "park.yaml"
    f.write_text(GOOD.replace("id: acme-gw1", f"id: {gateway_id}"), encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        load_park_file(f)
    problem = {p.path: p for p in exc.value.problems}["firms[0].gateways[0].id"]
    assert "reserved" in str(problem) and gateway_id in str(problem)


# -- issue 11: a CEMS stack's fuel and age class, a park's special emission limits -----------------

STACKS = """
park: {id: zz-stacks, name: 示范园区, city: 郑州市, special_emission_limits: {applies: true, basis: "MEE 2+26 cities notice, from 2018-10-01", since: 2018-10-01}}
firms:
  - id: boilerco
    name: 锅炉企业
    land_mu: 10
    gateways:
      - id: boilerco-gw1
        devices:
          - {id: stack-1, kind: cems, fuel: gas, age_class: existing}
          - {id: stack-2, kind: cems, source_type: coal_boiler, fuel: coal, age_class: new}
          - {id: kiln, kind: cems, source_type: industrial_kiln, fuel: gas, age_class: new}
"""


def test_a_cems_stack_without_fuel_or_age_class_is_refused_naming_the_field(tmp_path: Path) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(
        STACKS.replace("fuel: gas, age_class: existing", "source_type: gas_boiler")
        .replace("fuel: coal, age_class: new", "fuel: coal")
        .replace(
            "{id: kiln, kind: cems, source_type: industrial_kiln, fuel: gas, age_class: new}",
            "{id: kiln, kind: meter, fuel: gas}",
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValidationReport) as ei:
        load_park_file(f)
    got = {(p.path, p.value) for p in ei.value.problems}
    text = str(ei.value)
    at = "firms[0].gateways[0].devices"
    # (cross-checks carry the value as shown in the message)
    assert got == {
        (f"{at}[0].fuel", "None"),
        (f"{at}[0].age_class", "None"),
        (f"{at}[1].age_class", "None"),
        (f"{at}[2].fuel", "'gas'"),
    }
    assert f"{at}[0].fuel: a CEMS stack needs its fuel, one of ['coal', 'oil', 'gas']" in text
    assert "only a CEMS stack" in text  # a meter has no fuel
    # an age class that is neither existing nor new
    f.write_text(STACKS.replace("fuel: coal, age_class: new", "fuel: coal, age_class: old"), encoding="utf-8")
    with pytest.raises(ValidationReport) as ei:
        load_park_file(f)
    assert {(p.path, p.value) for p in ei.value.problems} == {(f"{at}[1].age_class", "old")}


def test_a_stacks_source_type_must_match_its_fuel(tmp_path: Path) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(
        STACKS.replace("source_type: coal_boiler, fuel: coal", "source_type: coal_boiler, fuel: oil"),
        encoding="utf-8",
    )
    with pytest.raises(ValidationReport) as ei:
        load_park_file(f)
    (p,) = ei.value.problems
    assert (p.path, p.value) == ("firms[0].gateways[0].devices[1].source_type", "'coal_boiler'")
    assert "expected oil_boiler" in p.reason


def test_stack_class_and_special_limits_are_stored_and_shown_in_the_views(tmp_path: Path, db: str) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(STACKS, encoding="utf-8")
    pf = load_park_file(f)
    with psycopg.connect(db) as conn:
        import_registry(conn, pf)
        rows = conn.execute(
            "SELECT device_id, source_type, fuel, age_class FROM v_devices ORDER BY device_id"
        ).fetchall()
        # a stack with a fuel and no source type is a boiler of that fuel
        assert rows == [
            ("kiln", "industrial_kiln", "gas", "new"),
            ("stack-1", "gas_boiler", "gas", "existing"),
            ("stack-2", "coal_boiler", "coal", "new"),
        ]
        park = conn.execute(
            "SELECT city, special_limits_apply, special_limits_basis, special_limits_since FROM v_parks"
        ).fetchone()
        assert park is not None and park[:3] == ("郑州市", True, "MEE 2+26 cities notice, from 2018-10-01")
        assert str(park[3]) == "2018-10-01"
        # the same file again changes nothing; a changed age class is an update naming the column
        assert not plan_import(conn, pf).of("update")
        f.write_text(
            STACKS.replace("fuel: gas, age_class: existing", "fuel: gas, age_class: new"), encoding="utf-8"
        )
        plan = plan_import(conn, load_park_file(f))
        (upd,) = plan.of("update")
        assert upd.id == "boilerco-gw1/stack-1" and upd.diff == {"age_class": ("existing", "new")}
        # a park that does not state the flag stores NULL (not stated), not false
        f.write_text(GOOD, encoding="utf-8")
        import_registry(conn, load_park_file(f))
        assert conn.execute(
            "SELECT special_limits_apply FROM v_parks WHERE park_id = 'zz-demo'"
        ).fetchone() == (None,)


def test_special_limits_need_a_basis(tmp_path: Path) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(STACKS.replace('basis: "MEE 2+26 cities notice, from 2018-10-01", ', ""), encoding="utf-8")
    with pytest.raises(ValidationReport) as ei:
        load_park_file(f)
    assert any(p.path == "park.special_emission_limits.basis" for p in ei.value.problems), str(ei.value)
