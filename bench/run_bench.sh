#!/usr/bin/env bash
# `make bench`: ticket_reserve side by side with the usual alternatives, on
# one throwaway cluster with the same settings, pgbench -M prepared.  The
# machine is shared and noisy, so every configuration runs the cases
# interleaved, several rounds, and the ratios use medians of the same run.
#
#   bench/run_bench.sh [--quick] [--seconds N] [--rounds N] [--clients "1 16 64 128"]
#
# Cases (bench/cases/*.sql):
#   reserve          SELECT ticket_reserve(...)
#   reserve_confirm  ticket_reserve + ticket_confirm in one transaction
#   hotrow_2stmt     UPDATE inventory ... sold < capacity; INSERT sale   (2 statements)
#   hotrow_1stmt     WITH s AS (UPDATE ... RETURNING) INSERT ... FROM s  (1 statement)
#   advisory         1stmt + AND pg_try_advisory_xact_lock(item): losers skip
#   skip_locked      claim the first free seat row, FOR UPDATE SKIP LOCKED
#   skip_locked_spread  the same from a random starting seat (no queue)
#   insert_only      INSERT of one durable sale row: the ceiling
#   insert_update    INSERT + UPDATE by primary key: ceiling for reserve_confirm
# "sales/s" counts rows actually sold (the advisory variant's losers sell
# nothing), "tps" counts transactions.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
export TICKET_KEEP_LOGS=1    # the results file lands in test/logs/
reexec_unprivileged "$ROOT" bench/run_bench.sh "$@"

SECS=8 ROUNDS=2 CLIENT_LIST="1 16 64 128" SYNC_LIST="on off"
CASES="reserve reserve_confirm hotrow_2stmt hotrow_1stmt advisory skip_locked skip_locked_spread insert_only insert_update"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) CLIENT_LIST=64; ROUNDS=3; shift ;;
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --clients) CLIENT_LIST=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--seconds N] [--rounds N] [--clients LIST] [--cases LIST]"; exit 2 ;;
  esac
done

export PATH="$(pg_config --bindir):$PATH"
DIR=$(mktemp -d /tmp/ticket_bench.XXXXXX)
PORT=$(free_port)
RESULTS="$ROOT/test/logs/bench-$(date +%Y%m%d-%H%M%S).tsv"
mkdir -p "$ROOT/test/logs"
trap 'pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM

# Durable settings (fsync on); big WAL so no checkpoint lands mid-run.
cluster_start "$DIR" "$PORT" "fsync = on" "max_connections = 300" \
  "shared_buffers = 1GB" "max_wal_size = 20GB" "checkpoint_timeout = 30min" \
  "ticket_ext.database = 'postgres'" "log_min_messages = warning" || exit 1
sql() { psql -X -q -At -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
sql -f "$ROOT/bench/setup.sql" >/dev/null

reset_state() {	# reset_state <case>
  sql >/dev/null <<'SQL'
TRUNCATE ticket_ext.holds;
SELECT count(*) FROM ticket_ext.resync();
TRUNCATE sales RESTART IDENTITY;
UPDATE inventory SET sold = 0;
SQL
  if [[ "$1" = skip_locked* ]]; then
    sql >/dev/null <<'SQL'
TRUNCATE seats;
INSERT INTO seats (seat_id, item_id) SELECT g, 1 FROM generate_series(1, 1500000) g;
SQL
  fi
  sql -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}

sold_rows() {	# rows actually sold by <case>
  case "$1" in
    reserve|reserve_confirm) sql -c "SELECT count(*) FROM ticket_ext.holds" ;;
    skip_locked*) sql -c "SELECT count(*) FROM seats WHERE sold" ;;
    *) sql -c "SELECT count(*) FROM sales" ;;
  esac
}

run_case() {	# run_case <case> <clients> <sync> <round> -> appends a TSV line
  local c=$1 n=$2 sc=$3 r=$4 logdir out tps p99 sold jobs
  reset_state "$c"
  logdir=$(mktemp -d "$DIR/log.XXXX")
  jobs=$(( n < 2 ? 1 : 2 ))
  out=$(cd "$logdir" && PGOPTIONS="-c synchronous_commit=$sc" pgbench -n -M prepared \
          -h "$DIR" -p "$PORT" -U postgres -c "$n" -j "$jobs" -T "$SECS" \
          -l --sampling-rate=0.2 -f "$ROOT/bench/cases/$c.sql" postgres 2>&1)
  tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out")
  p99=$(cat "$logdir"/pgbench_log.* 2>/dev/null | awk '{print $3}' | sort -n |
        awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; if (NR) printf "%.2f", a[i]/1000; else print "nan"}')
  sold=$(sold_rows "$c")
  rm -rf "$logdir"
  if [ -z "$tps" ]; then echo "$c failed: $out" >&2; tps=0; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$n" "$sc" "$r" "$tps" \
    "$(awk -v s="$sold" -v t="$SECS" 'BEGIN {printf "%.0f", s / t}')" "$p99" >>"$RESULTS"
}

echo "ticket_ext benchmark: $(nproc) cores, ${SECS}s per run, $ROUNDS round(s), clients: $CLIENT_LIST"
echo "results: ${TICKET_LOGS_SHOWN_AS:-$ROOT/test/logs}/$(basename "$RESULTS")"
printf 'case\tclients\tsync\tround\ttps\tsales_per_s\tp99_ms\n' >"$RESULTS"
total=0
for sc in $SYNC_LIST; do for n in $CLIENT_LIST; do for r in $(seq "$ROUNDS"); do for c in $CASES; do
  total=$((total + 1))
done; done; done; done
i=0
for sc in $SYNC_LIST; do
  for n in $CLIENT_LIST; do
    for r in $(seq "$ROUNDS"); do
      for c in $CASES; do   # interleaved: noise hits every case alike
        i=$((i + 1))
        printf '\r  run %d/%d: %-16s clients=%-3s synchronous_commit=%-3s round %s   ' "$i" "$total" "$c" "$n" "$sc" "$r"
        run_case "$c" "$n" "$sc" "$r"
      done
    done
  done
done
echo

# medians per (case, clients, sync), then the table and the ratios
awk -F'\t' -v clients="$CLIENT_LIST" -v cases="$CASES" -v syncs="$SYNC_LIST" '
function median(key, field,   n, i, j, t, v) {
  n = cnt[key]; for (i = 1; i <= n; i++) v[i] = val[key, i, field]
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
NR > 1 { k = $1 SUBSEP $2 SUBSEP $3; cnt[k]++; val[k, cnt[k], "tps"] = $5; val[k, cnt[k], "sales"] = $6; val[k, cnt[k], "p99"] = $7 }
END {
  nc = split(cases, C, " "); nn = split(clients, N, " "); ns = split(syncs, S, " ")
  for (s = 1; s <= ns; s++) {
    printf "\nsynchronous_commit = %s (medians)\n", S[s]
    printf "%-16s", "case"; for (i = 1; i <= nn; i++) printf " | %7s cl: tps  sales/s  p99ms", N[i]; printf "\n"
    for (c = 1; c <= nc; c++) {
      printf "%-16s", C[c]
      for (i = 1; i <= nn; i++) {
        k = C[c] SUBSEP N[i] SUBSEP S[s]
        if (cnt[k]) printf " | %14.0f %8.0f %6.2f", median(k, "tps"), median(k, "sales"), median(k, "p99")
        else printf " | %30s", "-"
      }
      printf "\n"
    }
  }
  # the targets, at 64 clients (or the largest client count run)
  n64 = 0; for (i = 1; i <= nn; i++) if (N[i] == 64) n64 = 64; if (!n64) n64 = N[nn]
  printf "\nratios at %d clients (sales/s, medians of the same run):\n", n64
  for (s = 1; s <= ns; s++) {
    r = median("reserve" SUBSEP n64 SUBSEP S[s], "sales")
    rc = median("reserve_confirm" SUBSEP n64 SUBSEP S[s], "sales")
    split("insert_only:0.85 hotrow_1stmt:" (S[s] == "on" ? 8 : 3) " hotrow_2stmt:0 advisory:0 skip_locked:3 skip_locked_spread:0", T, " ")
    for (t = 1; t in T; t++) {
      split(T[t], kv, ":"); p = median(kv[1] SUBSEP n64 SUBSEP S[s], "sales")
      if (p > 0) printf "  sync=%-3s reserve / %-13s = %6.2fx%s\n", S[s], kv[1], r / p,
        (kv[2] > 0 ? sprintf("   target >= %sx: %s", kv[2], (r / p >= kv[2] ? "met" : "MISSED")) : "")
    }
    p = median("insert_update" SUBSEP n64 SUBSEP S[s], "sales")
    if (p > 0) printf "  sync=%-3s reserve_confirm / insert_update = %6.2fx   target >= 0.8x: %s\n",
      S[s], rc / p, (rc / p >= 0.8 ? "met" : "MISSED")
    printf "  sync=%-3s reserve = %.0f sales/s = %.1fx the replaced Redis+Lua service (4,100 ops/s)\n", S[s], r, r / 4100
  }
}' "$RESULTS"

# shared memory per item
sql -F ' ' -c "SELECT size, current_setting('ticket_ext.max_items')::int FROM pg_shmem_allocations WHERE name = 'ticket_ext'" |
  awk '{ printf "\nshared memory: %d bytes for ticket_ext.max_items = %d -> %.1f bytes per item; 100,000 items = %.1f MB\n", $1, $2, $1 / $2, $1 / $2 * 100000 / 1048576 }'
