"""The evidence page and its CSV say which emission limit an alert was judged against and why
(GB 13271-2014 table and reason, or a local override), as the alert engine wrote it in the evidence."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from console_testkit import FIRE, World
from fastapi.testclient import TestClient

AsUser = Callable[[str], tuple[TestClient, str]]


def _fire_with_basis(world: World) -> int:
    evidence = {
        "valid_minutes": 60,
        "o2_ref": 3.5,
        "limit": 150.0,
        "limit_id": "gb13271-2014-table3",
        "limit_table": "Table 3",
        "limit_verified": False,
        "limit_basis_en": "Table 3 (2+26 city), 150 mg/m³",
        "limit_basis_zh": "表3（2+26城市），150 mg/m³",
        "limit_source": "GB 13271-2014 锅炉大气污染物排放标准, 表3 大气污染物特别排放限值",
        "limit_candidates": [
            {
                "limit_id": "gb13271-2014-table1",
                "table": "Table 1",
                "value": 400,
                "applies": True,
                "why_en": "existing boiler",
                "why_zh": "在用锅炉",
                "verified": False,
            },
            {
                "limit_id": "gb13271-2014-table3",
                "table": "Table 3",
                "value": 150,
                "applies": True,
                "why_en": "2+26 city",
                "why_zh": "2+26城市",
                "verified": False,
            },
        ],
    }
    with world.conn() as conn:
        row = conn.execute(
            FIRE,
            {
                "rule": "emission-gb13271",
                "park": world.p1,
                "firm": world.f1,
                "gw": world.gw1,
                "subject": f"{world.gw1}/cems-1/nox_mg_m3#basis",
                "value": 180.0,
                "zh": "氮氧化物超标",
                "en": "NOx above limit",
                "evidence": json.dumps(evidence, ensure_ascii=False),
            },
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_evidence_page_and_csv_say_which_limit_and_why(client_as: AsUser, world: World) -> None:
    alert_id = _fire_with_basis(world)
    c, _ = client_as("insp1")
    en = c.get(f"/alerts/{alert_id}?lang=en").text
    assert 'id="alert-limit-basis">Table 3 (2+26 city), 150 mg/m³' in en
    assert "not verified against the primary text" in en
    # every limit considered is a table of the evidence, with whether it applied
    assert 'id="evidence-limit_candidates"' in en and "gb13271-2014-table1" in en
    zh = c.get(f"/alerts/{alert_id}?lang=zh-CN").text
    assert 'id="alert-limit-basis">表3（2+26城市），150 mg/m³' in zh
    rows = list(
        csv.reader(io.StringIO(c.get(f"/alerts/{alert_id}/evidence.csv").content.decode("utf-8-sig")))
    )
    assert ["limit_value", "100.0"] in rows or [
        "limit_value",
        "100",
    ] in rows  # the column the SQL function stored
    assert ["limit_basis_en", "Table 3 (2+26 city), 150 mg/m³"] in rows
    assert ["limit_basis_zh", "表3（2+26城市），150 mg/m³"] in rows
    assert ["limit_table", "Table 3"] in rows and ["limit_verified", "False"] in rows
    head = next(i for i, r in enumerate(rows) if r and r[0] == "evidence.limit_candidates")
    cand = [dict(zip(rows[head], r, strict=True)) for r in rows[head + 1 : head + 3]]
    assert [(x["table"], x["value"], x["applies"]) for x in cand] == [
        ("Table 1", "400", "True"),
        ("Table 3", "150", "True"),
    ]


def test_an_alert_from_before_the_tables_shows_no_basis(client_as: AsUser, world: World) -> None:
    c, _ = client_as("insp1")
    page = c.get(f"/alerts/{world.alert1}?lang=en").text
    assert 'id="alert-limit">100' in page and "alert-limit-basis" not in page
