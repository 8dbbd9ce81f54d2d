#!/usr/bin/env bash
# Build the libFuzzer harnesses (clang, AddressSanitizer + UndefinedBehavior
# Sanitizer) for the parsers of outside input and run each for a while.
#   test/fuzz/run_fuzz.sh [seconds-per-target]     (default 10)
# Prints one TAP line per target ("ok" = built and no finding).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECS=${1:-10}
OUT=$(mktemp -d /tmp/ticket_fuzz.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
PGINC=$(pg_config --includedir-server)
PGLIB=$(pg_config --pkglibdir)
CFLAGS=(-g -O1 -Wno-ignored-attributes -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -I"$ROOT/include" -I"$PGINC" -DFRONTEND)
LIBS=("$PGLIB/libpgcommon.a" "$PGLIB/libpgport.a" -lcrypto -lm)
declare -A SRC=(
  [redis_url]="$ROOT/bgworker/stream/redis_url.c"
  [kinesis_response]="$ROOT/bgworker/stream/kinesis_response.c"
  [event]="$ROOT/bgworker/stream/event.c"
  [kpl]="$ROOT/bgworker/stream/kpl_aggregate.c"
)
n=0
echo "1..${#SRC[@]}"
for t in redis_url kinesis_response event kpl; do
  n=$((n + 1))
  if ! clang-14 "${CFLAGS[@]}" "$HERE/fuzz_$t.c" ${SRC[$t]} "${LIBS[@]}" -o "$OUT/fuzz_$t" >"$OUT/$t.build" 2>&1; then
    echo "not ok $n - fuzz $t: build failed"; sed 's/^/# /' "$OUT/$t.build" | head -20; continue
  fi
  mkdir -p "$OUT/corpus_$t"
  cp "$HERE/corpus/$t/"* "$OUT/corpus_$t/"
  if (cd "$OUT" && LSAN_OPTIONS=suppressions="$HERE/lsan.supp" "./fuzz_$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=1024 \
        "$OUT/corpus_$t" >"$OUT/$t.log" 2>&1); then
    runs=$(grep -oE 'Done [0-9]+ runs' "$OUT/$t.log" | grep -oE '[0-9]+')
    echo "ok $n - fuzz $t: ${runs:-?} runs in ${SECS}s under ASan+UBSan, no finding"
  else
    echo "not ok $n - fuzz $t: finding (crash, leak, UB or timeout)"
    grep -E 'ERROR|SUMMARY|runtime error' "$OUT/$t.log" | head -10 | sed 's/^/# /'
    mkdir -p "$ROOT/test/logs"; cp "$OUT"/crash-* "$OUT"/leak-* "$OUT"/timeout-* "$ROOT/test/logs/" 2>/dev/null
  fi
done
