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
#   bench/stream_bench.sh [--seconds N] [--rounds N] [--backlog N]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
export TICKET_KEEP_LOGS=1
reexec_unprivileged "$ROOT" bench/stream_bench.sh "$@"

SECS=10 ROUNDS=3 BACKLOG=1000000 CLIENTS=64
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --backlog) BACKLOG=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--rounds N] [--backlog N]"; exit 2 ;;
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
cleanup() { stop_redis; pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis
cluster_start "$DIR" "$PORT" "fsync = on" "max_connections = 200" "shared_buffers = 1GB" \
  "max_wal_size = 20GB" "checkpoint_timeout = 30min" "ticket_ext.database = 'postgres'" \
  "ticket_ext.redis_url = 'redis://127.0.0.1:$RPORT'" "log_min_messages = warning" || exit 1
sql() { psql -X -q -At -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
sql -c "CREATE EXTENSION ticket_ext" -c "SELECT ticket_ext.create_item(1, 1000000000000, 'stream bench')" \
    -c "SELECT ticket_ext.create_item(2, 1000000000000, 'backlog')" >/dev/null

set_redis() {	# set_redis <url or empty>
  sql -c "ALTER SYSTEM SET ticket_ext.redis_url = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
}
wait_delivered() {	# wait_delivered <lsn>: seconds until the slot confirms it
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 6000); do
    [ "$(sql -c "SELECT slot_confirmed_lsn >= '$1' FROM ticket_ext.stream_status WHERE sink = 'redis'")" = t ] && break
    sleep 0.01
  done
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

echo "ticket_ext streaming benchmark: $(nproc) cores, $CLIENTS clients, ${SECS}s per run, $ROUNDS rounds"
SCRIPT="$DIR/reserve.sql"
echo "SELECT ticket_reserve(1, 1, 'bench');" >"$SCRIPT"
ON=() OFF=()
for r in $(seq "$ROUNDS"); do
  for mode in on off; do
    if [ $mode = on ]; then set_redis "redis://127.0.0.1:$RPORT"; else set_redis ""; fi
    sql -c "SELECT ticket_ext.stream_reset_stats()" >/dev/null
    # sample the lag while the load runs
    ( while :; do sql -c "SELECT lag_seconds FROM ticket_ext.stream_status WHERE sink = 'redis'"; sleep 0.2; done ) >"$DIR/lag.$mode.$r" 2>/dev/null &
    sampler=$!
    tps=$(pgbench -n -M prepared -h "$DIR" -p "$PORT" -U postgres -c "$CLIENTS" -j 2 -T "$SECS" \
            -f "$SCRIPT" postgres 2>&1 | sed -nE 's/^tps = ([0-9.]+).*/\1/p')
    kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
    if [ $mode = on ]; then
      end=$(sql -c "SELECT pg_current_wal_lsn()")
      after=$(wait_delivered "$end")
      read -r sent p50 p99 <<<"$(sql -F ' ' -c "SELECT events_sent, delay_p50_ms, delay_p99_ms FROM ticket_ext.stream_status WHERE sink = 'redis'")"
      maxlag=$(sort -g "$DIR/lag.on.$r" | tail -1)
      printf '  round %d streaming on : %8.0f tps  %8.0f events/s  delay p50 %s ms p99 %s ms  max lag %ss  all delivered %ss after the load\n' \
        "$r" "$tps" "$(awk -v s="$sent" -v t="$SECS" 'BEGIN{print s/t}')" "$p50" "$p99" "${maxlag:-0}" "$after"
      ON+=("$tps")
    else
      printf '  round %d streaming off: %8.0f tps\n' "$r" "$tps"
      OFF+=("$tps")
    fi
  done
  set_redis "redis://127.0.0.1:$RPORT"
  wait_delivered "$(sql -c "SELECT pg_current_wal_lsn()")" >/dev/null   # catch up before the next round
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mon=$(median "${ON[@]}"); moff=$(median "${OFF[@]}")
awk -v on="$mon" -v off="$moff" 'BEGIN {
  printf "median reserve tps: streaming on %.0f, off %.0f -> the worker costs %.1f%% (target <= 10%%)\n", on, off, (1 - on / off) * 100 }'

echo "backlog: $BACKLOG events committed while Redis is down"
stop_redis
batches=$(( (BACKLOG + 9999) / 10000 ))
for _ in $(seq "$batches"); do
  sql -c "SELECT count(ticket_reserve(2, 1, 'backlog')) FROM generate_series(1, 10000)" >/dev/null
done
end=$(sql -c "SELECT pg_current_wal_lsn()")
sql -c "SELECT ticket_ext.stream_reset_stats()" >/dev/null
wpid=$(sql -c "SELECT worker_pid FROM ticket_ext.stream_status LIMIT 1")
( while :; do awk '/VmRSS/ {print $2}' "/proc/$wpid/status"; sleep 0.5; done ) >"$DIR/rss" 2>/dev/null &
sampler=$!
start_redis
secs=$(wait_delivered "$end")
kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
sent=$(sql -c "SELECT events_sent FROM ticket_ext.stream_status WHERE sink = 'redis'")
xlen=$(redis-cli -p "$RPORT" XLEN ticket_ext:events)
read -r rmin rmax <<<"$(sort -n "$DIR/rss" | awk 'NR==1{min=$1} {max=$1} END {print min, max}')"
awk -v n="$sent" -v s="$secs" -v lo="$rmin" -v hi="$rmax" -v x="$xlen" 'BEGIN {
  printf "drained %d events in %.1f s = %.0f events/s (target >= 50,000); stream length now %d\n", n, s, n / s, x
  printf "worker RSS during the drain: %.1f MB .. %.1f MB\n", lo / 1024, hi / 1024 }'
