#!/usr/bin/env bash
# `make bench-stream`: the streaming worker under the core benchmark's
# ticket_reserve load (64 clients), against a real redis-server.
#
#  1. reserve tps with the worker streaming vs. with streaming off,
#     interleaved rounds, medians: the worker's cost;
#  2. while streaming: events/s, the commit -> XADD delay (p50/p99, from
#     the worker's histogram), the largest lag seen, and how long after the
#     load stops the stream holds every event;
#  3. backlog drain: N events committed while Redis is down, then the time
#     to deliver them after it returns, and the worker's memory meanwhile.
#
#   bench/stream_bench.sh [--seconds N] [--rounds N] [--backlog N] [--kinesis] [--items N]
#                       [--kinesis-per-item K] [--rate TPS] [--independence]
#   bench/stream_bench.sh --shard-limits [options of bench/kinesis_shards_bench.sh]
#
# --kinesis adds the Kinesis sink (kinesalite from test/js) next to Redis;
# --items spreads the load over N items (Kinesis takes one record per item
# per call by default, so a single hot item is one record per round trip;
# --kinesis-per-item K sets ticket_ext.kinesis_records_per_item); --rate
# throttles the load (pgbench -R) to check keeping up at a given sales rate.
# --independence measures only the Redis sink's commit -> XADD delay
# (p50/p99) while Kinesis is healthy, throttled (the fault proxy) and
# black-holed (accepts TCP, never answers): interleaved rounds, medians.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Kinesis at AWS's per-shard limits: a benchmark of its own
[ "${1:-}" = --shard-limits ] && { shift; exec "$ROOT/bench/kinesis_shards_bench.sh" "$@"; }
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
export TICKET_KEEP_LOGS=1
reexec_unprivileged "$ROOT" bench/stream_bench.sh "$@"

SECS=10 ROUNDS=3 BACKLOG=1000000 CLIENTS=64 KINESIS=0 ITEMS=1 PER_ITEM=1 RATE=() INDEPENDENCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --backlog) BACKLOG=$2; shift 2 ;;
    --kinesis) KINESIS=1; shift ;;
    --items) ITEMS=$2; shift 2 ;;
    --kinesis-per-item) PER_ITEM=$2; shift 2 ;;
    --rate) RATE=(-R "$2"); shift 2 ;;
    --independence) INDEPENDENCE=1; KINESIS=1; shift ;;
    *) echo "usage: $0 [--seconds N] [--rounds N] [--backlog N] [--kinesis] [--items N] [--kinesis-per-item K] [--rate TPS] [--independence]"; exit 2 ;;
  esac
done

export PATH="$(pg_config --bindir):$PATH"
DIR=$(mktemp -d /tmp/ticket_sbench.XXXXXX)
PORT=$(free_port)
RPORT=$(free_port)
start_redis() {
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$DIR" --save '' --appendonly no \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$RPORT" PING >/dev/null 2>&1 && return; sleep 0.1; done
}
stop_redis() { [ -f "$DIR/redis.pid" ] && kill -9 "$(cat "$DIR/redis.pid")" 2>/dev/null; rm -f "$DIR/redis.pid"; sleep 0.2; }
KPORT=$(free_port)
start_kinesis() {
  node "$ROOT/test/js/kinesalite_server.js" "$KPORT" >"$DIR/kinesalite.log" 2>&1 &
  echo $! >"$DIR/kinesalite.pid"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && break; sleep 0.1; done
  node "$ROOT/test/js/kinesis.js" "http://127.0.0.1:$KPORT/" create bench 4 2>/dev/null
}
stop_kinesis() { [ -f "$DIR/kinesalite.pid" ] && kill "$(cat "$DIR/kinesalite.pid")" 2>/dev/null; rm -f "$DIR/kinesalite.pid"; }
HELPERS=()
cleanup() { stop_redis; stop_kinesis; [ ${#HELPERS[@]} -gt 0 ] && kill "${HELPERS[@]}" 2>/dev/null; pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis
KCONF=()
if [ "$KINESIS" = 1 ]; then
  start_kinesis
  KCONF=("ticket_ext.kinesis_stream = 'bench'" "ticket_ext.kinesis_endpoint = 'http://127.0.0.1:$KPORT/'"
         "ticket_ext.aws_access_key_id = 'bench'" "ticket_ext.aws_secret_access_key = 'bench'"
         "ticket_ext.kinesis_records_per_item = $PER_ITEM")
fi
cluster_start "$DIR" "$PORT" "fsync = on" "max_connections = 200" "shared_buffers = 1GB" \
  "max_wal_size = 20GB" "checkpoint_timeout = 30min" "ticket_ext.database = 'postgres'" \
  "ticket_ext.redis_url = 'redis://127.0.0.1:$RPORT'" "log_min_messages = warning" "${KCONF[@]}" || exit 1
sql() { psql -X -q -At -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
sql -c "CREATE EXTENSION ticket_ext" >/dev/null
sql -c "SELECT ticket_ext.create_item(i, 1000000000000, 'stream bench') FROM generate_series(1, $ITEMS) i" >/dev/null
sql -c "SELECT ticket_ext.create_item(1000000, 1000000000000, 'backlog')" >/dev/null

set_redis() {	# set_redis <url or empty>
  sql -c "ALTER SYSTEM SET ticket_ext.redis_url = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
}
wait_delivered() {	# wait_delivered <lsn>: seconds until the slot confirms it
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 6000); do
    [ "$(sql -c "SELECT bool_and(slot_confirmed_lsn >= '$1') FROM ticket_ext.stream_status WHERE state <> 'disabled'")" = t ] && break
    sleep 0.01
  done
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

SCRIPT="$DIR/reserve.sql"
printf '\\set i random(1, %d)\nSELECT ticket_reserve(:i, 1, '"'"'bench'"'"');\n' "$ITEMS" >"$SCRIPT"
if [ "$INDEPENDENCE" = 1 ]; then
  # Kinesis behind the fault proxy (throttling, partial failures, 5xx) and
  # a black hole; Redis's delay should not care which
  PPORT=$(free_port) HPORT=$(free_port)
  node "$ROOT/test/js/fault_proxy.js" "$PPORT" "$KPORT" >"$DIR/proxy.log" 2>&1 & HELPERS+=($!)
  node -e "require('net').createServer(() => {}).listen($HPORT, '127.0.0.1')" & HELPERS+=($!)
  sleep 1
  declare -A P50 P99
  rate=(-R 2000); [ ${#RATE[@]} -gt 0 ] && rate=("${RATE[@]}")
  echo "Redis commit -> XADD delay while Kinesis is healthy, throttled or black-holed: ${SECS}s, $ROUNDS rounds, ${rate[1]} tps"
  for r in $(seq "$ROUNDS"); do
    for mode in healthy throttled blackholed; do
      case $mode in
        healthy) ep="http://127.0.0.1:$KPORT/" ;; throttled) ep="http://127.0.0.1:$PPORT/" ;; blackholed) ep="http://127.0.0.1:$HPORT/" ;;
      esac
      sql -c "ALTER SYSTEM SET ticket_ext.kinesis_endpoint = '$ep'" -c "SELECT pg_reload_conf()" >/dev/null
      sleep 1
      sql -c "SELECT ticket_ext.stream_reset_stats()" >/dev/null
      pgbench -n -M prepared -h "$DIR" -p "$PORT" -U postgres -c 8 -j 2 -T "$SECS" "${rate[@]}" \
        -f "$SCRIPT" postgres >/dev/null 2>&1
      wait_delivered_redis=$(sql -c "SELECT pg_current_wal_lsn()")
      for _ in $(seq 1000); do
        [ "$(sql -c "SELECT slot_confirmed_lsn >= '$wait_delivered_redis' FROM ticket_ext.stream_status WHERE sink = 'redis'")" = t ] && break
        sleep 0.01
      done
      read -r sent p50 p99 kstate <<<"$(sql -F ' ' -c "SELECT r.events_sent, r.delay_p50_ms, r.delay_p99_ms, k.state FROM ticket_ext.stream_status r, ticket_ext.stream_status k WHERE r.sink = 'redis' AND k.sink = 'kinesis'")"
      printf '  round %d kinesis %-10s (state %-10s): redis %7d events, delay p50 %s ms p99 %s ms\n' "$r" "$mode" "$kstate" "$sent" "$p50" "$p99"
      P50[$mode]+="$p50 " P99[$mode]+="$p99 "
    done
  done
  med() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
  for mode in healthy throttled blackholed; do
    printf 'median redis delay with kinesis %-10s: p50 %s ms, p99 %s ms (target p99 < 50 ms)\n' "$mode" "$(med "${P50[$mode]}")" "$(med "${P99[$mode]}")"
  done
  exit 0
fi

echo "ticket_ext streaming benchmark: $(nproc) cores, $CLIENTS clients, ${SECS}s per run, $ROUNDS rounds"
ON=() OFF=()
for r in $(seq "$ROUNDS"); do
  for mode in on off; do
    if [ $mode = on ]; then set_redis "redis://127.0.0.1:$RPORT"; else set_redis ""; fi
    [ "$KINESIS" = 1 ] && { sql -c "ALTER SYSTEM SET ticket_ext.kinesis_stream = '$([ $mode = on ] && echo bench)'" -c "SELECT pg_reload_conf()" >/dev/null; sleep 1; }
    sql -c "SELECT ticket_ext.stream_reset_stats()" >/dev/null
    # sample the lag while the load runs
    ( while :; do sql -c "SELECT lag_seconds FROM ticket_ext.stream_status WHERE sink = 'redis'"; sleep 0.2; done ) >"$DIR/lag.$mode.$r" 2>/dev/null &
    sampler=$!
    tps=$(pgbench -n -M prepared -h "$DIR" -p "$PORT" -U postgres -c "$CLIENTS" -j 2 -T "$SECS" "${RATE[@]}" \
            -f "$SCRIPT" postgres 2>&1 | sed -nE 's/^tps = ([0-9.]+).*/\1/p')
    kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
    if [ $mode = on ]; then
      end=$(sql -c "SELECT pg_current_wal_lsn()")
      after=$(wait_delivered "$end")
      read -r sent p50 p99 <<<"$(sql -F ' ' -c "SELECT events_sent, delay_p50_ms, delay_p99_ms FROM ticket_ext.stream_status WHERE sink = 'redis'")"
      maxlag=$(sort -g "$DIR/lag.on.$r" | tail -1)
      printf '  round %d streaming on : %8.0f tps  %8.0f events/s  delay p50 %s ms p99 %s ms  max lag %ss  all delivered %ss after the load\n' \
        "$r" "$tps" "$(awk -v s="$sent" -v t="$SECS" 'BEGIN{print s/t}')" "$p50" "$p99" "${maxlag:-0}" "$after"
      if [ "$KINESIS" = 1 ]; then
        read -r ksent kreq kp50 kp99 <<<"$(sql -F ' ' -c "SELECT events_sent, requests, delay_p50_ms, delay_p99_ms FROM ticket_ext.stream_status WHERE sink = 'kinesis'")"
        awk -v s="$ksent" -v q="$kreq" -v t="$SECS" -v a="$after" -v p5="$kp50" -v p9="$kp99" 'BEGIN {
          printf "           kinesis      : %8.0f records/s over the run + catch-up (%.1fs), %.1f records per PutRecords, delay p50 %s ms p99 %s ms\n", s / (t + a), a, (q ? s / q : 0), p5, p9 }'
      fi
      ON+=("$tps")
    else
      printf '  round %d streaming off: %8.0f tps\n' "$r" "$tps"
      OFF+=("$tps")
    fi
  done
  set_redis "redis://127.0.0.1:$RPORT"
  [ "$KINESIS" = 1 ] && sql -c "ALTER SYSTEM SET ticket_ext.kinesis_stream = 'bench'" -c "SELECT pg_reload_conf()" >/dev/null
  wait_delivered "$(sql -c "SELECT pg_current_wal_lsn()")" >/dev/null   # catch up before the next round
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mon=$(median "${ON[@]}"); moff=$(median "${OFF[@]}")
awk -v on="$mon" -v off="$moff" 'BEGIN {
  printf "median reserve tps: streaming on %.0f, off %.0f -> the worker costs %.1f%% (target <= 10%%)\n", on, off, (1 - on / off) * 100 }'

[ "$KINESIS" = 1 ] && { echo "(backlog drain is measured for Redis alone)"; sql -c "ALTER SYSTEM SET ticket_ext.kinesis_stream = ''" -c "SELECT pg_reload_conf()" >/dev/null; sleep 1; }
echo "backlog: $BACKLOG events committed while Redis is down"
stop_redis
batches=$(( (BACKLOG + 9999) / 10000 ))
for _ in $(seq "$batches"); do
  sql -c "SELECT count(ticket_reserve(1000000, 1, 'backlog')) FROM generate_series(1, 10000)" >/dev/null
done
end=$(sql -c "SELECT pg_current_wal_lsn()")
sql -c "SELECT ticket_ext.stream_reset_stats()" >/dev/null
wpid=$(sql -c "SELECT worker_pid FROM ticket_ext.stream_status LIMIT 1")
# the worker's RSS (kB) against the events delivered so far
( while :; do
    echo "$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status") $(sql -c "SELECT events_sent FROM ticket_ext.stream_status WHERE sink = 'redis'")"
    sleep 0.25
  done ) >"$DIR/rss" 2>/dev/null &
sampler=$!
start_redis
secs=$(wait_delivered "$end")
kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
sent=$(sql -c "SELECT events_sent FROM ticket_ext.stream_status WHERE sink = 'redis'")
xlen=$(redis-cli -p "$RPORT" XLEN ticket_ext:events)
read -r rmin rmax <<<"$(awk 'NF == 2' "$DIR/rss" | sort -n | awk 'NR==1{min=$1} {max=$1} END {print min, max}')"
awk -v n="$sent" -v s="$secs" -v lo="$rmin" -v hi="$rmax" -v x="$xlen" 'BEGIN {
  printf "drained %d events in %.1f s = %.0f events/s (target >= 50,000); stream length now %d\n", n, s, n / s, x
  printf "worker RSS during the drain: %.1f MB .. %.1f MB\n", lo / 1024, hi / 1024 }'
# flat = no growth with the events delivered once the bounded queue is full
awk -v total="$sent" 'NF == 2 && $2 > 0 {
    d = int($2 * 10 / total); if (d > 9) d = 9; if ($1 > m[d]) m[d] = $1; seen[d] = 1 }
  END {
    printf "worker RSS (max MB) by tenth of the events delivered:"
    for (d = 0; d < 10; d++) if (seen[d]) printf " %.1f", m[d] / 1024; else printf " -"
    printf "\n"
    for (d = 0; d < 5; d++) if (m[d] > a) a = m[d]
    for (d = 5; d < 10; d++) if (m[d] > b) b = m[d]
    printf "second half vs first half: %+.1f MB (flat = no leak per event)\n", (b - a) / 1024 }' "$DIR/rss"
