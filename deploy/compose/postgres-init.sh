#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory: a login role and a
# database per service, owned by it, CONNECT revoked from PUBLIC (as deploy/local and
# CloudNativePG's managed roles). Passwords: PG_PASSWORD_<SERVICE> from .env.
set -euo pipefail
for service in intake referral followup notifications ops; do
  var="PG_PASSWORD_${service^^}"
  password="${!var:?$var is not set (deploy/compose/.env)}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="enlace_$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE CONNECT ON DATABASE :"role" FROM PUBLIC;
SQL
done
