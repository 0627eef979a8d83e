#!/usr/bin/env bash
# Idempotent set-up: system packages (PostgreSQL 15 + PostGIS 3), a virtual environment,
# gridops with its dependencies. Safe to run again; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=15
PY=${PYTHON:-python3.11}
need=()
[ -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ] || need+=("postgresql-$PG_MAJOR")
[ -f "/usr/share/postgresql/$PG_MAJOR/extension/postgis.control" ] || need+=("postgresql-$PG_MAJOR-postgis-3")
command -v runuser >/dev/null || need+=(util-linux)
command -v "$PY" >/dev/null || need+=(python3.11 python3.11-venv)
# installed = dpkg's "install ok installed" (`dpkg -s` also succeeds for a package removed
# with its configuration files left behind)
for extra in ${GRIDOPS_EXTRA_APT:-}; do
  [ "$(dpkg-query -W -f='${Status}' "$extra" 2>/dev/null)" = "install ok installed" ] \
    || need+=("$extra")
done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=".venv/.stamp-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing gridops and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.stamp-*
  touch "$stamp"
fi

# Leaflet for the map pages, served by gridops itself (works without internet afterwards)
.venv/bin/python -m map_ui.vendor

# the resolver's compiled kernels, cached on disk now rather than at the first index build
.venv/bin/python -m spatial.warm
