#!/usr/bin/env bash
# The server under valgrind (memcheck): every backend, the walsender with
# the output plugin, the expiry and streaming workers run on the
# valgrind-ed postmaster, while the pg_regress suite, the pgTAP
# hostile-input test and a streamed sale to a real Redis run against it.
# Then every valgrind report whose stack passes through ticket_ext.so is
# a failure; PostgreSQL's own known reports (WAL padding, relcache init
# file: what src/tools/valgrind.supp suppresses) are counted, not failed.
#
#   test/valgrind/run_valgrind.sh          (run as a non-root user; TAP output)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
export PATH="$(pg_config --bindir):$PATH"
DIR=$(mktemp -d /tmp/ticket_valgrind.XXXXXX)
PORT=$(free_port)
RPORT=$(free_port)
cleanup() {
  pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1
  [ -f "$DIR/redis.pid" ] && kill "$(cat "$DIR/redis.pid")" 2>/dev/null
  [ -n "${LOGS:-}" ] && cp "$DIR"/vg.*.log "$LOGS/" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "1..5"
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$DIR" --save '' --appendonly no \
  --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null
initdb -D "$DIR/data" -A trust -U postgres --no-sync --no-locale -E UTF8 >"$DIR/initdb.log" 2>&1 || {
  echo "not ok 1 - initdb"; cat "$DIR/initdb.log"; exit 1; }
{
  cat "$ROOT/test/conf/ticket_ext.conf"
  echo "port = $PORT"
  echo "listen_addresses = ''"
  echo "unix_socket_directories = '$DIR'"
  echo "max_connections = 20"
  echo "ticket_ext.redis_url = 'redis://127.0.0.1:$RPORT'"
} >>"$DIR/data/postgresql.conf"
# the postmaster under valgrind; its children (forked) stay under it
valgrind --quiet --trace-children=yes --error-limit=no --leak-check=no --num-callers=40 \
  --log-file="$DIR/vg.%p.log" postgres -D "$DIR/data" >"$DIR/server.log" 2>&1 &
for _ in $(seq 300); do pg_isready -q -h "$DIR" -p "$PORT" && break; sleep 0.5; done
psql_() { psql -X -q -At -h "$DIR" -p "$PORT" -U postgres "$@"; }

# 1. the pg_regress suite (creates contrib_regression, streamed by the worker)
TESTS=$(cd "$ROOT/sql" && ls ./*.sql | grep -v -- '--' | sed 's|^\./||; s/\.sql$//' | sort | tr '\n' ' ')
# shellcheck disable=SC2086
if "$(pg_config --pkglibdir)/pgxs/src/test/regress/pg_regress" --host="$DIR" --port="$PORT" \
     --user=postgres --inputdir="$ROOT" --outputdir="$DIR/regress" \
     --bindir="$(pg_config --bindir)" --dbname=contrib_regression $TESTS >"$DIR/regress.log" 2>&1; then
  echo "ok 1 - pg_regress ($TESTS) under valgrind"
else
  echo "not ok 1 - pg_regress under valgrind"; sed 's/^/# /' "$DIR/regress.log" | tail -20
  cat "$DIR/regress/regression.diffs" 2>/dev/null | head -40 | sed 's/^/# /'
fi

# 2. the hostile-input pgTAP test
psql_ -d postgres -c "CREATE DATABASE tap" &&
  psql_ -d tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION ticket_ext" >/dev/null
if pg_prove -h "$DIR" -p "$PORT" -U postgres -d tap "$ROOT/test/pgtap/hostile_inputs.sql" >"$DIR/pgtap.log" 2>&1; then
  echo "ok 2 - pgTAP hostile inputs under valgrind"
else
  echo "not ok 2 - pgTAP hostile inputs under valgrind"; sed 's/^/# /' "$DIR/pgtap.log" | tail -20
fi

# 3. a streamed sale: reservations in contrib_regression reach Redis
psql_ -d contrib_regression -c "SELECT ticket_ext.create_item(900, 1000, 'valgrind')" \
  -c "SELECT ticket_confirm(ticket_reserve(900, 1, 'vg' || g)) FROM generate_series(1, 200) g" \
  -c "SELECT ticket_release(ticket_reserve(900, 2, 'vg')) FROM generate_series(1, 50)" >/dev/null
want=$(psql_ -d contrib_regression -c "SELECT count(*) FROM ticket_ext.holds WHERE item_id = 900")
# each hold: reserved, then confirmed or released
count900() {	# hold events of item 900 in the stream
  redis-cli -p "$RPORT" --raw XRANGE ticket_ext:events - + | awk '
    function done() { if (item == "900" && hold != "") c++; item = hold = "" }
    /^[0-9]+-[0-9]+$/ && key == "" { done(); next }
    key != "" { if (key == "item_id") item = $0; if (key == "hold_id") hold = $0; key = ""; next }
    { key = $0 }
    END { done(); print c + 0 }'; }
got=0
for _ in $(seq 240); do
  got=$(count900)
  [ "$got" -ge $((want * 2)) ] && break
  sleep 0.5
done
if [ "$want" -eq 250 ] && [ "$got" -eq $((want * 2)) ]; then
  echo "ok 3 - all $got events of the $want holds streamed to Redis by the valgrind-ed worker"
else
  echo "not ok 3 - $got events of $want holds reached Redis (want $((want * 2)))"
fi

# 4. a clean shutdown
if pg_ctl -D "$DIR/data" -m fast -w -t 120 stop >/dev/null 2>&1; then
  echo "ok 4 - server stopped cleanly"
else
  echo "not ok 4 - server did not stop cleanly"
fi

# 5. no valgrind report through ticket_ext.so
# our frames: "(in .../ticket_ext.so)", or "(<one of our files>.c:N)" with
# debug info (the server itself has none here).  A report is ours when
# such a frame comes before the first frame of the server's own code.
OURS="ticket_ext\\.so|[( ]($(cd "$ROOT" && ls src/*.c bgworker/*.c bgworker/stream/*.c | xargs -n1 basename | sed 's/\.c$//' | paste -sd'|'))\\.c:[0-9]+\\)"
ours=0 theirs=0
for f in "$DIR"/vg.*.log; do
  # one report = lines from "==pid== <Kind>" up to the blank "==pid== " line
  while IFS= read -r -d '' report; do
    [ -n "$report" ] || continue
    # ours when a frame of ours comes before any frame of the server's
    # own code: the error is in our code or in a library we called
    if awk -v ours="$OURS" '/ (at|by) 0x/ {
          if ($0 ~ ours) { found = 1; exit }
          if ($0 ~ /\(in .*\/bin\/postgres\)/) exit }
        END { exit !found }' <<<"$report"; then
      ours=$((ours + 1)); [ $ours -le 3 ] && sed 's/^/# /' <<<"$report"
    else
      theirs=$((theirs + 1))
    fi
  done < <(awk '/^==[0-9]+== [A-Z]/ { r = $0 "\n"; inr = 1; next }
                inr && /^==[0-9]+== *$/ { printf "%s%c", r, 0; inr = 0; next }
                inr { r = r $0 "\n" }' "$f")
done
nlogs=$(ls "$DIR"/vg.*.log | wc -l)
if [ $ours -eq 0 ]; then
  echo "ok 5 - no valgrind report in ticket_ext code ($nlogs processes; $theirs reports from PostgreSQL itself)"
else
  echo "not ok 5 - $ours valgrind reports in ticket_ext code"
fi
[ $ours -eq 0 ]
