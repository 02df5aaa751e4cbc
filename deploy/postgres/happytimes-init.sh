#!/bin/bash
# PostgreSQL init script (docker-entrypoint-initdb.d, run once on an empty data directory): the
# role and database tests/rig/postgres.sh creates for the real-Debezium test, then the same
# schema and publication (tests/fixtures/debezium/_sql/01_schema.sql, mounted at
# /happytimes/01_schema.sql), created by that role so Debezium owns what it captures.
#   HAPPYTIMES_PG_USER (dbz), HAPPYTIMES_PG_PASSWORD (dbz), HAPPYTIMES_PG_DATABASE (happytimes),
#   HAPPYTIMES_SCHEMA (/happytimes/01_schema.sql)
set -e
user=${HAPPYTIMES_PG_USER:-dbz}
database=${HAPPYTIMES_PG_DATABASE:-happytimes}
# psql variables (:"name" quotes an identifier, :'name' a literal) keep the values out of the SQL.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set=user="$user" --set=password="${HAPPYTIMES_PG_PASSWORD:-dbz}" --set=database="$database" <<'SQL'
CREATE ROLE :"user" WITH LOGIN REPLICATION PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"user";
SQL
psql -v ON_ERROR_STOP=1 --quiet --username "$user" --dbname "$database" -f "${HAPPYTIMES_SCHEMA:-/happytimes/01_schema.sql}"
