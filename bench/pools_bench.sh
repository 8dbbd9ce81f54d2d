#!/usr/bin/env bash
# `make bench-pools`: what shared capacity pools and a per-customer limit
# cost a reservation (issue 14), side by side on one throwaway cluster:
# 64 pgbench clients (-M prepared) on one hot item, holders drawn from
# random(1, 50000), cases interleaved over several rounds (the machine is
# shared and noisy), medians and ratios of the same run.
#
#   bench/pools_bench.sh [--seconds N] [--rounds N] [--clients N] [--sync on|off] [--cases LIST]
#   bench/pools_bench.sh --report test/logs/bench-pools-*.tsv   (the summary of a past run)
#
# Cases (bench/cases/pools_*.sql, tables and functions in bench/pools_setup.sql):
#   plain          SELECT ticket_reserve(1, 1, 'u' || :h): no pools, no limit
#   pools_only     ticket_reserve(4, ...): item 4 takes from pools 15 and 16
#   plain_wrapped  item 1 through bench_reserve(), the plpgsql wrapper that
#                  turns TK008 into NULL (the wrapper's subtransaction alone)
#   limit_only     bench_reserve(5, ...): item 5 has a holder limit of 4
#   limited        bench_reserve(2, ...): item 2 takes from pools 11 and 12,
#                  holder limit 4 on the item and 4 on pool 11 (the issue's case)
#   sql_peer       peer_reserve(3, ...): plain SQL, the pretix way, own tables:
#                  advisory locks on the customer and on the 3 quotas (ascending),
#                  the customer's qty, the quotas' SUM(qty), INSERT
# Every run starts from empty holds (capacity 10^12: never sold out), so
# its refusals are holders at their limit (NULL from the wrapper / peer).
# "calls/s" is pgbench's tps (reservations attempted, without connection
# time), "holds/s" the rows written in the same time.  After each run:
# ticket_ext.verify() ok, the item's pools' counters took exactly its
# holds, no holder over the limit (the peer's too).  A failed check or an
# aborted client fails the run (exit 1).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"

# report <tsv>: per-round lines, medians, ratios (of the medians; per-round range too)
report() {
awk -F'\t' '
function median(arr, n,   i, j, t, v) {
  for (i = 1; i <= n; i++) v[i] = arr[i]
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function med(c, f,   i, a) { for (i = 1; i <= cnt[c]; i++) a[i] = val[c, i, f]; return median(a, cnt[c]) }
function ratio(a, b, f,   i, lo, hi, x) {	# median ratio and the per-round range
  if (!cnt[a] || !cnt[b] || med(b, f) == 0) return ""
  lo = 1e18; hi = 0
  for (i = 1; i <= cnt[a] && i <= cnt[b]; i++) if (val[b, i, f] > 0) {
    x = val[a, i, f] / val[b, i, f]; if (x < lo) lo = x; if (x > hi) hi = x }
  return sprintf("%7.3fx  (rounds %.3f-%.3f)", med(a, f) / med(b, f), lo, hi)
}
NR > 1 {
  c = $1; n = ++cnt[c]; if (n == 1) cases = cases " " c
  val[c, n, "tps"] = $3; val[c, n, "holds"] = $6; val[c, n, "p99"] = $7
  val[c, n, "refused"] = ($4 > $5 ? 100 * ($4 - $5) / $4 : 0); val[c, n, "atlimit"] = $9
  val[c, n, "srv"] = $11; val[c, n, "cli"] = $12; val[c, n, "cpu"] = $11 + $12
  printf "  %-14s round %s: %9.0f calls/s %9.0f holds/s  refused %5.2f%%  p99 %7.2f ms  CPU/call %6.1f us server %6.1f us pgbench\n",
    c, $2, $3, $6, val[c, n, "refused"], $7, $11, $12
}
END {
  nc = split(cases, C, " ")
  printf "\nmedians\n%-14s %10s %10s %9s %9s %17s %20s\n", "case", "calls/s", "holds/s", "refused", "p99 ms", "holders at limit", "CPU us/call srv+pgb"
  for (i = 1; i <= nc; i++) if (cnt[C[i]])
    printf "%-14s %10.0f %10.0f %8.2f%% %9.2f %17s %12.1f + %5.1f\n", C[i], med(C[i], "tps"), med(C[i], "holds"),
      med(C[i], "refused"), med(C[i], "p99"), (C[i] ~ /limit|peer/ ? sprintf("%.0f", med(C[i], "atlimit")) : "-"),
      med(C[i], "srv"), med(C[i], "cli")
  printf "\nratios (medians of the same run; calls/s unless said)\n"
  if ((s = ratio("limited", "plain", "tps")) != "") {
    x = med("limited", "tps") / med("plain", "tps")
    printf "  limited / plain           = %s   cost %.1f%%, target <= 15%%: %s\n", s, 100 * (1 - x), (1 - x <= 0.15 ? "met" : "MISSED")
    printf "  limited / plain, holds/s  = %s\n", ratio("limited", "plain", "holds")
  }
  if ((s = ratio("limited_bare", "plain", "tps")) != "") {
    x = med("limited_bare", "tps") / med("plain", "tps")
    printf "  limited_bare / plain      = %s   cost %.1f%% (2 pools + limits checked, not reached, no wrapper), target <= 15%%: %s\n", s, 100 * (1 - x), (1 - x <= 0.15 ? "met" : "MISSED")
  }
  if ((s = ratio("plain_wrapped", "plain", "tps")) != "")
    printf "  plain_wrapped / plain     = %s   (the TK008 wrapper alone)\n", s
  if ((s = ratio("limited", "plain_wrapped", "tps")) != "")
    printf "  limited / plain_wrapped   = %s   (pools + limit alone, same wrapper)\n", s
  if ((s = ratio("pools_only", "plain", "tps")) != "")
    printf "  pools_only / plain        = %s   (2 pools alone)\n", s
  if ((s = ratio("limit_only", "plain_wrapped", "tps")) != "")
    printf "  limit_only / plain_wrapped = %s   (the limit alone, same wrapper)\n", s
  if ((s = ratio("limited", "sql_peer", "tps")) != "") {
    x = med("limited", "tps") / med("sql_peer", "tps")
    printf "  limited / sql_peer        = %s   target >= 5x: %s\n", s, (x >= 5 ? "met" : "MISSED")
    printf "  limited / sql_peer, holds/s = %s\n", ratio("limited", "sql_peer", "holds")
  }
  # the cross-check: with the cores saturated, calls/s goes as 1 / CPU per
  # call (server + pgbench), which other work on the machine barely moves
  if (cnt["limited"] && cnt["plain"]) {
    printf "\nCPU per call (server + pgbench, medians): the throughput ratio it predicts, and the cost\n"
    printf "  limited / plain (predicted) = %.3fx  cost %.1f%%   (server alone: %.1f vs %.1f us, +%.1f us)\n",
      med("plain", "cpu") / med("limited", "cpu"), 100 * (1 - med("plain", "cpu") / med("limited", "cpu")),
      med("plain", "srv"), med("limited", "srv"), med("limited", "srv") - med("plain", "srv")
    if (cnt["plain_wrapped"]) printf "  plain_wrapped / plain     = %.3fx  (the wrapper)\n", med("plain", "cpu") / med("plain_wrapped", "cpu")
    if (cnt["pools_only"]) printf "  pools_only / plain        = %.3fx  (2 pools)\n", med("plain", "cpu") / med("pools_only", "cpu")
    if (cnt["limit_only"] && cnt["plain_wrapped"]) printf "  limit_only / plain_wrapped = %.3fx  (the limit)\n", med("plain_wrapped", "cpu") / med("limit_only", "cpu")
  }
}' "$1"
}

[ "${1:-}" = --report ] && { report "$2"; exit; }

export TICKET_KEEP_LOGS=1    # the results file lands in test/logs/
reexec_unprivileged "$ROOT" bench/pools_bench.sh "$@"

SECS=10 ROUNDS=5 CLIENTS=64 SYNC=on
CASES="plain limited_bare pools_only plain_wrapped limit_only limited sql_peer"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --sync) SYNC=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--rounds N] [--clients N] [--sync on|off] [--cases LIST] | --report RESULTS.tsv"; exit 2 ;;
  esac
done

export PATH="$(pg_config --bindir):$PATH"
DIR=$(mktemp -d /tmp/ticket_pbench.XXXXXX)
PORT=$(free_port)
RESULTS="$ROOT/test/logs/bench-pools-$(date +%Y%m%d-%H%M%S).tsv"
mkdir -p "$ROOT/test/logs"
trap 'pg_ctl -D "$DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM

# the settings of bench/run_bench.sh: durable, big WAL (no checkpoint mid-run)
cluster_start "$DIR" "$PORT" "fsync = on" "max_connections = 200" \
  "shared_buffers = 1GB" "max_wal_size = 20GB" "checkpoint_timeout = 30min" \
  "ticket_ext.database = 'postgres'" "log_min_messages = warning" || exit 1
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"; }
sql -f "$ROOT/bench/pools_setup.sql" >/dev/null || exit 1

CAP=1000000000000
FAILED=0
fail() { echo; echo "CHECK FAILED: $*" >&2; FAILED=1; }

reset_state() {
  sql >/dev/null <<'SQL'
TRUNCATE ticket_ext.holds;
SELECT count(*) FROM ticket_ext.resync();
TRUNCATE peer_holds;
SQL
  sql -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}

ITEM_plain=1 ITEM_plain_wrapped=1 ITEM_limited=2 ITEM_limited_bare=6 ITEM_pools_only=4 ITEM_limit_only=5
holds_of() {	# rows written by <case>
  local v=ITEM_$1
  if [ "$1" = sql_peer ]; then sql -c "SELECT count(*) FROM peer_holds"
  else sql -c "SELECT count(*) FROM ticket_ext.holds WHERE item_id = ${!v}"; fi
}

check_ext() {	# check_ext <round> <item> <limit or 0> [pools...]: -> EXTRA
  # verify() ok everywhere; each pool's counter (verify's and
  # ticket_available's) took exactly the item's holds; the largest holder
  # within the limit; how many holders are at it
  local r=$1 item=$2 limit=$3 p v ok held maxh atlimit t a; shift 3
  v=$(sql -F ' ' -c "SELECT (SELECT bool_and(ok) FROM ticket_ext.verify()),
       (SELECT coalesce(sum(qty), 0) FROM ticket_ext.holds WHERE item_id = $item AND ended_at IS NULL),
       (SELECT coalesce(max(s), 0) FROM (SELECT sum(qty) s FROM ticket_ext.holds
          WHERE item_id = $item AND ended_at IS NULL GROUP BY holder) x),
       (SELECT count(*) FROM (SELECT 1 FROM ticket_ext.holds WHERE item_id = $item AND ended_at IS NULL
          GROUP BY holder HAVING sum(qty) = $limit) x)")
  read -r ok held maxh atlimit <<<"$v"
  [ "$ok" = t ] || fail "round $r: ticket_ext.verify() not ok after item $item's run"
  [ "${held:-0}" -gt 0 ] || fail "round $r: item $item has no holds"
  for p in "$@"; do
    read -r t a <<<"$(sql -F ' ' -c "SELECT counter_taken, $CAP - ticket_available($p) FROM ticket_ext.verify() WHERE item_id = $p")"
    { [ "$t" = "$held" ] && [ "$a" = "$held" ]; } ||
      fail "round $r: pool $p took $t (available says $a), item $item holds $held"
  done
  if [ "$limit" -gt 0 ]; then
    [ "${maxh:-99}" -le "$limit" ] || fail "round $r: a holder has $maxh on item $item (limit $limit)"
    EXTRA="$maxh	$atlimit	$([ $# -gt 0 ] && echo "$held" || echo -)"
  else
    EXTRA="$maxh	-	$([ $# -gt 0 ] && echo "$held" || echo -)"
  fi
}

check_case() {	# check_case <case> <round>: the limit held, the pools moved -> EXTRA
  local c=$1 r=$2 v maxh atlimit
  case "$c" in
    limited) check_ext "$r" 2 4 11 12 ;;
    limited_bare) check_ext "$r" 6 20 17 18 ;;
    pools_only) check_ext "$r" 4 0 15 16 ;;
    limit_only) check_ext "$r" 5 4 ;;
    plain|plain_wrapped) check_ext "$r" 1 0 ;;
    sql_peer)
      v=$(sql -F ' ' -c "SELECT coalesce(max(s), 0), count(*) FILTER (WHERE s = 4) FROM
            (SELECT sum(qty) s FROM peer_holds WHERE status IN ('held', 'sold') GROUP BY holder) x")
      read -r maxh atlimit <<<"$v"
      [ "${maxh:-99}" -le 4 ] || fail "round $r: a peer holder has $maxh (limit 4)"
      EXTRA="$maxh	$atlimit	-" ;;
  esac
}

# CPU the cluster used, in clock ticks: the postmaster, the children it
# reaped (the run's backends, once they exited) and the live ones.  Other
# work on a shared machine barely changes a call's CPU, while it changes
# the throughput a lot: the cross-check of the ratios.
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
cluster_ticks() {
  local pm c n=0
  pm=$(head -1 "$DIR/data/postmaster.pid")
  n=$(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}')
  for c in $(pgrep -P "$pm"); do
    n=$(( n + $(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12 + $13}') + 0 ))
  done
  echo "$n"
}
cluster_children() { pgrep -c -P "$(head -1 "$DIR/data/postmaster.pid")"; }

run_case() {	# run_case <case> <round> -> appends a TSV line
  local c=$1 r=$2 logdir out rc tps xacts p99 holds base t0 t1 cpu srv_us cli_us
  reset_state
  logdir=$(mktemp -d "$DIR/log.XXXX")
  base=$(cluster_children) t0=$(cluster_ticks)
  out=$(cd "$logdir" && TIMEFORMAT='pgbench cpu %U %S' && { time PGOPTIONS="-c synchronous_commit=$SYNC" \
          pgbench -n -M prepared -h "$DIR" -p "$PORT" -U postgres -c "$CLIENTS" -j 2 -T "$SECS" \
          -l --sampling-rate=0.2 -f "$ROOT/bench/cases/pools_$c.sql" postgres; } 2>&1)
  rc=$?
  for _ in $(seq 100); do [ "$(cluster_children)" -le "$base" ] && break; sleep 0.05; done
  t1=$(cluster_ticks)
  tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out")
  xacts=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$out")
  cpu=$(sed -nE 's/^pgbench cpu ([0-9.]+) ([0-9.]+)$/\1 \2/p' <<<"$out")
  p99=$(cat "$logdir"/pgbench_log.* 2>/dev/null | awk '{print $3}' | sort -n |
        awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; if (NR) printf "%.2f", a[i]/1000; else print "nan"}')
  rm -rf "$logdir"
  if [ $rc -ne 0 ] || [ -z "$tps" ] || grep -q 'aborted' <<<"$out"; then
    fail "round $r: $c: pgbench exit $rc: $(grep -m3 -iE 'error|abort' <<<"$out")"
    tps=${tps:-0} xacts=${xacts:-0}
  fi
  # CPU microseconds per call: the server's, pgbench's
  srv_us=$(awk -v d=$((t1 - t0)) -v u="$TICK_US" -v x="$xacts" 'BEGIN {printf "%.1f", (x > 0 ? d * u / x : 0)}')
  cli_us=$(awk -v c="$cpu" -v x="$xacts" 'BEGIN {split(c, a, " "); printf "%.1f", (x > 0 ? (a[1] + a[2]) * 1e6 / x : 0)}')
  holds=$(holds_of "$c")
  check_case "$c" "$r"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$r" "$tps" "$xacts" "$holds" \
    "$(awk -v h="$holds" -v x="$xacts" -v t="$tps" 'BEGIN {printf "%.0f", (x > 0 ? t * h / x : 0)}')" "$p99" \
    "$EXTRA" "$srv_us" "$cli_us" >>"$RESULTS"
}

echo "ticket_ext pools + limit benchmark: $(nproc) cores, $CLIENTS clients, ${SECS}s per run, $ROUNDS rounds, synchronous_commit = $SYNC"
# the build measured (the installed library is shared: say which one it was)
echo "ticket_ext $(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'ticket_ext'"), $(pg_config --pkglibdir)/ticket_ext.so md5 $(md5sum "$(pg_config --pkglibdir)/ticket_ext.so" | cut -c1-12)"
echo "results: ${TICKET_LOGS_SHOWN_AS:-$ROOT/test/logs}/$(basename "$RESULTS")"
printf 'case\tround\ttps\txacts\tholds\tholds_per_s\tp99_ms\tmax_per_holder\tholders_at_limit\tpool_taken\tserver_cpu_us_per_call\tpgbench_cpu_us_per_call\n' >"$RESULTS"
total=$(( ROUNDS * $(wc -w <<<"$CASES") )) i=0
for r in $(seq "$ROUNDS"); do
  for c in $CASES; do   # interleaved: noise hits every case alike
    i=$((i + 1))
    printf '\r  run %d/%d: %-14s round %s   ' "$i" "$total" "$c" "$r"
    run_case "$c" "$r"
  done
done
echo

report "$RESULTS"

if [ "$FAILED" = 0 ]; then
  echo "checks passed: after every run verify() ok, each pool's counter took exactly its item's holds, no holder over the limit (peer too)"
else
  echo "pools bench: CHECKS FAILED (above)"; exit 1
fi
