"""The console's report download (console/_report_download.py) through a real app and database:
a firm in the user's scope downloads, another firm is a 404. The router is included here because
its registration line in console/app.py is the lead's to add."""

from __future__ import annotations

import io
import re

import psycopg
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from reports_seed import seed

from console import ConsoleSettings, create_app
from console._report_download import router
from console.accounts import add_user

PASSWORD = "Hh9&-chem-Qsd7u"


def test_download_in_scope_and_404_outside(db: str, unique_id: str) -> None:
    seed(db, unique_id)
    with psycopg.connect(db) as conn:
        add_user(conn, "op1", PASSWORD, "operator", parks=[], firms=[f"{unique_id}-f0"])
        conn.commit()
    app = create_app(ConsoleSettings(database_url=db))
    app.include_router(router)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as c:
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
        assert token
        r = c.post(
            "/login", data={"user": "op1", "password": PASSWORD, "csrf": token.group(1), "next": "/alerts"}
        )
        assert r.status_code == 303
        r = c.get(f"/firms/{unique_id}-f0/report.xlsx?period=2025-11")
        assert r.status_code == 200, r.text[:300]
        assert r.headers["content-disposition"] == f'attachment; filename="{unique_id}-f0-2025-11.xlsx"'
        wb = load_workbook(io.BytesIO(r.content))
        assert "能源消费" in wb.sheetnames
        r = c.get(f"/firms/{unique_id}-f0/report.pdf?period=2025-11&lang=en")
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        assert c.get(f"/firms/{unique_id}-f1/report.pdf?period=2025-11").status_code == 404
        assert c.get(f"/firms/{unique_id}-f0/report.pdf?period=2025-13").status_code == 422
