#!/usr/bin/env bash
# How fast kinesalite (the local Kinesis of the tests and benchmarks) takes
# records by itself, on this machine: the ceiling bench/stream_bench.sh
# --kinesis is measured against.  Starts kinesalite on a free loopback port.
#   bench/kinesalite_ceiling.sh [seconds]
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
SECS=${1:-5}
PORT=$(free_port)
node "$ROOT/test/js/kinesalite_server.js" "$PORT" >/dev/null 2>&1 &
KPID=$!
trap 'kill $KPID 2>/dev/null' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for args in "500 1" "500 4" "50 1"; do
  # shellcheck disable=SC2086
  node "$ROOT/bench/kinesalite_ceiling.js" "$PORT" $args "$SECS"
done
