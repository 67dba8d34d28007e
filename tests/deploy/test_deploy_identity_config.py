"""Broker identities in the shipped files, without a broker: the ACL generator and init-secrets.sh
refuse reserved and duplicate gateway ids, and the compose and EMQX manifests bind client ids the
way deploy/mosquitto does (issue 9)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from parkpulse.registry import Firm, Gateway, ParkFile, ParkInfo
from provisioning.mosquitto_acl import RESERVED_IDS, RESERVED_PREFIXES, gateway_acl, main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"


def _park(park: str, *gateway_ids: str) -> ParkFile:
    """Built without validation: the registry refuses reserved ids itself, and the generator must
    refuse them again whatever produced its input."""
    return ParkFile(
        park=ParkInfo(id=park, name=park),
        firms=[
            Firm(
                id=f"{park}-f{i}",
                name="f",
                land_mu=1,
                gateways=[Gateway.model_construct(id=g, name=None, devices=[])],
            )
            for i, g in enumerate(gateway_ids)
        ],
    )


@pytest.mark.parametrize("gateway_id", ["ingest", "alerts", "rules", "console", "platform", "admin", "root"])
def test_generator_refuses_a_reserved_gateway_id(gateway_id: str) -> None:
    with pytest.raises(ValueError, match=rf"gateway id '{gateway_id}': reserved") as err:
        gateway_acl([_park("p1", "gw-1", gateway_id)])
    assert "pp/v1/p1/p1-f1/" in str(err.value)  # where it is, too


@pytest.mark.parametrize("gateway_id", ["pp-ingest-host-ingest", "pp-alerts-1a2b3c4d-in", "pp-gw-p1-gw-1"])
def test_generator_refuses_the_platforms_client_id_prefix(gateway_id: str) -> None:
    with pytest.raises(ValueError, match=rf"gateway id '{gateway_id}': the prefix 'pp-' is reserved"):
        gateway_acl([_park("p1", gateway_id)])


def test_generator_refuses_duplicates_and_names_every_problem() -> None:
    with pytest.raises(ValueError) as err:
        gateway_acl([_park("p1", "gw-a", "ingest", "gw-b"), _park("p2", "gw-a", "gw-b")])
    lines = str(err.value).splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("gateway id 'ingest': reserved")
    assert lines[1] == "gateway id 'gw-a': used twice (pp/v1/p1/p1-f0/gw-a and pp/v1/p2/p2-f0/gw-a)"
    assert lines[2] == "gateway id 'gw-b': used twice (pp/v1/p1/p1-f2/gw-b and pp/v1/p2/p2-f1/gw-b)"


def test_generator_output_has_one_user_block_per_account() -> None:
    acl = gateway_acl([_park("p1", "gw-a", "gw-b", "ingest-gw")])
    users = re.findall(r"^user (\S+)$", acl, flags=re.M)
    assert sorted(users) == sorted({*users}) and {"gw-a", "gw-b", "ingest-gw", "ingest", "alerts"} <= {*users}


def test_generator_cli_names_the_id_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for park, gateways in (("p1", ["ingest", "gw-1"]), ("p2", ["gw-1"])):
        files.append(tmp_path / f"{park}.yaml")
        files[-1].write_text(
            yaml.safe_dump(
                {
                    "park": {"id": park, "name": "园区"},
                    "firms": [
                        {
                            "id": f"{park}-f1",
                            "name": "甲",
                            "land_mu": 1,
                            "gateways": [{"id": g} for g in gateways],
                        }
                    ],
                },
                allow_unicode=True,
            )
        )
    assert main([str(f) for f in files]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        "firms[0].gateways[0].id" in err and "gateway id 'ingest': reserved" in err
    )  # the registry's own check
    assert "Traceback" not in err
    files[0].write_text(files[0].read_text().replace("id: ingest", "id: gw-0"))
    assert main([str(f) for f in files]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "mosquitto acl: gateway id 'gw-1': used twice" in err
    assert "Traceback" not in err


def test_init_secrets_reserves_the_same_ids_as_the_generator() -> None:
    text = (COMPOSE / "init-secrets.sh").read_text()
    ids = re.search(r'^RESERVED_IDS="([^"]*)"', text, flags=re.M)
    prefix = re.search(r"^RESERVED_PREFIX=(\S+)", text, flags=re.M)
    assert ids and prefix
    assert set(ids.group(1).split()) == RESERVED_IDS
    assert (prefix.group(1),) == RESERVED_PREFIXES


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="needs mosquitto_passwd (Debian mosquitto)")
@pytest.mark.parametrize("gateway_id", ["ingest", "admin", "pp-ingest-x"])
def test_init_secrets_refuses_a_reserved_gateway_id(tmp_path: Path, gateway_id: str) -> None:
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work, ignore=shutil.ignore_patterns(".env", "secrets"))
    assert (
        subprocess.run(["bash", str(work / "init-secrets.sh")], capture_output=True, timeout=60).returncode
        == 0
    )
    services_before = (work / "secrets/mosquitto-services.passwd").read_text()
    run = subprocess.run(
        ["bash", str(work / "init-secrets.sh"), "add-gateway", gateway_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and f"gateway id '{gateway_id}' is reserved" in run.stderr, run.stderr
    assert (work / "secrets/mosquitto.passwd").read_text() == ""
    assert (work / "secrets/mosquitto-services.passwd").read_text() == services_before


def test_compose_gives_ingest_a_stable_secret_client_id_on_the_services_listener() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    ingest = compose["ingest"]
    assert "PARKPULSE_INGEST_CLIENT_ID" not in ingest["environment"], (
        "a fixed id such as ingest-1 is guessable"
    )
    assert ingest.get("hostname"), (
        "the default id holds the host name: it must survive re-creating the container"
    )
    mounts = {v.split(":")[1] for v in compose["mosquitto"]["volumes"]}
    assert {"/mosquitto/config/passwd", "/mosquitto/config/passwd-services"} <= mounts
    assert [p for p in compose["mosquitto"]["ports"] if "1884" in str(p)] == [], (
        "the services' listener is internal"
    )


def _emqx_env() -> dict[str, str]:
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/emqx.yaml").read_text()))
    sts = next(d for d in docs if d and d["kind"] == "StatefulSet")
    return {e["name"]: e.get("value", "") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_emqx_binds_gateway_client_ids_and_keeps_gateways_off_the_services_listener() -> None:
    env = _emqx_env()
    zone = env["EMQX_LISTENERS__SSL__DEFAULT__ZONE"]
    assert env[f"EMQX_ZONES__{zone.upper()}__MQTT__USE_USERNAME_AS_CLIENTID"] == "true"
    assert env.get("EMQX_MQTT__USE_USERNAME_AS_CLIENTID", "false") == "false", (
        "ingest replicas share an account"
    )
    # The services' listener authenticates against a chain of its own (service accounts only).
    assert env["EMQX_LISTENERS__TCP__DEFAULT__AUTHENTICATION__1__BACKEND"] == "built_in_database"
    assert (
        env["EMQX_LISTENERS__WS__DEFAULT__ENABLE"] == env["EMQX_LISTENERS__WSS__DEFAULT__ENABLE"] == "false"
    )
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/emqx.yaml").read_text()))
    external = next(
        d for d in docs if d and d["kind"] == "Service" and d["metadata"]["name"] == "emqx-external"
    )
    assert [p["port"] for p in external["spec"]["ports"]] == [8883], (
        "only the gateways' listener leaves the cluster"
    )
