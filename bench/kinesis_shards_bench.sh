#!/usr/bin/env bash
# `bench/stream_bench.sh --shard-limits`: the Kinesis sink at AWS's per-shard
# limits.  kinesalite behind test/js/shard_limit_proxy.js enforcing AWS's
# 1,000 records/s and 1 MiB/s per shard (per record, in a 200 answer, as
# AWS does), one 8-shard stream, Redis streaming alongside.  Cases, side by
# side in one run (items of their own, read back and checked per item):
#   hot/agg       one item at --rate sales/s for --seconds, aggregation on (paced)
#   hot/paced     one item, aggregation off, 500 records per item per call
#                 (kinesis_records_per_item), paced (the sink's shard limits)
#   hot/unpaced   the same without pacing (as before 1.1)
#   wide/agg      --wide-items items over the 8 shards at --wide-rate sales/s
# For each: seconds from the load's end until Kinesis has every event,
# records stored and throttled (the proxy's count), the drain rate, the
# Redis commit -> XADD delay meanwhile, and the check of what Kinesis holds
# (every reservation, per-item order, repeats).
#   bench/kinesis_shards_bench.sh [--seconds N] [--rate TPS] [--wide-items N] [--wide-rate TPS]
#                                 [--short-seconds N]
# (--short-seconds: the load of the unaggregated cases, which drain at
# 1,000 records/s at best)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
reexec_unprivileged "$ROOT" bench/kinesis_shards_bench.sh "$@"

SECS=20 RATE=4100 WIDE_ITEMS=100 WIDE_RATE=15000 SHORT=5
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --wide-items) WIDE_ITEMS=$2; shift 2 ;;
    --wide-rate) WIDE_RATE=$2; shift 2 ;;
    --short-seconds) SHORT=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--rate TPS] [--wide-items N] [--wide-rate TPS] [--short-seconds N]"; exit 2 ;;
  esac
done

export PATH="$(pg_config --bindir):$PATH"
DIR=$(mktemp -d /tmp/ticket_kbench.XXXXXX)
PORT=$(free_port) RPORT=$(free_port) KPORT=$(free_port) LPORT=$(free_port)
HELPERS=()
cleanup() {
  [ ${#HELPERS[@]} -gt 0 ] && kill "${HELPERS[@]}" 2>/dev/null
  [ -f "$DIR/redis.pid" ] && kill -9 "$(cat "$DIR/redis.pid")" 2>/dev/null
  pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$DIR" --save '' --appendonly no \
  --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null
node "$ROOT/test/js/kinesalite_server.js" "$KPORT" >"$DIR/kinesalite.log" 2>&1 & HELPERS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && break; sleep 0.1; done
node "$ROOT/test/js/kinesis.js" "http://127.0.0.1:$KPORT/" create bench 8 >/dev/null 2>&1 || { echo "no kinesalite"; exit 1; }
node "$ROOT/test/js/shard_limit_proxy.js" "$LPORT" "$KPORT" 1000 1048576 >"$DIR/limit.log" 2>&1 & HELPERS+=($!)
sleep 1

cluster_start "$DIR" "$PORT" "max_connections = 100" "shared_buffers = 512MB" "max_wal_size = 20GB" \
  "ticket_ext.database = 'postgres'" "ticket_ext.redis_url = 'redis://127.0.0.1:$RPORT'" \
  "ticket_ext.kinesis_stream = 'bench'" "ticket_ext.kinesis_endpoint = 'http://127.0.0.1:$LPORT/'" \
  "ticket_ext.aws_access_key_id = 'bench'" "ticket_ext.aws_secret_access_key = 'bench'" \
  "log_min_messages = warning" || exit 1
sql() { psql -X -q -At -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
sql -c "CREATE EXTENSION ticket_ext" >/dev/null
# hot items 1-3, wide items 101..100+N
sql -c "SELECT ticket_ext.create_item(i, 1000000000, 'hot') FROM generate_series(1, 3) i" >/dev/null
sql -c "SELECT ticket_ext.create_item(100 + i, 1000000000, 'wide') FROM generate_series(1, $WIDE_ITEMS) i" >/dev/null

proxy_totals() {	# records throttled bytes, over all shards
  curl -s "http://127.0.0.1:$LPORT/stats" | node -e '
    let s = ""; process.stdin.on("data", (c) => s += c).on("end", () => {
      const t = { records: 0, throttled: 0, bytes: 0 };
      for (const v of Object.values(JSON.parse(s || "{}"))) { t.records += v.records; t.throttled += v.throttled; t.bytes += v.bytes; }
      console.log(t.records, t.throttled, t.bytes); });'
}
kinesis_caught_up() {	# seconds until the Kinesis sink confirms <lsn> (max 600)
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 60000); do
    [ "$(sql -c "SELECT slot_confirmed_lsn >= '$1' FROM ticket_ext.stream_status WHERE sink = 'kinesis'")" = t ] && break
    sleep 0.01
  done
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
settings() {	# settings <aggregate on|off> <records per shard per second> <records per item per call>
  sql -c "ALTER SYSTEM SET ticket_ext.kinesis_aggregate = $1" \
      -c "ALTER SYSTEM SET ticket_ext.kinesis_shard_records_per_second = $2" \
      -c "ALTER SYSTEM SET ticket_ext.kinesis_records_per_item = $3" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
}

run_case() {	# run_case <name> <aggregate> <pace> <per item> <first item> <last item> <rate> <seconds>
  local name=$1 agg=$2 pace=$3 per_item=$4 lo=$5 hi=$6 rate=$7 secs=$8
  settings "$agg" "$pace" "$per_item"
  printf '\\set i random(%d, %d)\nSELECT ticket_reserve(:i, 1, '"'"'%s'"'"');\n' "$lo" "$hi" "$name" >"$DIR/${name//\//_}.sql"
  sql -c "SELECT ticket_ext.stream_reset_stats()" >/dev/null
  read -r rec0 thr0 _ <<<"$(proxy_totals)"
  local out tps end after rec1 thr1 p50 p99 check want
  out=$(pgbench -n -M prepared -h "$DIR" -p "$PORT" -U postgres -c 8 -j 2 -T "$secs" -R "$rate" \
          -f "$DIR/${name//\//_}.sql" postgres 2>&1)
  tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out")
  end=$(sql -c "SELECT pg_current_wal_lsn()")
  after=$(kinesis_caught_up "$end")
  read -r rec1 thr1 _ <<<"$(proxy_totals)"
  read -r p50 p99 <<<"$(sql -F ' ' -c "SELECT delay_p50_ms, delay_p99_ms FROM ticket_ext.stream_status WHERE sink = 'redis'")"
  want=$(sql -c "SELECT count(*) FROM ticket_ext.holds WHERE item_id BETWEEN $lo AND $hi")
  check=$(node "$ROOT/test/js/kinesis.js" "http://127.0.0.1:$KPORT/" read bench 2>/dev/null | node "$ROOT/bench/kinesis_check.js" "$lo" "$hi")
  awk -v n="$name" -v tps="$tps" -v s="$secs" -v a="$after" -v r="$((rec1 - rec0))" -v t="$((thr1 - thr0))" \
      -v p5="$p50" -v p9="$p99" -v w="$want" -v c="$check" 'BEGIN {
    split(c, f, " ");
    printf "%-12s %6.0f sales/s x %ds: all in Kinesis %5.1f s after the load; %6d records stored, %6d throttled (%4.1f%%), %6.0f records/s; redis delay p50 %s ms p99 %s ms\n",
      n, tps, s, a, r, t, (r + t) ? 100 * t / (r + t) : 0, r / (s + a), p5, p9
    printf "%-12s check: %d of %d reservations in Kinesis, %d out of order, %d repeats (%s)\n", "", f[4], w, f[8], f[6], c }'
}

echo "Kinesis at AWS's per-shard limits (proxy: 1,000 records/s, 1 MiB/s per shard), 8 shards, $(nproc) cores"
run_case hot/agg on 950 1 1 1 "$RATE" "$SECS"
run_case hot/paced off 950 500 2 2 "$RATE" "$SHORT"
run_case hot/unpaced off 0 500 3 3 "$RATE" "$SHORT"
run_case wide/agg on 950 1 101 $((100 + WIDE_ITEMS)) "$WIDE_RATE" "$SECS"
