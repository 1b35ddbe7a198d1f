#!/usr/bin/env bash
# Install the js-ipfs daemon (npm ipfs@0.66.1, a real IPFS RPC server) used by the Kubo-client
# integration tests (tests/cas/test_kubo.py, tests/cas/test_gateway.py). Idempotent: does nothing
# when node_modules already matches package-lock.json. Needs Node.js >= 18 and npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$here/tests/jsipfs"

if ! command -v npm >/dev/null 2>&1; then
    echo "install-jsipfs: npm not found; the js-ipfs integration tests will be skipped" >&2
    exit 0
fi

stamp="$dir/node_modules/.cats-lock-sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [[ -x "$dir/node_modules/.bin/jsipfs" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "install-jsipfs: up to date"
    exit 0
fi

# npm ci installs exactly the lock file, with package.json's overrides: five pins that make
# js-ipfs 0.18 run on Node 20, and `headless` taken from the registry instead of the GitHub
# tarball an optional dependency (electron-eval) names, which cannot be fetched here.
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
echo "install-jsipfs: installed ipfs $(node -p "require('$dir/node_modules/ipfs/package.json').version")"
