"""The HA deployment files, checked without a container engine (none runs here), as tests/deploy
does for the single-node ones: deploy/compose/docker-compose.ha.yml (+ patroni.yml, haproxy-ha.cfg)
and deploy/k8s/ha/ parse, and their names, ports, users, secrets and settings agree with each other
and with the single-node files. The HA behaviour itself runs with real processes in
test_ha_failover.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "k8s"
HA_NODES = {"etcd", "patroni1", "patroni2", "haproxy"}
DB_URLS = {"PARKPULSE_DATABASE_URL", "PARKPULSE_DATABASE_READ_URL"}


def _url(compose_value: str) -> dict[str, Any]:
    """libpq's reading of a compose URL, with ${VAR:?msg} put in as a plain password."""
    return dict(conninfo_to_dict(re.sub(r"\$\{(\w+)[^}]*\}", r"\1", compose_value)))


def _yaml(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_ha_compose_runs_the_same_services_on_a_multi_host_url() -> None:
    single, ha = _yaml(COMPOSE / "docker-compose.yml"), _yaml(COMPOSE / "docker-compose.ha.yml")
    s1, s2 = single["services"], ha["services"]
    assert set(s2) == (set(s1) - {"timescaledb"}) | HA_NODES
    for name, svc in s2.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in s2, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0]
            if src.startswith("./secrets/"):
                continue
            if src.startswith((".", "/")):
                assert (COMPOSE / src).exists(), f"{name} mounts missing {src}"
            else:
                assert src in ha["volumes"], f"{name}: volume {src} not declared"
        if name in s1 and name not in ("grafana", "db-grants"):
            env1 = {k: v for k, v in (s1[name].get("environment") or {}).items() if k not in DB_URLS}
            env2 = {k: v for k, v in (svc.get("environment") or {}).items() if k not in DB_URLS}
            assert env1 == env2, f"{name}: settings differ from docker-compose.yml beyond the URLs"
            assert svc.get("command") == s1[name].get("command"), name
    patroni = _yaml(COMPOSE / "patroni.yml")
    port = int(patroni["postgresql"]["listen"].rsplit(":", 1)[1])
    user = patroni["postgresql"]["authentication"]["superuser"]["username"]
    for svc in ("ingest", "rules", "alerts", "console", "migrate"):
        env = s2[svc]["environment"]
        write = _url(env["PARKPULSE_DATABASE_URL"])
        assert write["host"] == "patroni1,patroni2" and write["port"] == f"{port},{port}", svc
        assert write["target_session_attrs"] == "read-write" and write["user"] == user, svc
        read = _url(env["PARKPULSE_DATABASE_READ_URL"])
        assert read["host"] == write["host"] and read["target_session_attrs"] == "prefer-standby"
    # every ${VAR:?} the file requires is made by init-secrets.sh through env.example
    required = set(re.findall(r"\$\{(\w+):\?", (COMPOSE / "docker-compose.ha.yml").read_text()))
    example = {ln.split("=")[0] for ln in (COMPOSE / "env.example").read_text().splitlines() if "=" in ln}
    assert required <= example, required - example
    assert "PATRONI_REPLICATION_PASSWORD" in (COMPOSE / "init-secrets.sh").read_text()


def test_ha_compose_nodes_etcd_and_haproxy_agree_on_names_and_ports() -> None:
    s = _yaml(COMPOSE / "docker-compose.ha.yml")["services"]
    patroni = _yaml(COMPOSE / "patroni.yml")
    api_port = int(patroni["restapi"]["listen"].rsplit(":", 1)[1])
    pg_port = int(patroni["postgresql"]["listen"].rsplit(":", 1)[1])
    etcd_cmd = " ".join(s["etcd"]["command"])
    host, etcd_port = patroni["etcd3"]["hosts"].split(":")
    assert host == "etcd" and f"--advertise-client-urls=http://etcd:{etcd_port}" in etcd_cmd
    for node in ("patroni1", "patroni2"):
        env = s[node]["environment"]
        assert env["PATRONI_NAME"] == node == s[node]["hostname"]
        assert env["PATRONI_RESTAPI_CONNECT_ADDRESS"] == f"{node}:{api_port}"
        assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{node}:{pg_port}"
        assert f"{api_port}/health" in " ".join(s[node]["healthcheck"]["test"])
        assert s[node]["build"]["dockerfile"] == "deploy/docker/patroni.Dockerfile"
        assert "./patroni.yml:/etc/patroni/patroni.yml:ro" in s[node]["volumes"]
    assert s["patroni1"]["volumes"][-1] != s["patroni2"]["volumes"][-1], "each node its own data volume"
    dockerfile = (ROOT / "deploy/docker/patroni.Dockerfile").read_text()
    assert 'CMD ["/etc/patroni/patroni.yml"]' in dockerfile and "patroni[etcd3,kubernetes]" in dockerfile
    # the documented choice (docs/ha.md): asynchronous replication, gap fill, immediate failover
    dcs = patroni["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is False and dcs["primary_start_timeout"] == 0
    assert dcs["postgresql"]["parameters"]["shared_preload_libraries"] == "timescaledb"
    hba = " ".join(patroni["postgresql"]["pg_hba"])
    assert f"replication {patroni['postgresql']['authentication']['replication']['username']}" in hba
    # Grafana reads a replica through HAProxy, which checks each node's REST API
    cfg = (COMPOSE / "haproxy-ha.cfg").read_text()
    bind = re.search(r"listen replicas\s+bind \*:(\d+)", cfg)
    assert bind and s["grafana"]["environment"]["PARKPULSE_GRAFANA_DB_HOST"].startswith(f"haproxy:{bind[1]}")
    assert "GET /replica" in cfg
    for node in ("patroni1", "patroni2"):
        assert f"server {node} {node}:{pg_port} check port {api_port}" in cfg
    assert (COMPOSE / "patroni-post-bootstrap.sh").stat().st_mode & 0o111, "post-bootstrap must be executable"


def test_ha_k8s_replaces_the_single_database_with_patroni() -> None:
    kust = _yaml(K8S / "ha" / "kustomization.yaml")
    assert kust["resources"] == ["../", "patroni.yaml"]
    deleted = {
        (p["kind"], p["metadata"]["name"]) for p in (yaml.safe_load(x["patch"]) for x in kust["patches"])
    }
    assert deleted == {("StatefulSet", "timescaledb"), ("Service", "timescaledb")}
    base = [d for f in _yaml(K8S / "kustomization.yaml")["resources"] for d in _docs(K8S / f)]
    assert ("StatefulSet", "timescaledb") in {(d["kind"], d["metadata"]["name"]) for d in base}
    docs = _docs(K8S / "ha" / "patroni.yaml")
    sts = _find(docs, "StatefulSet", "timescaledb")
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["replicas"] >= 2 and sts["spec"]["selector"]["matchLabels"] == labels
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    # the primary Service keeps the base's name, so the Secret's DATABASE_URL stays valid: Patroni
    # writes the Endpoints named after its scope
    scope = env["PATRONI_SCOPE"]["value"]
    primary = _find(docs, "Service", scope)
    assert "selector" not in primary["spec"] and env["PATRONI_KUBERNETES_USE_ENDPOINTS"]["value"] == "true"
    secret = _find(_docs(K8S / "secret.example.yaml"), "Secret", "parkpulse-secrets")["stringData"]
    assert conninfo_to_dict(secret["DATABASE_URL"])["host"] == scope
    assert yaml.safe_load(env["PATRONI_KUBERNETES_LABELS"]["value"]) == labels
    replica = _find(docs, "Service", "timescaledb-replica")["spec"]["selector"]
    assert replica == {**labels, "role": "replica"}
    assert _find(docs, "Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == "parkpulse-secrets" and ref["key"] in secret, ref
    # RBAC: the pod's account may edit endpoints and pods (leader lock, member labels)
    assert pod["spec"]["serviceAccountName"] == "patroni"
    role = _find(docs, "Role", "patroni")
    granted = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"endpoints", "pods", "configmaps"} <= granted
    assert _find(docs, "RoleBinding", "patroni")["roleRef"]["name"] == "patroni"
    # the ConfigMap's Patroni file makes the same choices as compose's
    cm = _find(docs, "ConfigMap", "patroni-config")["data"]
    k8s_cfg, compose_cfg = yaml.safe_load(cm["patroni.yml"]), _yaml(COMPOSE / "patroni.yml")
    for key in ("synchronous_mode", "primary_start_timeout", "maximum_lag_on_failover"):
        assert k8s_cfg["bootstrap"]["dcs"][key] == compose_cfg["bootstrap"]["dcs"][key], key
    assert k8s_cfg["bootstrap"]["post_bootstrap"].rsplit("/", 1)[1] in cm
    mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["config"] == "/etc/patroni"
    assert kust["images"][0]["name"] == pod["spec"]["containers"][0]["image"]
