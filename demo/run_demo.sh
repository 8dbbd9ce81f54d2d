#!/usr/bin/env bash
# `make demo`: a small ticket sale on a throwaway PostgreSQL cluster.
# 200 concurrent buyers (as a least-privilege app role) go after 2,000
# tickets: some pay, some cancel, some abandon their hold and it expires.
# The summary is checked, not just printed; exit status 1 if a check fails.
#
#   demo/run_demo.sh [--seconds N] [--clients N] [--tickets N] [--keep]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
reexec_unprivileged "$ROOT" demo/run_demo.sh "$@"

SECONDS_RUN=10 CLIENTS=200 TICKETS=2000 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --tickets) TICKETS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: $0 [--seconds N] [--clients N] [--tickets N] [--keep]"; exit 2 ;;
  esac
done

export PATH="$(pg_config --bindir):$PATH"
DIR=$(mktemp -d /tmp/ticket_demo.XXXXXX)
PORT=$(free_port)
cleanup() {
  if [ "$KEEP" = 1 ]; then
    echo "cluster kept: psql -h $DIR -p $PORT -U postgres postgres   (stop: pg_ctl -D $DIR/data stop)"
    return
  fi
  pg_ctl -D "$DIR/data" -m fast stop >/dev/null 2>&1
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { psql -X -q -At -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }

echo "== starting a throwaway cluster on 127.0.0.1:$PORT"
cluster_start "$DIR" "$PORT" "ticket_ext.database = 'postgres'" \
  "max_connections = $((CLIENTS + 20))" "ticket_ext.expiry_interval = 200ms" || exit 1
sql >/dev/null <<SQL
CREATE EXTENSION ticket_ext;
CREATE ROLE shop LOGIN;
SELECT ticket_ext.grant_app('shop');
SELECT ticket_ext.create_item(1, $TICKETS, 'Demo concert, general admission');
SQL

echo "== $CLIENTS buyers after $TICKETS tickets for ${SECONDS_RUN}s (as role 'shop')"
SCRIPTS=$(mktemp -d "$DIR/scripts.XXXX")
cat >"$SCRIPTS/pay.sql" <<'SQL'
\set n random(1, 4)
BEGIN;
SELECT coalesce(ticket_reserve(1, :n, 'buyer-' || :client_id), 0) AS h \gset
SELECT ticket_confirm(:h) WHERE :h > 0;
COMMIT;
SQL
cat >"$SCRIPTS/cancel.sql" <<'SQL'
SELECT coalesce(ticket_reserve(1, 2, 'browser-' || :client_id), 0) AS h \gset
SELECT ticket_release(:h) WHERE :h > 0;
SQL
cat >"$SCRIPTS/abandon.sql" <<'SQL'
SELECT ticket_reserve(1, 1, 'abandoner-' || :client_id, '1 second');
SQL
pgbench -n -M prepared -h "$DIR" -p "$PORT" -U shop -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" \
  -f "$SCRIPTS/pay.sql@70" -f "$SCRIPTS/cancel.sql@15" -f "$SCRIPTS/abandon.sql@15" \
  postgres >"$DIR/pgbench.out" 2>&1
pgbench_rc=$?
grep -E '^(number of transactions actually processed|latency average|tps)' "$DIR/pgbench.out"

echo "== waiting for abandoned holds to expire"
for _ in $(seq 1 50); do
  [ "$(sql -c "SELECT count(*) FROM ticket_ext.holds WHERE status = 'held' AND expires_at < now()")" = 0 ] && break
  sleep 0.2
done

echo "== what happened"
sql -P footer=off -c "SELECT status, count(*) AS holds, sum(qty) AS tickets
                        FROM ticket_ext.holds GROUP BY status ORDER BY status" -F ' | ' -A
read -r CAP TAKEN SOLD AVAIL OK <<<"$(sql -F ' ' -c "
  SELECT v.capacity, v.table_taken,
         (SELECT coalesce(sum(qty), 0) FROM ticket_ext.holds WHERE status = 'sold'),
         ticket_available(1), v.ok
    FROM ticket_ext.verify(1) v")"
echo "capacity $CAP, sold $SOLD, taken (sold + held) $TAKEN, available $AVAIL"

fail=0
check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
echo "== checks"
check "the load ran without errors" "[ $pgbench_rc = 0 ]"
check "never sold more than capacity ($TAKEN <= $CAP)" "[ $TAKEN -le $CAP ]"
check "counters equal the tables (ticket_ext.verify)" "[ '$OK' = t ]"
check "available = capacity - taken" "[ $AVAIL -eq $((CAP - TAKEN > 0 ? CAP - TAKEN : 0)) ]"
check "abandoned holds expired" "[ \$(sql -c \"SELECT count(*) FROM ticket_ext.holds WHERE status = 'expired'\") -gt 0 ]"
check "the app role cannot change capacity" \
  "! psql -X -q -h '$DIR' -p $PORT -U shop -d postgres -c 'SELECT ticket_ext.set_capacity(1, 1000000)' 2>/dev/null"
[ $fail = 0 ] && echo "demo: all checks passed" || echo "demo: SOME CHECKS FAILED"
exit $fail
