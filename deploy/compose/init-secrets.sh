#!/usr/bin/env bash
# ParkPulse compose: create .env with random passwords and the Mosquitto password files
# (secrets/mosquitto-services.passwd: the service accounts, listener 1884;
#  secrets/mosquitto.passwd: the gateways, listeners 1883/8883 — deploy/mosquitto/README.md).
#   ./init-secrets.sh                 first time (keeps an existing .env and password file)
#   ./init-secrets.sh add-gateway ID  add (or reset) a gateway account; prints its password once
# Uses mosquitto_passwd from the Debian package when installed, else the eclipse-mosquitto image.
set -euo pipefail
cd "$(dirname "$0")"
MOSQUITTO_IMAGE=eclipse-mosquitto:2.0.20
mkdir -p secrets/certs
chmod 700 secrets

rand() { head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-24; }

passwd_set() {  # file-in-secrets/ user password
  local file=secrets/$1
  [ -f "$file" ] || : > "$file"
  if command -v mosquitto_passwd >/dev/null 2>&1; then
    mosquitto_passwd -b "$file" "$2" "$3"
  else
    docker run --rm -u "$(id -u):$(id -g)" -v "$PWD/secrets:/s" "$MOSQUITTO_IMAGE" \
      mosquitto_passwd -b "/s/$1" "$2" "$3"
  fi
  # 644 inside the 700 secrets/ folder: the broker (uid 1883 in the container) must read the
  # file mounted on its own; on the host only the owner can reach it. It holds salted hashes.
  chmod 644 "$file"
}

valid_id() { [[ "$1" =~ ^[a-z0-9][a-z0-9-]*$ ]]; }
# The same reserved ids and prefix as provisioning/mosquitto_acl.py (a test keeps them equal).
RESERVED_IDS="ingest alerts rules console fleet platform parkpulse admin administrator root superuser system sys mosquitto emqx dashboard broker bridge grafana monitor anonymous"
RESERVED_PREFIX=pp-
reserved_id() { [[ " $RESERVED_IDS " == *" $1 "* || "$1" == "$RESERVED_PREFIX"* ]]; }

if [ "${1:-}" = add-gateway ]; then
  id=${2:?usage: ./init-secrets.sh add-gateway GATEWAY_ID}
  valid_id "$id" || { echo "gateway id '$id': use lowercase letters, digits and '-' (the registry id)" >&2; exit 2; }
  reserved_id "$id" && { echo "gateway id '$id' is reserved for the platform (ids: $RESERVED_IDS; prefix $RESERVED_PREFIX)" >&2; exit 2; }
  pw=$(rand)
  passwd_set mosquitto.passwd "$id" "$pw"
  echo "gateway $id: username $id  password $pw"
  echo "(give it to the gateway's config: uplink url mqtt://$id:<password>@<broker>:1883 or mqtts://…:8883)"
  echo "Mosquitto re-reads the password file on SIGHUP: docker compose kill -s HUP mosquitto"
  exit 0
fi

if [ ! -f .env ]; then
  cp env.example .env
  chmod 600 .env
  for var in POSTGRES_PASSWORD GRAFANA_ADMIN_PASSWORD GRAFANA_DB_PASSWORD MQTT_INGEST_PASSWORD \
             MQTT_ALERTS_PASSWORD MQTT_RULES_PASSWORD MQTT_CONSOLE_PASSWORD MQTT_FLEET_PASSWORD \
             PATRONI_REPLICATION_PASSWORD; do
    sed -i "s|^$var=.*|$var=$(rand)|" .env
  done
  echo "wrote .env with random passwords"
else
  echo ".env exists: kept"
fi
# shellcheck disable=SC1091
set -a; . ./.env; set +a
for svc in ingest alerts rules console fleet; do
  var="MQTT_$(echo "$svc" | tr a-z A-Z)_PASSWORD"
  passwd_set mosquitto-services.passwd "$svc" "${!var}"
done
[ -f secrets/mosquitto.passwd ] || { : > secrets/mosquitto.passwd; chmod 644 secrets/mosquitto.passwd; }
echo "wrote secrets/mosquitto-services.passwd (service accounts ingest, alerts, rules, console, fleet)"
# The key that signs pushed gateway configs: the private half stays here (fleet service), the public
# half goes to every managed gateway (managed.verify_key). Never overwritten.
if [ ! -f secrets/fleet-signing.pem ]; then
  (umask 077; openssl genpkey -algorithm ed25519 -out secrets/fleet-signing.pem)
  openssl pkey -in secrets/fleet-signing.pem -pubout -out secrets/fleet-signing.pub
  # readable by the image's user (uid 10001) only; as root, hand it over, else say so
  if [ "$(id -u)" -eq 0 ]; then chown 10001 secrets/fleet-signing.pem
  else echo "note: run 'sudo chown 10001 secrets/fleet-signing.pem' so the fleet container can read it"; fi
  echo "wrote secrets/fleet-signing.pem (keep it here) and fleet-signing.pub (copy it to each managed gateway)"
fi
echo "next: ./init-secrets.sh add-gateway <gateway-id> for every gateway, then docker compose up -d --build"
