#!/bin/sh
# Creates the gateway's login role with its password. The persister's first
# migration grants it SELECT and nothing more.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE chat_gateway LOGIN PASSWORD '${CHAT_GATEWAY_DB_PASSWORD}';
SQL
