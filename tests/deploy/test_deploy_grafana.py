"""Dashboards as code: committed JSON equals the generator; `parkpulse grafana push` provisions
folder, datasource and dashboards idempotently.

No Grafana server can run on this machine (it is not in the package registries it reaches), so
the push is tested against a LOCAL HTTP STAND-IN: a small real HTTP server that implements the
few Grafana API endpoints the push uses (folders, datasources by uid, dashboards by uid and
/api/dashboards/db), checks the bearer token and the payload shapes, keeps state like Grafana
(dashboard versions grow on every save) and records every request.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provisioning.dashboards import DASHBOARDS, DEFAULT_OUT, diff_dir, render, render_all
from provisioning.grafana_cli import app

TOKEN = "glsa_test_token"
runner = CliRunner()


def test_deploy_committed_dashboards_equal_the_generator() -> None:
    problems = diff_dir(DEFAULT_OUT)
    assert not problems, f"run `parkpulse grafana generate` and commit: {problems}"
    # Deterministic: two renders are byte-identical.
    assert render_all() == render_all()


def test_deploy_generate_cli_writes_and_checks(tmp_path: Path) -> None:
    res = runner.invoke(app, ["generate", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(s.file for s in DASHBOARDS)
    assert runner.invoke(app, ["generate", "--dir", str(tmp_path), "--check"]).exit_code == 0
    first = tmp_path / DASHBOARDS[0].file
    first.write_text(first.read_text().replace("园区总览", "edited by hand"))
    res = runner.invoke(app, ["generate", "--dir", str(tmp_path), "--check"])
    assert res.exit_code == 1 and "differs" in res.output
    assert runner.invoke(app, ["generate", "--dir", str(tmp_path)]).exit_code == 0
    assert first.read_text() == render(DASHBOARDS[0])


_Answer = tuple[int, Any]


@dataclass
class FakeGrafana:
    """State of the stand-in: what a Grafana would hold after the requests it received."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, method: str, p: list[str], body: Any) -> _Answer:
        """The answer to `method /p…`; an endpoint's handler answers None for requests not its own."""
        for endpoint in (
            self._folders,
            self._datasource_by_uid,
            self._new_datasource,
            self._dashboard_by_uid,
            self._save_dashboard,
        ):
            answer = endpoint(method, p, body)
            if answer is not None:
                return answer
        return 404, {"message": f"no route {method} {'/'.join(p)}"}

    def _folders(self, method: str, p: list[str], body: Any) -> _Answer | None:
        if p[:2] != ["api", "folders"]:
            return None
        if method == "GET" and len(p) == 3:
            f = self.folders.get(p[2])
            return (200, f) if f else (404, {"message": "folder not found"})
        if method == "POST" and len(p) == 2:
            assert body["uid"] and body["title"]
            if body["uid"] in self.folders:
                return 409, {"message": "folder exists"}
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "version": 1}
            return 200, self.folders[body["uid"]]
        if method == "PUT" and len(p) == 3:
            self.folders[p[2]]["title"] = body["title"]
            return 200, self.folders[p[2]]
        return None

    def _datasource_by_uid(self, method: str, p: list[str], body: Any) -> _Answer | None:
        if p[:3] != ["api", "datasources", "uid"] or len(p) != 4:
            return None
        if method == "GET":
            d = self.datasources.get(p[3])
            return (
                (200, {k: v for k, v in d.items() if k != "secureJsonData"})
                if d
                else (404, {"message": "nf"})
            )
        if method == "PUT":
            assert body["uid"] == p[3] and body["type"] == "grafana-postgresql-datasource"
            self.datasources[p[3]] = {**body, "id": self.datasources[p[3]]["id"]}
            return 200, {"message": "Datasource updated"}
        return None

    def _new_datasource(self, method: str, p: list[str], body: Any) -> _Answer | None:
        if p != ["api", "datasources"] or method != "POST":
            return None
        assert (
            body["uid"] and body["type"] == "grafana-postgresql-datasource" and body["jsonData"]["database"]
        )
        if body["uid"] in self.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        self.datasources[body["uid"]] = {**body, "id": len(self.datasources) + 1}
        return 200, {"id": len(self.datasources), "message": "Datasource added"}

    def _dashboard_by_uid(self, method: str, p: list[str], body: Any) -> _Answer | None:
        if p[:3] != ["api", "dashboards", "uid"] or method != "GET":
            return None
        d = self.dashboards.get(p[3])
        return (
            (200, {"dashboard": d["dashboard"], "meta": {"folderUid": d["folderUid"]}})
            if d
            else (404, {"message": "Dashboard not found"})
        )

    def _save_dashboard(self, method: str, p: list[str], body: Any) -> _Answer | None:
        """POST /api/dashboards/db with overwrite: like Grafana, the version grows on every save."""
        if p != ["api", "dashboards", "db"] or method != "POST":
            return None
        dash = body["dashboard"]
        assert body["overwrite"] is True and body["folderUid"] in self.folders
        assert dash["uid"] and dash["title"] and dash["panels"] and dash.get("id") is None
        old = self.dashboards.get(dash["uid"])
        version = (old["dashboard"]["version"] + 1) if old else 1
        stored = {
            **dash,
            "id": old["dashboard"]["id"] if old else len(self.dashboards) + 1,
            "version": version,
        }
        self.dashboards[dash["uid"]] = {"dashboard": stored, "folderUid": body["folderUid"]}
        return 200, {"status": "success", "uid": dash["uid"], "version": version}


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any] | None:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def _handle(self, method: str) -> None:
            body = self._body()
            state.requests.append((method, self.path, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"message": "Unauthorized"})
            parts = self.path.split("?")[0].strip("/").split("/")
            try:
                code, out = state.route(method, parts, body)
            except (KeyError, TypeError, AssertionError) as exc:
                state.errors.append(f"{method} {self.path}: bad payload {exc!r}")
                code, out = 400, {"message": f"bad request: {exc!r}"}
            self._reply(code, out)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    t = threading.Thread(target=server.serve_forever, name="fake-grafana", daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def _push(url: str, *extra: str, token: str = TOKEN) -> Any:
    return runner.invoke(
        app,
        [
            "push",
            "--url",
            url,
            "--token",
            token,
            "--grafana-database-url",
            "postgresql://grafana_ro:s3cret@db:5432/parkpulse?sslmode=require",
            *extra,
        ],
    )


def test_deploy_push_provisions_idempotently(grafana: tuple[str, FakeGrafana], tmp_path: Path) -> None:
    url, state = grafana
    res = _push(url)
    assert res.exit_code == 0, res.output
    assert not state.errors, state.errors
    assert state.folders["parkpulse"]["title"] == "ParkPulse 园区"
    ds = state.datasources["parkpulse-pg"]
    assert ds["url"] == "db:5432" and ds["user"] == "grafana_ro" and ds["jsonData"]["database"] == "parkpulse"
    assert ds["jsonData"]["sslmode"] == "require" and ds["secureJsonData"] == {"password": "s3cret"}
    want_uids = {json.loads(render(s))["uid"] for s in DASHBOARDS}
    assert set(state.dashboards) == want_uids
    assert all(
        d["folderUid"] == "parkpulse" and d["dashboard"]["version"] == 1 for d in state.dashboards.values()
    )
    n_dash = len(DASHBOARDS)
    assert n_dash == 6
    assert f'"created": {2 + n_dash}' in res.output  # folder + datasource + the dashboards

    # Second push: nothing is created, no dashboard gets a new version.
    n = len(state.requests)
    res = _push(url)
    assert res.exit_code == 0, res.output
    second = state.requests[n:]
    assert not [r for r in second if r[0] == "POST"], [r[:2] for r in second if r[0] == "POST"]
    assert all(d["dashboard"]["version"] == 1 for d in state.dashboards.values())
    assert len(state.folders) == 1 and len(state.datasources) == 1 and len(state.dashboards) == n_dash
    assert f'"unchanged": {1 + n_dash}' in res.output  # the datasource is re-sent: its password is write-only

    # A changed dashboard is updated in place (same uid, overwrite, version 2); the rest stay.
    d = tmp_path / "dash"
    shutil.copytree(DEFAULT_OUT, d)
    f = d / "environment.json"
    f.write_text(f.read_text().replace("环境监测", "环境监测 (本地)"))
    res = _push(url, "--dir", str(d))
    assert res.exit_code == 0, res.output
    versions = {uid: v["dashboard"]["version"] for uid, v in state.dashboards.items()}
    assert versions.pop("pp-environment") == 2 and set(versions.values()) == {1}
    assert state.dashboards["pp-environment"]["dashboard"]["title"] == "环境监测 (本地)"


def test_deploy_push_reports_refusal_clearly(grafana: tuple[str, FakeGrafana]) -> None:
    url, state = grafana
    res = _push(url, token="wrong")
    assert res.exit_code == 1
    assert "read folder parkpulse" in res.output and "401" in res.output
    assert state.requests and not state.dashboards
    res = runner.invoke(app, ["push", "--url", "ftp://x", "--token", TOKEN])
    assert res.exit_code == 1 and "grafana url" in res.output


def test_deploy_push_refuses_a_missing_folder(grafana: tuple[str, FakeGrafana], tmp_path: Path) -> None:
    url, state = grafana
    res = _push(url, "--dir", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "not a folder" in res.output
    res = _push(url, "--dir", str(tmp_path))
    assert res.exit_code == 2 and "no *.json" in res.output
    assert not state.requests


def test_deploy_emission_figures_are_not_kept_in_provisioning() -> None:
    """The environment dashboard reads the limits from v_emission_limits (the alert engine's data
    file, synced into the database); provisioning keeps no copy of them and renders none into SQL."""
    import provisioning

    root = Path(provisioning.__file__).parent
    assert not (root / "data" / "emission_limits.yaml").exists() and not (root / "_limits.py").exists()
    env = json.loads(render_all()["environment.json"])
    sqls = [t["rawSql"] for p in env["panels"] for t in p.get("targets", [])]
    emission = [q for q in sqls if "折算浓度" in q]
    assert len(emission) == 3 and all("FROM v_emission_limits" in q and "VALUES" not in q for q in emission)
    for q in emission:  # only the conversion formula's 21 (and its 20.5 guard) and column positions
        assert set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", q)) <= {"1", "2", "21", "20.5"}, q
    validity = [q for q in sqls if "valid" in q]
    assert len(validity) == 2 and all(
        "min_valid_minutes" in q and "0.75" not in q and "45" not in q for q in validity
    )


def test_deploy_push_reports_an_unreachable_grafana() -> None:
    from parkpulse.services import free_port

    res = _push(f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert res.exit_code == 1, res.output
    assert "cannot reach Grafana" in res.output and "read folder parkpulse" in res.output
