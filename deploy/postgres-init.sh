#!/bin/sh
# Runs once, when the postgres container initialises an empty data folder:
# creates the login role the app connects as. It owns nothing; the first
# migration grants it membership in the admin and bot roles (never the owner).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE tgfleet_app LOGIN PASSWORD '${TGFLEET_APP_DB_PASSWORD}';
SQL
