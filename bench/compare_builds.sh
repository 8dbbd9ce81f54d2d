#!/usr/bin/env bash
# The cost of a change to the hot path: the same reservation benchmark on
# an older build (a git revision) and on the working tree, builds
# installed in turn, rounds interleaved, medians, the ratio to the
# INSERT-only ceiling measured in the same round (this machine is shared
# and noisy; the ratio cancels most of it).
#
#   bench/compare_builds.sh REV [--rounds N] [--seconds N] [--clients N]
#
# Needs root (it installs each build in turn) and leaves the working
# tree's build installed.  Clusters run as the unprivileged user on a
# temporary directory, fsync on, synchronous_commit off (the server's own
# CPU cost, not the disk's).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REV=${1:?usage: $0 REV [--rounds N] [--seconds N] [--clients N]}; shift
ROUNDS=5 SECS=8 CLIENTS=16
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "compare_builds: run as root (installs builds)"; exit 1; }
# shellcheck source=test/lib/common.sh
source "$ROOT/test/lib/common.sh"
USER_=${TICKET_TEST_USER:-postgres}
PGBIN=$(pg_config --bindir)
WORK=$(mktemp -d /tmp/ticket_ab.XXXXXX)
chown "$USER_" "$WORK"
cleanup() {
  runuser -u "$USER_" -- "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  git -C "$ROOT" worktree remove --force "$WORK/old" >/dev/null 2>&1 || true
  make -s -C "$ROOT" install >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

git -C "$ROOT" worktree add --detach "$WORK/old" "$REV" >/dev/null 2>&1
make -s -C "$WORK/old" >/dev/null 2>&1
make -s -C "$ROOT" >/dev/null 2>&1
printf 'SELECT ticket_reserve(1, 1, %s);\n' "'bench'" >"$WORK/reserve.sql"
printf 'INSERT INTO sales (item_id, qty, holder) VALUES (1, 1, %s);\n' "'bench'" >"$WORK/insert.sql"
chown "$USER_" "$WORK"/*.sql

run() {	# run <build dir> -> "reserve_tps insert_tps"
  make -s -C "$1" install >/dev/null 2>&1
  rm -rf "$WORK/data"
  runuser -u "$USER_" -- bash -c "
    set -e
    '$PGBIN/initdb' -D '$WORK/data' -A trust -U postgres --no-sync >/dev/null
    cat >>'$WORK/data/postgresql.conf' <<EOF
shared_preload_libraries = 'ticket_ext'
listen_addresses = ''
unix_socket_directories = '$WORK'
port = 5999
shared_buffers = 512MB
max_wal_size = 10GB
synchronous_commit = off
wal_level = logical
log_min_messages = warning
EOF
    '$PGBIN/pg_ctl' -D '$WORK/data' -l '$WORK/log' -w start >/dev/null
    psql -X -q -h '$WORK' -p 5999 -d postgres -c 'CREATE EXTENSION ticket_ext' \
      -c \"SELECT ticket_ext.create_item(1, 1000000000000)\" \
      -c 'CREATE TABLE sales (sale_id bigserial PRIMARY KEY, item_id bigint NOT NULL, qty int NOT NULL, holder text, status text NOT NULL DEFAULT '\''held'\'', created_at timestamptz NOT NULL DEFAULT now())' >/dev/null
    for f in reserve insert; do
      psql -X -q -h '$WORK' -p 5999 -d postgres -c CHECKPOINT >/dev/null
      '$PGBIN/pgbench' -n -M prepared -h '$WORK' -p 5999 -c $CLIENTS -j 2 -T $SECS -f '$WORK/'\$f.sql postgres 2>/dev/null |
        sed -nE 's/^tps = ([0-9.]+).*/\1/p' | tr '\n' ' '
    done
    '$PGBIN/pg_ctl' -D '$WORK/data' -m fast stop >/dev/null"
}

echo "compare_builds: $REV vs working tree, $ROUNDS interleaved rounds of ${SECS}s, $CLIENTS clients, synchronous_commit off"
old_r=() old_i=() new_r=() new_i=()
for r in $(seq "$ROUNDS"); do
  read -r a b <<<"$(run "$WORK/old")"; old_r+=("$a"); old_i+=("$b")
  read -r c d <<<"$(run "$ROOT")"; new_r+=("$c"); new_i+=("$d")
  printf '  round %d: old reserve %s insert %s | new reserve %s insert %s\n' "$r" "$a" "$b" "$c" "$d"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratios() {	# per-round reserve/insert ratios
  local -n rr=$1 ii=$2; local k
  for k in "${!rr[@]}"; do awk -v a="${rr[$k]}" -v b="${ii[$k]}" 'BEGIN {printf "%.3f\n", a / b}'; done
}
mo=$(median "${old_r[@]}") mn=$(median "${new_r[@]}")
ro=$(median $(ratios old_r old_i)) rn=$(median $(ratios new_r new_i))
printf 'medians: reserve tps old %s new %s (new/old %.2fx); reserve/INSERT-only ratio old %s new %s\n' \
  "$mo" "$mn" "$(awk -v a="$mn" -v b="$mo" 'BEGIN {print a / b}')" "$ro" "$rn"
