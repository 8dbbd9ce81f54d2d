#!/usr/bin/env bash
# Install the Debian 12 packages (and npm packages) ticket_ext needs, only
# those missing.  Safe to run repeatedly; needs root only when something is
# actually missing.
set -euo pipefail

PACKAGES=(
  postgresql-15 postgresql-server-dev-15 postgresql-client-15
  postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
  libpq-dev libhiredis-dev libcurl4-openssl-dev
  redis-server pgbouncer libipc-run-perl
  build-essential perl clang-14 libclang-rt-14-dev valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node.js may come from another source (NodeSource ships npm inside
# nodejs, and then Debian's npm package conflicts): check the commands.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
  }
fi

# npm packages of the tests and the demo (kinesalite, the AWS SDK), pinned
# by test/js/package-lock.json
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/test/js/node_modules/kinesalite" ]; then
  echo "install-deps: npm ci in test/js"
  (cd "$here/test/js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# Debian starts a default cluster on port 5432 when postgresql-15 is
# installed; ticket_ext never uses it (every test and demo makes its own).
exit 0
