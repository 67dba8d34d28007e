#!/bin/sh
# Run once by Patroni on the first primary, after initdb: the ParkPulse database (the schema
# itself comes from the `migrate` service through the multi-host URL).
set -eu
psql -d "$1" -v ON_ERROR_STOP=1 -c "CREATE DATABASE parkpulse"
