#!/usr/bin/env bash
# Make sure the system has what qgnn needs: a Python 3.11 with venv, the project .venv,
# and any Debian tools named on the command line (installed with apt-get when absent).
# Usage: ensure_system.sh PYTHON VENV [TOOL[:DEBIAN_PACKAGE] ...]
set -euo pipefail
PY="${1:-python3.11}"; VENV="${2:-.venv}"; shift 2 || true

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: '$*' is missing and apt-get is not available; install it with your package manager" >&2
    exit 1
  fi
  if [ "$APT_UPDATED" = "0" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v "$PY" >/dev/null 2>&1; then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,11) else 1)'; then
    PY=python3
  else
    echo "error: Python 3.11 not found (looked for '$PY' and python3); install python3.11" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    echo "python venv module missing: installing python3-venv with apt-get" >&2
    apt_install python3-venv python3.11-venv || apt_install python3-venv
    "$PY" -m venv "$VENV"
  fi
  echo "created $VENV"
fi

for spec in "$@"; do
  tool="${spec%%:*}"; pkg="${spec#*:}"
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "installing Debian package '$pkg' (provides '$tool')" >&2
    apt_install "$pkg"
  fi
done
