from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from parkpulse.errors import ValidationReport
from parkpulse.registry import import_registry, load_park_file

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
        assert conn.execute("SELECT land_mu FROM firms WHERE firm_id = 'acme'").fetchone()[0] == pytest.approx(120.5)


def test_every_bad_entry_is_reported_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "park.yaml"
    f.write_text(BAD, encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        load_park_file(f)
    paths = {p.path for p in exc.value.problems}
    assert {"park.id", "firms[0].land_mu", "firms[0].gateways[0].devices[0].kind"} <= paths
    # cross-references are checked once the shapes are right: fix shapes, keep the references wrong
    f.write_text(BAD.replace("ZZ Demo", "zz-demo").replace("-3", "3").replace("toaster", "meter"), encoding="utf-8")
    with pytest.raises(ValidationReport) as exc:
        load_park_file(f)
    paths = {p.path for p in exc.value.problems}
    assert paths == {
        "firms[0].cluster", "firms[1].cluster", "firms[1].gateways[0].devices[0].carrier",
        "firms[1].gateways[0].devices[1].id",
    }  # fmt: skip
