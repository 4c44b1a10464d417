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

BIN="${STRATA_BIN:-target/release/strata}"
OUT="${1:-two-instances}"
[[ -x $BIN ]] || { echo "two-instances: no strata binary at $BIN (cargo build --release, or set STRATA_BIN)" >&2; exit 2; }
bash scripts/services.sh status >/dev/null || { echo "two-instances: the services are not all up: bash scripts/services.sh up" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT/sandbox.in"
mkfifo "$OUT/sandbox.in"

A="" B="" SANDBOX=""
exec {HOLD}>/dev/null   # the sandbox's FIFO once there is one
cleanup() {
  kill $A $B 2>/dev/null || true
  exec {HOLD}>&- 2>/dev/null || true   # the sandbox removes itself when its input ends
  [[ -z $SANDBOX ]] || wait "$SANDBOX" 2>/dev/null || true
  rm -f "$OUT/sandbox.in"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bench's sandbox (`strata chaos-sandbox`, as scripts/chaos.sh uses it),
# held open by this script's end of a FIFO.
"$BIN" --profile full chaos-sandbox <"$OUT/sandbox.in" >"$OUT/sandbox.out" 2>"$OUT/sandbox.err" &
SANDBOX=$!
exec {HOLD}>&-
exec {HOLD}>"$OUT/sandbox.in"
deadline=$((SECONDS + 60))
until grep -q '^READY$' "$OUT/sandbox.out" 2>/dev/null; do
  if ((SECONDS >= deadline)) || ! kill -0 "$SANDBOX" 2>/dev/null; then
    echo "two-instances: the sandbox did not open: $(cat "$OUT/sandbox.err")" >&2; exit 1
  fi
  sleep 0.2
done
SANDBOX_ENV=()
while IFS='=' read -r name value; do
  case "$name" in
    DATA_DIR) DATA_DIR=$value ;;
    STRATA_*) SANDBOX_ENV+=("$name=$value") ;;
  esac
done <"$OUT/sandbox.out"
export STRATA_LOG=warn

# Standard output to a file: a background process holding the pipe of
# `$(...)` would keep it open.
start() {
  env "${SANDBOX_ENV[@]}" "$BIN" --profile full --data-dir "$DATA_DIR" serve --listen 127.0.0.1:0 \
    >/dev/null 2>"$OUT/$1.err" {HOLD}>&- &
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
  --json-file "$OUT/both-A.json" --markdown "$OUT/both-A.md" >"$OUT/both-A.out" 2>&1 {HOLD}>&- &
BA=$!
"$BIN" "${BENCH[@]}" --url "$URL_B" --data-dir "$OUT/bench-B" \
  --json-file "$OUT/both-B.json" --markdown "$OUT/both-B.md" >"$OUT/both-B.out" 2>&1 {HOLD}>&- &
BB=$!
wait $BA
wait $BB
rm -rf "$OUT/bench-alone" "$OUT/bench-A" "$OUT/bench-B"
grep -h '^| http' "$OUT/alone.md" | sed 's/^/alone  /'
grep -h '^| http' "$OUT/both-A.md" | sed 's/^/both A /'
grep -h '^| http' "$OUT/both-B.md" | sed 's/^/both B /'
