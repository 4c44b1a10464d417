#!/usr/bin/env bash
# The two-instance run of docs/scaling.md: two `strata serve` on the full
# profile sharing one sandbox (a PostgreSQL database, MongoDB database,
# Redis key prefix and queue prefix of their own, removed at the end), then
# the bench's HTTP workloads against one instance alone, then against both
# at once (one bench process per instance).
#
#   scripts/two-instances.sh [OUT_DIR]     (default ./two-instances)
#
# Needs the services (scripts/services.sh up) and a release build,
# STRATA_BIN (default target/release/strata). Writes alone.{md,json} and
# both-A.{md,json}, both-B.{md,json} to OUT_DIR.
set -euo pipefail
HERE="$(dirname "$0")"

BIN="${STRATA_BIN:-target/release/strata}"
OUT="${1:-two-instances}"
[[ -x $BIN ]] || { echo "two-instances: no strata binary at $BIN (cargo build --release, or set STRATA_BIN)" >&2; exit 2; }
bash "$HERE/services.sh" status >/dev/null || { echo "two-instances: the services are not all up: bash scripts/services.sh up" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT/sandbox.in"
# shellcheck source=scripts/lib/sandbox.sh
source "$HERE/lib/sandbox.sh"

A="" B="" SANDBOX_PID=""
exec {SANDBOX_IN}>/dev/null   # the sandbox's FIFO once there is one
cleanup() {
  kill $A $B 2>/dev/null || true
  close_sandbox "$OUT" || echo "two-instances: the sandbox may be left: $(cat "$OUT/sandbox.err")" >&2
  rm -f "$OUT/sandbox.in"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

open_sandbox "$BIN" "$OUT" || exit 1
export STRATA_LOG=warn

# Standard output to a file: a background process holding the pipe of
# `$(...)` would keep it open.
start() {
  env "${SANDBOX_ENV[@]}" "$BIN" --profile full --data-dir "$DATA_DIR" serve --listen 127.0.0.1:0 \
    >/dev/null 2>"$OUT/$1.err" {SANDBOX_IN}>&- &
  echo $!
}
addr() {
  local deadline=$((SECONDS + 30)) line
  until line=$(grep -o 'listening on http://[0-9.:]*' "$OUT/$1.err"); do
    ((SECONDS < deadline)) || { cat "$OUT/$1.err" >&2; exit 1; }
    sleep 0.2
  done
  echo "${line#listening on }"
}
A=$(start A)
B=$(start B)
URL_A=$(addr A)
URL_B=$(addr B)
echo "two-instances: A $URL_A, B $URL_B" >&2

BENCH=(bench --only http --seconds 3 --rounds 2 --sweep none)
"$BIN" "${BENCH[@]}" --url "$URL_A" --data-dir "$OUT/bench-alone" \
  --json-file "$OUT/alone.json" --markdown "$OUT/alone.md" >"$OUT/alone.out" 2>&1
"$BIN" "${BENCH[@]}" --url "$URL_A" --data-dir "$OUT/bench-A" \
  --json-file "$OUT/both-A.json" --markdown "$OUT/both-A.md" >"$OUT/both-A.out" 2>&1 {SANDBOX_IN}>&- &
BA=$!
"$BIN" "${BENCH[@]}" --url "$URL_B" --data-dir "$OUT/bench-B" \
  --json-file "$OUT/both-B.json" --markdown "$OUT/both-B.md" >"$OUT/both-B.out" 2>&1 {SANDBOX_IN}>&- &
BB=$!
wait $BA
wait $BB
rm -rf "$OUT/bench-alone" "$OUT/bench-A" "$OUT/bench-B"
grep -h '^| http' "$OUT/alone.md" | sed 's/^/alone  /'
grep -h '^| http' "$OUT/both-A.md" | sed 's/^/both A /'
grep -h '^| http' "$OUT/both-B.md" | sed 's/^/both B /'
