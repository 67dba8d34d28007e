"""deploy/compose, deploy/docker and deploy/k8s, checked without a container engine.

No Docker engine or Kubernetes cluster runs on this machine, so these tests validate what can be
validated here: the YAML parses; every file a service mounts or the Dockerfile copies exists;
every PARKPULSE_* variable set for a service is a real setting of that service (pydantic-settings
classes of the kernel and the services); every service command is a real `parkpulse` command;
the secrets script produces what compose needs; and the Grafana read-only role script works on
the real PostgreSQL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pydantic_settings import BaseSettings
from typer.main import get_command

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "k8s"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def _settings_classes() -> dict[str, type[BaseSettings]]:
    from alerts._settings import AlertSettings
    from console.settings import ConsoleSettings
    from ingest.settings import IngestSettings
    from notify._settings import NotifySettings
    from parkpulse.settings import Settings
    from rules._service import RulesSettings

    return {
        "PARKPULSE_INGEST_": IngestSettings,
        "PARKPULSE_ALERTS_": AlertSettings,
        "PARKPULSE_CONSOLE_": ConsoleSettings,
        "PARKPULSE_RULES_": RulesSettings,
        "PARKPULSE_NOTIFY_": NotifySettings,
        "PARKPULSE_": Settings,
    }


def _cli_envvars() -> set[str]:
    """Variables the `parkpulse` commands read through their options (`envvar=`), e.g. fleet serve."""
    from parkpulse import cli

    cli._load_plugins()
    found: set[str] = set()
    stack: list[Any] = [get_command(cli.app)]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for p in getattr(cmd, "params", []):
            ev = getattr(p, "envvar", None)
            found.update([ev] if isinstance(ev, str) else ev or [])
    return found


# Read by Grafana's provisioning file, not by a Python service.
GRAFANA_VARS = {
    "PARKPULSE_GRAFANA_DB_HOST",
    "PARKPULSE_GRAFANA_DB_NAME",
    "PARKPULSE_GRAFANA_DB_USER",
    "PARKPULSE_GRAFANA_DB_PASSWORD",
    "PARKPULSE_GRAFANA_DB_SSLMODE",
}


def _check_env_name(name: str) -> str | None:
    if name in GRAFANA_VARS or name in _cli_envvars():
        return None
    for prefix, cls in _settings_classes().items():  # longest prefixes first
        if name.startswith(prefix):
            field = name[len(prefix) :].lower()
            if field in cls.model_fields:
                return None
            return f"{name}: {cls.__name__} has no field {field!r} (fields: {sorted(cls.model_fields)})"
    return f"{name}: no ParkPulse settings class reads it"


def _parkpulse_command_exists(args: list[str]) -> str | None:
    """Walk the `parkpulse` click tree (kernel app + plugins) along the sub-commands in args."""
    from parkpulse import cli

    cli._load_plugins()
    cmd: Any = get_command(cli.app)
    path = []
    for a in args:
        if a.startswith("-"):
            break
        sub = getattr(cmd, "commands", {}).get(a)
        if sub is None:
            if getattr(cmd, "commands", None):
                return f"parkpulse {' '.join(path)}: no sub-command {a!r} (has {sorted(cmd.commands)})"
            break
        cmd, path = sub, [*path, a]
    options = {o for p in getattr(cmd, "params", []) for o in getattr(p, "opts", [])}
    for a in args:
        if a.startswith("--") and a not in options:
            return f"parkpulse {' '.join(path)}: no option {a} (has {sorted(options)})"
    return None


def test_deploy_compose_services_are_consistent() -> None:
    c = _compose()
    services = c["services"]
    assert {"timescaledb", "mosquitto", "grafana", "ingest", "rules", "alerts", "console", "migrate"} <= set(
        services
    )
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["grafana"]["image"].endswith(":11.6.0"), "Grafana must be the build the dashboards target"
    problems: list[str] = []
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}) or {}:
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
        for vol in svc.get("volumes", []) or []:
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                path = (COMPOSE / src).resolve()
                if src.startswith("./secrets/"):
                    assert "secrets" in (COMPOSE / "init-secrets.sh").read_text()
                elif not path.exists():
                    problems.append(f"{name}: mounts {src}, which does not exist")
            elif src not in c.get("volumes", {}):
                problems.append(f"{name}: named volume {src} not declared")
        if "build" in svc:
            ctx = (COMPOSE / svc["build"]["context"]).resolve()
            if not (ctx / svc["build"]["dockerfile"]).exists():
                problems.append(f"{name}: Dockerfile {svc['build']['dockerfile']} not found in {ctx}")
            cmd = svc.get("command") or []
            err = _parkpulse_command_exists(cmd)
            if err:
                problems.append(f"{name}: {err}")
        for key in svc.get("environment") or {}:
            if key.startswith("PARKPULSE_"):
                err = _check_env_name(key)
                if err:
                    problems.append(f"{name}: {err}")
    assert not problems, "\n".join(problems)


def test_deploy_compose_wires_the_broker_and_grafana() -> None:
    services = _compose()["services"]
    # Each service account logs in with its own user, matching deploy/mosquitto/acl.
    acl = (ROOT / "deploy/mosquitto/acl").read_text()
    for svc, user in (("ingest", "ingest"), ("alerts", "alerts")):
        url = services[svc]["environment"]["PARKPULSE_MQTT_URL"]
        assert url.startswith(f"mqtt://{user}:") and "@mosquitto:1884" in url  # the services' listener
        assert f"user {user}\n" in acl
    # Grafana's provisioning reads exactly the variables compose sets.
    ds = (ROOT / "deploy/grafana/provisioning/datasources/parkpulse.yaml").read_text()
    used = set(re.findall(r"\$\{(PARKPULSE_GRAFANA_\w+)\}", ds))
    assert used == GRAFANA_VARS
    assert used <= set(services["grafana"]["environment"])
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/parkpulse.yaml").read_text())
    mounts = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert prov["providers"][0]["options"]["path"] in mounts
    # Every ${VAR:?…} compose requires is produced by init-secrets.sh (via env.example).
    required = set(re.findall(r"\$\{(\w+):\?", (COMPOSE / "docker-compose.yml").read_text()))
    example = {ln.split("=")[0] for ln in (COMPOSE / "env.example").read_text().splitlines() if "=" in ln}
    assert required <= example, required - example


def test_deploy_dockerfile_copies_existing_paths() -> None:
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    stages = re.findall(r"^FROM .* AS (\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"], "multi-stage: build then runtime"
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    pkgs = re.findall(
        r'"(\w+)\*"',
        (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.packages.find]")[1].split("\n\n")[0],
    )
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.M))
    assert set(pkgs) == copied, f"packages of pyproject.toml not copied: {set(pkgs) - copied}"
    assert re.search(r"^USER parkpulse$", text, flags=re.M), "runtime must not run as root"


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="needs mosquitto_passwd (Debian mosquitto)")
def test_deploy_init_secrets_makes_env_and_password_file(tmp_path: Path) -> None:
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work, ignore=shutil.ignore_patterns(".env", "secrets"))
    run = subprocess.run(["bash", str(work / "init-secrets.sh")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    env = dict(
        ln.split("=", 1) for ln in (work / ".env").read_text().splitlines() if "=" in ln and ln[0] != "#"
    )
    required = set(re.findall(r"\$\{(\w+):\?", (COMPOSE / "docker-compose.yml").read_text()))
    assert all(len(env[k]) >= 16 for k in required), {k: env.get(k) for k in required}
    users = [ln.split(":")[0] for ln in (work / "secrets/mosquitto-services.passwd").read_text().splitlines()]
    assert sorted(users) == ["alerts", "console", "fleet", "ingest", "rules"]
    key = work / "secrets/fleet-signing.pem"
    assert key.stat().st_mode & 0o077 == 0, "the config-signing key is private"
    assert (work / "secrets/fleet-signing.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (work / "secrets/mosquitto.passwd").read_text() == "", "no service account on the gateway listener"
    run = subprocess.run(
        ["bash", str(work / "init-secrets.sh"), "add-gateway", "gw-steel-01"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "gw-steel-01" in run.stdout, run.stderr
    assert "gw-steel-01:" in (work / "secrets/mosquitto.passwd").read_text()
    assert "gw-steel-01:" not in (work / "secrets/mosquitto-services.passwd").read_text()
    before = (work / ".env").read_text()
    assert (
        subprocess.run(["bash", str(work / "init-secrets.sh")], capture_output=True, timeout=60).returncode
        == 0
    )
    assert (work / ".env").read_text() == before, "a second run must keep the passwords"
    bad = subprocess.run(
        ["bash", str(work / "init-secrets.sh"), "add-gateway", "GW_1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "GW_1" in bad.stderr


@pytest.mark.skipif(not shutil.which("psql"), reason="needs psql")
def test_deploy_grafana_role_reads_only_contract_views(db: str, pg_admin: str) -> None:
    role = f"pp_grafana_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    try:
        for _ in range(2):  # idempotent
            run = subprocess.run(
                [
                    "psql",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-v",
                    f"role={role}",
                    "-v",
                    "pw=s3cret",
                    "-f",
                    str(COMPOSE / "grafana-grants.sql"),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            assert run.returncode == 0, run.stderr
        with psycopg.connect(db, user=role) as conn:
            for view in ("v_firm_kpi_year", "v_alerts_open", "v_readings_1h", "v_firm_energy_daily"):
                conn.execute(f"SELECT * FROM {view} LIMIT 1").fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM readings LIMIT 1")
            conn.rollback()
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE x (a int)")
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            dbname = psycopg.conninfo.conninfo_to_dict(db)["dbname"]
            with psycopg.connect(db, autocommit=True) as c:
                c.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a workload: a Deployment's or StatefulSet's pod template, a CronJob's job's."""
    spec = doc.get("spec", {})
    pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
    return list(pod.get("containers", []))


def test_deploy_k8s_manifests_parse_and_scale_ingest() -> None:
    docs = [
        d
        for f in sorted(K8S.rglob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d and "metadata" in d
    ]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "emqx") in kinds and ("StatefulSet", "timescaledb") in kinds
    for name in ("ingest", "rules", "alerts", "console"):
        assert any(k[1] == name and k[0] in ("Deployment", "StatefulSet") for k in kinds), name
    ingest = next(
        d for d in docs if d["metadata"]["name"] == "ingest" and d["kind"] in ("Deployment", "StatefulSet")
    )
    assert ingest["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PARKPULSE_INGEST_GROUP"]["value"] == "ingest"
    # Each replica needs its own MQTT client id (a shared one would kick the others off): the default
    # one, made of the host name (= the pod name) and a tag derived from the broker password.
    assert "PARKPULSE_INGEST_CLIENT_ID" not in env
    emqx = next(d for d in docs if d["metadata"]["name"] == "emqx" and d["kind"] == "StatefulSet")
    assert emqx["spec"]["replicas"] >= 3
    assert {("Deployment", "notify"), ("Deployment", "fleet"), ("CronJob", "reports-monthly")} <= kinds
    problems = [
        f"{d['kind']}/{d['metadata']['name']}: {err}"
        for d in docs
        for c in _containers(d)
        if c.get("image", "").startswith("parkpulse")
        for err in [_parkpulse_command_exists(c.get("args", []))]
        if err
    ]
    problems += [
        f"{d['kind']}/{d['metadata']['name']}: {err}"
        for d in docs
        for c in _containers(d)
        for e in c.get("env", [])
        if e["name"].startswith("PARKPULSE_")
        for err in [_check_env_name(e["name"])]
        if err
    ]
    assert not problems, problems
