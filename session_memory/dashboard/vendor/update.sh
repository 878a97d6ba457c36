#!/usr/bin/env bash
# Refresh the vendored chart library from the npm registry: Vega and Vega-Lite's UMD builds,
# their licences, and the licences of everything those builds bundle (d3 modules and others).
#   bash session_memory/dashboard/vendor/update.sh [VEGA_VERSION] [VEGA_LITE_VERSION]
# Then bump the versions in VERSIONS and run the dashboard tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vega="${1:-6.4.0}"
vega_lite="${2:-6.4.3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --omit=dev --no-audit --no-fund --silent "vega@$vega" "vega-lite@$vega_lite"
cp node_modules/vega/build/vega.min.js "$here/vega.min.js"
cp node_modules/vega-lite/build/vega-lite.min.js "$here/vega-lite.min.js"
cp node_modules/vega/LICENSE "$here/LICENSE-vega"
cp node_modules/vega-lite/LICENSE "$here/LICENSE-vega-lite"
printf 'vega %s\nvega-lite %s\n' "$vega" "$vega_lite" > "$here/VERSIONS"
# Every package the builds may bundle, each with its licence text.
{
  echo "Third-party code bundled in vega.min.js and vega-lite.min.js (npm packages, as installed"
  echo "beside vega@$vega and vega-lite@$vega_lite), each with its licence."
  for dir in node_modules/*/ node_modules/@*/*/; do
    [ -f "$dir/package.json" ] || continue
    case "$dir" in node_modules/@types/*) continue ;; esac
    node -e 'const p = require(process.argv[1]);
             console.log(`\n==== ${p.name}@${p.version} (${p.license || ""}) ====`)' "$PWD/$dir/package.json"
    licence="$(find "$dir" -maxdepth 1 -iname 'licen[cs]e*' -o -maxdepth 1 -iname 'copying*' | head -1)"
    if [ -n "$licence" ]; then cat "$licence"; else echo "(no licence file; see its package.json)"; fi
  done
} > "$here/THIRD_PARTY_LICENSES.txt"
