#!/usr/bin/env bash
# Create (once) the Python 3.12 venv holding the atdata 0.7 peer we test and benchmark against.
# Its import name is also `atdata`, so it never shares an interpreter with ours.
# Prints the venv's python path on stdout (progress goes to stderr).
set -euo pipefail

PEER_VERSION="${ATDATA_PEER_VERSION:-0.7.0b1}"
VENV="${ATDATA_PEER_VENV:-$HOME/.cache/atdata/peer-venv}"
PY="$VENV/bin/python"

installed() {
    [ -x "$PY" ] && "$PY" - "$PEER_VERSION" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("atdata") == sys.argv[1] else 1)
PYEOF
}

if ! installed; then
    base=""
    for cand in "$HOME/.pyenv/versions/3.12.1/bin/python3.12" "$(command -v python3.12 || true)"; do
        if [ -n "$cand" ] && [ -x "$cand" ]; then base="$cand"; break; fi
    done
    if [ -z "$base" ]; then
        echo "ensure-peer-venv: no python3.12 found (pyenv 3.12.1 or python3.12 on PATH)" >&2
        exit 1
    fi
    echo "ensure-peer-venv: creating $VENV with $base" >&2
    mkdir -p "$(dirname "$VENV")"
    [ -x "$PY" ] || "$base" -m venv "$VENV"
    # The bundled pip resolves this dependency tree very slowly: upgrade it first.
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "atdata==$PEER_VERSION" >&2
    installed || { echo "ensure-peer-venv: atdata==$PEER_VERSION did not install" >&2; exit 1; }
fi
echo "$PY"
