#!/usr/bin/env bash
# CATs demo: run a chain of two CATs on the bundled data, show lineage, verify, memoize.
#
#   examples/demo.sh            (uses a fresh temporary CATS_HOME, removed at the end, unless
#                                CATS_HOME is set: then that home is used and kept)
#
# Everything runs on an embedded local Ray; nothing else needs to be running.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CATS="${CATS:-cats}"
if ! command -v "$CATS" >/dev/null 2>&1; then
  CATS="$HERE/../.venv/bin/cats"
fi
if [ -z "${CATS_HOME:-}" ]; then
  CATS_HOME="$(mktemp -d -t cats-demo-XXXXXX)"
  # The temporary home goes whichever way the demo ends (success, a failed step, Ctrl-C).
  trap '"$CATS" ray stop >/dev/null 2>&1 || true; rm -rf -- "$CATS_HOME"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi
export CATS_HOME
echo "CATS_HOME=$CATS_HOME"

step() { printf '\n== %s\n' "$*"; }
field() { sed -n "s/^$1 *//p"; }

step "1. batch CAT: feature engineering on examples/data/sensors.csv"
out=$("$CATS" run --function "$HERE/features:transform:engineer" --input "raw=$HERE/data/sensors.csv" --param digits=3)
echo "$out"
features_bom=$(echo "$out" | field bom)

step "2. map CAT: word counts, one Ray task per file of examples/data/texts"
out=$("$CATS" run --function "$HERE/wordcount:count:count" --mode map --input "texts=$HERE/data/texts")
echo "$out"
counts=$(echo "$out" | field output)

step "3. chained CAT: corpus totals from the word counts (its parent BOM is found automatically)"
out=$("$CATS" run --function "$HERE/totals:combine:combine" --input "counts=$counts" --param top=5)
echo "$out"
totals_bom=$(echo "$out" | field bom)
totals=$(echo "$out" | field output)

step "4. lineage of the final output"
"$CATS" lineage "$totals"

step "5. verify: re-execute the chain's last step and compare output CIDs"
"$CATS" verify "$totals_bom"
"$CATS" verify --structural "$features_bom"

step "6. memoization: the same Order returns its BOM at once"
"$CATS" run --function "$HERE/wordcount:count:count" --mode map --input "texts=$HERE/data/texts"

step "7. runs in the catalog"
"$CATS" ls

if [ "${CATS_DEMO_ENV:-0}" = "1" ]; then
  # Opt-in (the first build of numpy+pandas takes a while): a CAT with pinned dependencies. Its
  # Environment is resolved once into the CAS and built from there; the run's Invoice names it.
  step "8. a CAT with an Environment: pandas and numpy pinned in examples/frames/requirements.lock"
  out=$("$CATS" run --function "$HERE/frames:summary:summarize" --input "raw=$HERE/data/sensors.csv" \
        --requirements "$HERE/frames/requirements.lock")
  echo "$out"
  frames=$(echo "$out" | field output)
  "$CATS" get "$frames" -o "$CATS_HOME/frames-out" >/dev/null
  cat "$CATS_HOME/frames-out/versions.json"
fi
