#!/usr/bin/env bash
# Copy the front-end files the web UIs load from node_modules (installed by `npm ci` from
# package-lock.json) into api/static/vendor/ and dashboard/static/vendor/. Nothing is fetched at
# run time: the api and the dashboard serve these copies themselves. Both vendor dirs are
# git-ignored; `make assets` runs this after `npm ci`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NM="$ROOT/node_modules"

if [[ ! -d "$NM/d3" || ! -d "$NM/chart.js" ]]; then
  echo "[assets] node_modules is missing d3 or chart.js: run 'npm ci' in $ROOT first" >&2
  exit 1
fi

copy() { # copy <dest dir> <source file> [<source file> ...]
  local dest="$1"; shift
  mkdir -p "$dest"
  for src in "$@"; do
    [[ -f "$src" ]] || { echo "[assets] missing $src" >&2; exit 1; }
    cp -f "$src" "$dest/"
  done
}

D3=("$NM/d3/dist/d3.min.js")
CHART=("$NM/chart.js/dist/chart.umd.min.js")

copy "$ROOT/api/static/vendor" "${D3[@]}" "${CHART[@]}"
copy "$ROOT/dashboard/static/vendor" "${CHART[@]}"
cp -f "$NM/d3/LICENSE" "$ROOT/api/static/vendor/d3.LICENSE"
cp -f "$NM/chart.js/LICENSE.md" "$ROOT/api/static/vendor/chart.js.LICENSE.md"
cp -f "$NM/chart.js/LICENSE.md" "$ROOT/dashboard/static/vendor/chart.js.LICENSE.md"
echo "[assets] vendored d3 $(node -p "require('$NM/d3/package.json').version" 2>/dev/null || echo '?') and chart.js $(node -p "require('$NM/chart.js/package.json').version" 2>/dev/null || echo '?')"
