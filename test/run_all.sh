#!/usr/bin/env bash
# Run every test suite of ticket_ext, each on its own throwaway cluster
# (initdb in a temp dir, loopback/unix socket only, free ports), as a
# non-root OS user.  Ends with one line "N passed, N failed"; exits
# non-zero if anything failed.  The extension must be built and installed
# (`make test` does both).
#
#   test/run_all.sh [suite ...]      suites: regress isolation pgtap tap demo fuzz valgrind
#
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(regress isolation pgtap tap demo fuzz valgrind)

# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
reexec_unprivileged "$ROOT" test/run_all.sh "${SUITES[@]}"

PGBIN=$(pg_config --bindir)
PGXS_DIR=$(dirname "$(pg_config --pgxs)")
export PATH="$PGBIN:$PATH"
cd "$ROOT"
LOGS="$ROOT/test/logs"
rm -rf "$LOGS"; mkdir -p "$LOGS"
TMP=$(mktemp -d /tmp/ticket_ext_run.XXXXXX)
cleanup() {
  # stop any cluster a suite left behind, even after a failure
  for d in "$TMP"/*/data "$TMP"/*/tmp_check/data; do
    [ -f "$d/postmaster.pid" ] && pg_ctl -D "$d" -m immediate stop >/dev/null 2>&1
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

PASSED=0
FAILED=0
record() {	# record <suite> <passed> <failed>
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3))
  printf '%-10s %4d passed, %d failed\n' "$1" "$2" "$3"
}

# run_installcheck <suite>: the Makefile's REGRESS (regress) or ISOLATION
# (isolation) list through PGXS's `make installcheck`, on its own temporary
# instance (REGRESS_OPTS/ISOLATION_OPTS); counts "... ok" / "... FAILED".
run_installcheck() {
  local suite=$1 only out
  if [ "$suite" = regress ]; then only=(ISOLATION=); out=.; else only=(REGRESS=); out=output_iso; fi
  make -s -C "$ROOT" installcheck "${only[@]}" EXTRA_REGRESS_OPTS="--port=$(free_port)" \
    >"$LOGS/$suite.log" 2>&1
  cp "$ROOT/$out"/regression.diffs "$LOGS/$suite.diffs" 2>/dev/null
  cp -r "$ROOT/$out/results" "$LOGS/$suite-results" 2>/dev/null
  record "$suite" "$(grep -cE '\.\.\. ok' "$LOGS/$suite.log")" \
                  "$(grep -cE '\.\.\. FAILED' "$LOGS/$suite.log")"
  regress_sanity "$LOGS/$suite.log" "$suite"
}

run_pgtap() {
  local dir="$TMP/pgtap" port
  port=$(free_port)
  cluster_start "$dir" "$port" "ticket_ext.database = 'postgres'" || { record pgtap 0 1; return; }
  psql -X -q -h "$dir" -p "$port" -d postgres \
    -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION ticket_ext" >>"$LOGS/pgtap.log" 2>&1
  pg_prove --verbose -h "$dir" -p "$port" -d postgres test/pgtap/*.sql \
    >>"$LOGS/pgtap.log" 2>&1
  cluster_stop "$dir"
  count_tap pgtap "$LOGS/pgtap.log"
}

run_tap() {
  # Perl TAP tests on PostgreSQL::Test::Cluster (crash, restart, standby)
  mkdir -p "$TMP/tap"
  PERL5LIB="$PGXS_DIR/../test/perl:$ROOT/test/lib" TESTDIR="$TMP/tap" \
    PG_REGRESS="$PGXS_DIR/../test/regress/pg_regress" TICKET_ROOT="$ROOT" \
    prove --verbose --timer ${TICKET_TAP_TESTS:-test/t/*.pl} >"$LOGS/tap.log" 2>&1
  cp -r "$TMP/tap/tmp_check/log" "$LOGS/tap-logs" 2>/dev/null
  count_tap tap "$LOGS/tap.log"
  # the fault matrix's table (test/t/030_fault_matrix.pl)
  sed -n '/^# fault matrix$/,/^# total /p' "$LOGS/tap.log" | sed 's/^# /  /'
}

run_valgrind() {
  # the server under valgrind for the regress suite, hostile inputs and a
  # streamed sale; no report may pass through ticket_ext.so
  local rc ok notok
  "$ROOT/test/valgrind/run_valgrind.sh" >"$LOGS/valgrind.log" 2>&1
  rc=$?
  ok=$(grep -cE '^ok [0-9]' "$LOGS/valgrind.log")
  notok=$(grep -cE '^not ok [0-9]' "$LOGS/valgrind.log")
  # all 5 must report; a script that died early is a failure too
  record valgrind "$ok" $(( notok + (ok + notok < 5 || rc != 0 ? 1 : 0) ))
}

run_demo() {
  # the main job, reduced: same servers, same checks, fewer users; then
  # the festival (pools, per-customer limit), reduced alike
  demo_run demo --users 8000 --clients 200
  demo_run festival --festival --users 6000 --clients 200 --tickets 1500
}

demo_run() {	# demo_run <name> [run_demo.sh options]: its "  ok"/"  FAIL" lines
  local name=$1 rc fails; shift
  "$ROOT/demo/run_demo.sh" "$@" --abandon-secs 1 --quiet --no-speed-check >"$LOGS/$name.log" 2>&1
  rc=$?
  fails=$(grep -c '^  FAIL ' "$LOGS/$name.log")
  record "$name" "$(grep -c '^  ok ' "$LOGS/$name.log")" "$(( fails + (rc != 0 && fails == 0 ? 1 : 0) ))"
}

run_fuzz() {
  # libFuzzer + ASan/UBSan on the parsers of outside input, briefly
  # (`make fuzz FUZZ_SECONDS=300` for a longer run)
  "$ROOT/test/fuzz/run_fuzz.sh" "${FUZZ_SECONDS:-10}" >"$LOGS/fuzz.log" 2>&1
  record fuzz "$(grep -cE '^ok [0-9]' "$LOGS/fuzz.log")" "$(grep -cE '^not ok [0-9]' "$LOGS/fuzz.log")"
}

START=$SECONDS
# the test-only hooks module (test/modules/ticket_test_hooks.c), built in
# place and LOADed by path by the tests that need it; never installed
make -s -C "$ROOT/test/modules" >"$LOGS/test_modules.log" 2>&1 ||
  { record test_modules 0 1; cat "$LOGS/test_modules.log"; }
for s in "${SUITES[@]}"; do
  case "$s" in
    regress|isolation) run_installcheck "$s" ;;
    pgtap) run_pgtap ;;
    tap) run_tap ;;
    demo) run_demo ;;
    fuzz) run_fuzz ;;
    valgrind) run_valgrind ;;
    *) echo "unknown suite: $s"; FAILED=$((FAILED + 1)) ;;
  esac
done

if [ "$FAILED" -gt 0 ]; then
  echo "failures: see ${TICKET_LOGS_SHOWN_AS:-$LOGS} (*.diffs, *.log, tap-logs/)"
  grep -hE '^not ok|\.\.\. FAILED|^  FAIL ' "$LOGS"/*.log 2>/dev/null | head -40
  # a TAP test that died has no "not ok": prove's summary names it, and
  # the end of its log says why (CI keeps no logs)
  if [ -f "$LOGS/tap.log" ] && grep -q '^Test Summary Report' "$LOGS/tap.log"; then
    sed -n '/^Test Summary Report/,/^Files=/p' "$LOGS/tap.log" | head -30
    for t in $(sed -n '/^Test Summary Report/,/^Files=/p' "$LOGS/tap.log" | sed -nE 's|^test/t/([^ ]+)\.pl .*|\1|p'); do
      echo "--- the end of $t's log:"
      tail -n 12 "$LOGS/tap-logs/regress_log_$t" 2>/dev/null
    done
  fi
fi
echo "(all suites took $((SECONDS - START)) s)"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
