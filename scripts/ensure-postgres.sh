#!/usr/bin/env bash
# Makes a PostgreSQL server available on 127.0.0.1:5432 for the test suite:
# installs Debian's package when missing, starts the cluster, and creates the
# test role (allowed to create databases, so each test run can make its own).
# Idempotent: a machine that already has all of this is left as it is.
set -euo pipefail

ROLE=${GATEWAY_TEST_PG_ROLE:-gateway_test}
PASSWORD=${GATEWAY_TEST_PG_PASSWORD:-gateway_test}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main"' | grep -q .; then
  pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" && $4=="online"' | grep -q .; then
  pg_ctlcluster "$version" main start
fi

for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.2
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "ensure-postgres: server did not come up" >&2; exit 1; }

as_postgres "psql -qtAX -c \"SELECT 1 FROM pg_roles WHERE rolname='$ROLE'\"" | grep -q 1 ||
  as_postgres "psql -q -c \"CREATE ROLE $ROLE LOGIN CREATEDB CREATEROLE PASSWORD '$PASSWORD'\""
as_postgres "psql -qtAX -c \"SELECT 1 FROM pg_database WHERE datname='$ROLE'\"" | grep -q 1 ||
  as_postgres "psql -q -c \"CREATE DATABASE $ROLE OWNER $ROLE\""
echo "ensure-postgres: PostgreSQL $version ready on 127.0.0.1:5432 (role $ROLE)" >&2
