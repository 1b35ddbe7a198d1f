#!/usr/bin/env bash
# Installs the independent oracles used by tests/cas/test_oracles.py, test_carv2.py and
# tests/service/test_gateway_verifying_client.py. Idempotent.
#   - Debian ipfs-cid (/usr/bin/ipfs_cid): Kubo's default CIDv0 of one file.
#   - npm ipfs-unixfs-importer, @ipld/car (CARv1/CARv2), and ipfs-unixfs-exporter, multiformats,
#     @ipld/dag-pb, ipfs-unixfs (the verifying gateway client), pinned in tests/oracle/package-lock.json.
# Without them those tests skip with a reason; the fixed vectors still run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ipfs_cid >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the package lists when apt does not know the package yet.
  if ! apt-cache show ipfs-cid >/dev/null 2>&1; then
    apt-get update -qq
  fi
  apt-get install -y -qq ipfs-cid >/dev/null
fi

if ! command -v node >/dev/null 2>&1; then
  echo "install-oracles: node is not installed; the npm oracle tests will skip" >&2
  exit 0
fi
lock=tests/oracle/package-lock.json
stamp=tests/oracle/node_modules/.cats-lock.sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  (cd tests/oracle && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
