#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# one role and one database per service, each database closed to everyone but its owner.
# Passwords come from the environment (see deploy/compose/env.example). Changing them later
# needs ALTER ROLE (or a fresh volume): this script does not run again.
set -eu

create_service_db() {
  name="$1"
  password="$2"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create_service_db evaluation "$EVALUATION_DB_PASSWORD"
create_service_db plan "$PLAN_DB_PASSWORD"
create_service_db sessions "$SESSIONS_DB_PASSWORD"
create_service_db device_gateway "$DEVICE_GATEWAY_DB_PASSWORD"
create_service_db subscriptions "$SUBSCRIPTIONS_DB_PASSWORD"
create_service_db authorization "$AUTHORIZATION_DB_PASSWORD"
create_service_db audit "$AUDIT_DB_PASSWORD"
create_service_db reports "$REPORTS_DB_PASSWORD"
