#!/usr/bin/env bash
# Installs the Debian packages the runtime and the tests need (.ci/apt-runtime.txt for `make demo`,
# .ci/apt-test.txt as well for `make test`). Idempotent: packages already installed are skipped, and the
# package lists are refreshed only when apt does not know a package yet.
#   usage: .ci/install-system.sh runtime|test
set -euo pipefail
cd "$(dirname "$0")/.."
lists=(.ci/apt-runtime.txt)
[ "${1:-runtime}" = test ] && lists+=(.ci/apt-test.txt)
want=()
for f in "${lists[@]}"; do
  [ -f "$f" ] || continue
  while read -r pkg _; do
    case "$pkg" in ""|\#*) continue ;; esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
  done < "$f"
done
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-system: missing Debian packages: ${want[*]} (install them as root: apt-get install ${want[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "${want[@]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
