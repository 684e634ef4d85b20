#!/usr/bin/env bash
# mypy over the qgnn namespace. mypy does not follow setuptools' package-dir mapping, so lay the
# namespace out as symlinks in .cache/typecheck/qgnn (qgnn/ itself, then model/ hw/ sim/ sweeps/)
# and check it from there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"; PY="${1:-.venv/bin/python}"
T=.cache/typecheck/qgnn
rm -rf .cache/typecheck && mkdir -p "$T"
for f in "$ROOT"/qgnn/*; do ln -s "$f" "$T/$(basename "$f")"; done
for part in model hw sim sweeps; do ln -s "$ROOT/$part" "$T/$part"; done
cd .cache/typecheck && exec "$ROOT/$PY" -m mypy --config-file "$ROOT/pyproject.toml" \
  --cache-dir "$ROOT/.mypy_cache" -p qgnn
