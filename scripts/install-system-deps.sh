#!/usr/bin/env bash
# Installs the system packages the demo and the tests use, when missing (Debian/Ubuntu):
#   chromium        headless browser for the web page tests
#   docker-compose  compose file validation only (no Docker engine is needed)
#   postgresql-15   server binaries for the throwaway test clusters
#   npm             installs the devnet's Node 22 and PDS packages (into ~/.cache/atdata)
#   build-essential compiles better-sqlite3 against Node 22's headers
#   python3-venv    `python3 -m venv` for .venv
# Needs root (or sudo) only when something is missing; a no-op otherwise.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  need+=(postgresql-15)
fi
command -v npm >/dev/null 2>&1 || need+=(npm)
{ command -v g++ && command -v make; } >/dev/null 2>&1 || need+=(build-essential)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
