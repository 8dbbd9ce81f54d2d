# Helpers shared by test/run_all.sh, the demo and the benchmarks.
# shellcheck shell=bash

# reexec_unprivileged <root> <script> [args...]
# initdb refuses to run as root: when root, re-run <script> as a plain user
# (TICKET_TEST_USER, default postgres) on a private copy of the tree (a CI
# checkout may not be readable by other users), then exit with its status.
# Logs under test/logs are copied back on failure or with TICKET_KEEP_LOGS.
reexec_unprivileged() {
  local root=$1 script=$2; shift 2
  [ "$(id -u)" = 0 ] || return 0
  local user=${TICKET_TEST_USER:-postgres} work rc
  id "$user" >/dev/null 2>&1 || useradd --system --no-create-home "$user"
  work=$(mktemp -d /tmp/ticket_ext_work.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  # (node_modules is copied too: the checkout may be unreadable to $user)
  tar -C "$root" --exclude=./.git --exclude=./test/logs -cf - . | tar -C "$work" -xf -
  chown -R "$user" "$work"
  cd "$work" || exit 1
  runuser -u "$user" -- env PATH="$PATH" TICKET_KEEP_LOGS="${TICKET_KEEP_LOGS:-}" TICKET_TAP_TESTS="${TICKET_TAP_TESTS:-}" \
    TICKET_MATRIX_ONLY="${TICKET_MATRIX_ONLY:-}" SOAK_SECONDS="${SOAK_SECONDS:-}" SOAK_SEED="${SOAK_SEED:-}" \
    TICKET_LOGS_SHOWN_AS="$root/test/logs" TERM="${TERM:-dumb}" bash "$work/$script" "$@"
  rc=$?
  if { [ $rc -ne 0 ] || [ -n "${TICKET_KEEP_LOGS:-}" ]; } && [ -d "$work/test/logs" ]; then
    rm -rf "$root/test/logs"; cp -r "$work/test/logs" "$root/test/logs"
  fi
  exit $rc
}

# A free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
  perl -MIO::Socket::INET -e \
    'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0) or die; print $s->sockport, "\n";'
}

# cluster_start <dir> <port> [extra postgresql.conf lines...]
# initdb into <dir>/data, listen on 127.0.0.1:<port> and a socket in <dir>.
cluster_start() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  initdb -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log"; return 1; }
  {
    cat "$ROOT/test/conf/ticket_ext.conf"
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/data/postgresql.conf"
  pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
    cat "$dir/server.log"; return 1; }
}

cluster_stop() {
  pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1
  [ -n "${LOGS:-}" ] && cp "$1/server.log" "$LOGS/$(basename "$1")-server.log" 2>/dev/null
  return 0
}

# count_tap <suite> <log>: count "ok"/"not ok" lines of a TAP stream; a
# stream that ends badly (no plan, died) counts as one more failure.
count_tap() {
  local suite=$1 log=$2 ok notok bad=0
  ok=$(grep -cE '^\s*ok [0-9]+' "$log")
  notok=$(grep -cE '^\s*not ok [0-9]+' "$log")
  # a test file that died after its last "ok" has no "not ok": each such
  # file in prove's summary (no "Failed test" line of its own) counts once
  bad=$(sed -n '/^Test Summary Report/,/^Files=/p' "$log" | awk '
    /^[^ ]/ && !/^(Test Summary Report|-+|Files=)/ { if (f && !failed) n++; f = 1; failed = 0; next }
    /Failed tests?:/ { failed = 1 }
    END { if (f && !failed) n++; print n + 0 }')
  if grep -qE '^Result: FAIL|Dubious|Bad plan|No plan found|Parse errors' "$log"; then
    [ "$notok" -eq 0 ] && [ "$bad" -eq 0 ] && bad=1
  fi
  grep -qE '^Result: (PASS|FAIL)' "$log" || bad=1
  # planned tests that never ran are failures too
  local missing
  missing=$(sed -nE 's/.*You planned ([0-9]+) tests? but ran ([0-9]+).*/\1 \2/p' "$log" |
            awk '{ s += $1 - $2 } END { print s + 0 }')
  [ "$missing" -gt 0 ] && bad=$((bad + missing))
  record "$suite" "$ok" $((notok + bad))
}

# regress_sanity <log> <suite>: pg_regress itself failing (no summary
# line) is a failure even when no test line says FAILED.
regress_sanity() {
  grep -qE 'All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed' "$1" || record "$2(run)" 0 1
}
