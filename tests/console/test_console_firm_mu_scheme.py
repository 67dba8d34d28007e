"""The firm page names the 亩均 scheme a result was classed with (from the result's explanation)."""

from __future__ import annotations

from collections.abc import Callable

from console_testkit import World
from fastapi.testclient import TestClient

AsUser = Callable[[str], tuple[TestClient, str]]


def test_firm_page_shows_the_mu_scheme(client_as: AsUser, world: World) -> None:
    c, _ = client_as("insp1")
    with world.conn() as conn:
        conn.execute(
            """INSERT INTO firm_kpi_results (firm_id, year, park_id, rule_set, rule_version, score, class, explanation)
               VALUES (%s, 2025, %s, 'henan-2025', '2025.1', 240.29, 'A',
                       '{"mu_scheme": {"name": "huangyan-2022-zhengzhou-class", "version": "2022.1",
                         "title": "黄岩 2022 指标与权重（浙江）+ 郑州 2018 两段分类法",
                         "title_en": "Huangyan 2022 indicators and weights (Zhejiang) with the Zhengzhou 2018 class method"}}'),
                      (%s, 2024, %s, 'henan-2025', '2025.0', 80, 'B', '{}')""",
            (world.f1, world.p1, world.f1, world.p1),
        )
    page = c.get(f"/firms/{world.f1}")
    assert page.status_code == 200 and "亩均评价方案" in page.text
    assert (
        "黄岩 2022 指标与权重（浙江）+ 郑州 2018 两段分类法" in page.text
        and "huangyan-2022-zhengzhou-class" in page.text
    )
    assert "未记录（方案命名之前的评价）" in page.text  # the 2024 result was stored before schemes were named
    en = c.get(f"/firms/{world.f1}?lang=en").text
    assert "Huangyan 2022 indicators and weights (Zhejiang) with the Zhengzhou 2018 class method" in en
    api = c.get(f"/api/v1/firms/{world.f1}").json()
    assert (
        api["kpis"][0]["mu_scheme"] == "huangyan-2022-zhengzhou-class" and api["kpis"][1]["mu_scheme"] is None
    )
