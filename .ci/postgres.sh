#!/usr/bin/env bash
# Installs (Debian's postgresql) and starts a PostgreSQL server on loopback for the multi-worker tests,
# then prints the storage URL (password-less: the password travels in PGPASSWORD, as libpq reads it).
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
pg_isready -q -h 127.0.0.1
su postgres -c "psql -q -c \"DROP DATABASE IF EXISTS infersearch_test\"" >/dev/null
su postgres -c "psql -q -c \"DROP ROLE IF EXISTS infersearch\"" >/dev/null
su postgres -c "psql -q -c \"CREATE ROLE infersearch LOGIN PASSWORD '${PGPASSWORD}'\"" >/dev/null
su postgres -c "psql -q -c \"CREATE DATABASE infersearch_test OWNER infersearch\"" >/dev/null
echo "postgresql://infersearch@127.0.0.1:5432/infersearch_test"
