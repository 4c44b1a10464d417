#!/usr/bin/env bash
# Fault injection: proves that strata loses no acknowledged write while its
# processes are killed and its services restarted (docs/operations.md,
# "Fault injection").
#
#   scripts/chaos.sh [--profile full|embedded] [--seconds N] [--keep]
#
# full (default): in a sandbox of its own (`strata chaos-sandbox`: its own
# PostgreSQL database, MongoDB database, Redis key prefix and queue names,
# as `strata bench` uses), two `strata serve --no-worker` and two
# `strata worker`; a steady load (scripts/chaos/load.py: registrations,
# feature writes, events and signups, whose onboarding and first
# prediction run as tasks on the workers) for N seconds (default 60) while, one at a time, a serve and a worker are killed with
# SIGKILL and restarted, and Redis, RabbitMQ, MongoDB and PostgreSQL are
# each stopped for a few seconds (scripts/services.sh stop/start). It STOPS
# THE SHARED SERVICES: never run it beside other tests using them.
#
# embedded: one `strata serve` on a temporary data dir, killed with SIGKILL
# mid-load and started again; the durable engines (SQLite, the document
# store) must hold every acknowledged registration.
#
# Then it waits for the system to settle and checks every acknowledged
# write; the last line is `acknowledged N, lost N, duplicated N, orphaned N`
# and the exit status is 1 on any loss, duplicate or orphan. Everything it
# made is removed at the end, also on failure (--keep keeps the logs).
# STRATA_BIN names the binary (default $CARGO_TARGET_DIR/debug/strata,
# built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=full
SECONDS_OF_LOAD=60
KEEP=0
while (($#)); do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --seconds) SECONDS_OF_LOAD="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--profile full|embedded] [--seconds N] [--keep]" >&2; exit 2 ;;
  esac
done
[[ $PROFILE == full || $PROFILE == embedded ]] || { echo "chaos: --profile full|embedded" >&2; exit 2; }

log() { printf 'chaos: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/sandbox.sh
source scripts/lib/sandbox.sh

TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
BIN="${STRATA_BIN:-$TARGET/debug/strata}"
if [[ ! -x $BIN ]]; then
  log "building $BIN"
  CARGO_TARGET_DIR="$TARGET" cargo build --bin strata >&2
fi

WORK="$(mktemp -d /tmp/strata-chaos.XXXXXX)"
PREFIX="chaos$$"
declare -A PIDS=()      # name -> pid of the strata processes started here
declare -A PORTS=()     # serve name -> port
STOPPED=""              # a service this script stopped and has not started
SANDBOX_PID=""
LOAD_PID=""
exec {SANDBOX_IN}>/dev/null   # the sandbox's pipe once there is one
STATUS=1

# Fast take-over of sagas whose process was killed, so the run settles in
# seconds rather than minutes.
export STRATA_SAGAS__LEASE=2s STRATA_SAGAS__SWEEP_INTERVAL=500ms STRATA_SAGAS__RETRY__MAX_ELAPSED=1s
export STRATA_LOG="${STRATA_LOG:-warn}"
ARGS=()
[[ $PROFILE == full ]] && ARGS+=(--profile full)

cleanup() {
  local code=$?
  for name in "${!PIDS[@]}"; do
    kill -9 "${PIDS[$name]}" 2>/dev/null || true
    wait "${PIDS[$name]}" 2>/dev/null || true
  done
  # A load still running (the script failed mid-run) would never end.
  if [[ -n $LOAD_PID ]]; then
    kill "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  if [[ -n $STOPPED ]]; then
    log "starting $STOPPED again"
    bash scripts/services.sh start "$STOPPED" >&2 {SANDBOX_IN}>&- || true
  fi
  if [[ -n $SANDBOX_PID ]] && ! close_sandbox "$WORK"; then
    log "the sandbox may be left: $(cat "$WORK/sandbox.err")"
  fi
  if ((KEEP)) || ((code != 0)); then
    log "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts `strata serve` NAME (on PORT if given, else any) and waits for it.
start_serve() {
  local name=$1 port=${2:-0}; shift 2 || shift $#
  local err="$WORK/$name.log"
  : >>"$err"
  local mark; mark=$(wc -l <"$err")
  "$BIN" "${ARGS[@]}" --data-dir "$DATA_DIR" serve --listen "127.0.0.1:$port" "$@" 2>>"$err" {SANDBOX_IN}>&- &
  PIDS[$name]=$!
  local deadline=$((SECONDS + 60)) addr=""
  until [[ -n $addr ]]; do
    addr=$(tail -n +"$((mark + 1))" "$err" | grep -o 'listening on http://[0-9.:]*' | head -n1 | sed 's|.*http://||') || true
    if ((SECONDS >= deadline)) || ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      if [[ -z $addr ]]; then log "$name did not start:"; tail -n 20 "$err" >&2; exit 1; fi
    fi
    [[ -n $addr ]] || sleep 0.2
  done
  PORTS[$name]=${addr##*:}
}

start_worker() {
  local name=$1
  "$BIN" "${ARGS[@]}" --data-dir "$DATA_DIR" worker 2>>"$WORK/$name.log" {SANDBOX_IN}>&- &
  PIDS[$name]=$!
}

kill9() {
  local name=$1
  log "kill -9 $name (pid ${PIDS[$name]})"
  kill -9 "${PIDS[$name]}" 2>/dev/null || true
  wait "${PIDS[$name]}" 2>/dev/null || true
  unset "PIDS[$name]"
}

service_outage() {
  local service=$1 down=$2
  log "stopping $service for ${down}s"
  STOPPED=$service
  # The services must not inherit the sandbox's pipe, or it never closes.
  bash scripts/services.sh stop "$service" >&2 {SANDBOX_IN}>&-
  sleep "$down"
  bash scripts/services.sh start "$service" >&2 {SANDBOX_IN}>&-
  STOPPED=""
}

if [[ $PROFILE == full ]]; then
  bash scripts/services.sh status >/dev/null || { log "the services are not all up: bash scripts/services.sh up"; exit 1; }
  # The sandbox goes when this script ends, however it ends.
  open_sandbox "$BIN" "$WORK" || exit 1
  for variable in "${SANDBOX_ENV[@]}"; do export "${variable?}"; done
  log "sandbox ${STRATA_PIPELINES__PREFIX}"
  "$BIN" "${ARGS[@]}" --data-dir "$DATA_DIR" migrate schema >/dev/null 2>>"$WORK/migrate.log"
  # Customers with orders and a trained analytics model, so that each
  # signup's first prediction task can score the new user.
  "$BIN" "${ARGS[@]}" --data-dir "$DATA_DIR" seed --users 200 --events 3000 >/dev/null 2>>"$WORK/migrate.log"
  "$BIN" "${ARGS[@]}" --data-dir "$DATA_DIR" analytics train >/dev/null 2>>"$WORK/migrate.log"

  start_serve serve-a 0 --no-worker
  start_serve serve-b 0 --no-worker
  start_worker worker-1
  start_worker worker-2
  URLS="http://127.0.0.1:${PORTS[serve-a]},http://127.0.0.1:${PORTS[serve-b]}"
  log "serving on $URLS; load for ${SECONDS_OF_LOAD}s"
  python3 scripts/chaos/load.py load --urls "$URLS" --log "$WORK/acks.jsonl" --prefix "$PREFIX" \
    --seconds "$SECONDS_OF_LOAD" --until "$WORK/faults.done" 2>>"$WORK/load.log" {SANDBOX_IN}>&- &
  LOAD_PID=$!

  PAUSE=3
  sleep "$PAUSE"
  kill9 serve-a; start_serve serve-a "${PORTS[serve-a]}" --no-worker; sleep "$PAUSE"
  kill9 worker-1; start_worker worker-1; sleep "$PAUSE"
  service_outage redis 3; sleep "$PAUSE"
  service_outage rabbitmq 3; sleep "$PAUSE"
  service_outage mongo 3; sleep "$PAUSE"
  service_outage postgres 3; sleep "$PAUSE"
  kill9 serve-b; start_serve serve-b "${PORTS[serve-b]}" --no-worker
  kill9 worker-2; start_worker worker-2
  touch "$WORK/faults.done"
  log "faults done; waiting for the load to end"
  wait "$LOAD_PID"
  LOAD_PID=""
  python3 scripts/chaos/load.py check --urls "$URLS" --log "$WORK/acks.jsonl" --prefix "$PREFIX" {SANDBOX_IN}>&- \
    --deadline 180 --read-model \
    --strata "$(printf '%q ' "$BIN" "${ARGS[@]}" --data-dir "$DATA_DIR")" --pipelines-prefix "$STRATA_PIPELINES__PREFIX"
  STATUS=$?
else
  DATA_DIR="$WORK/data"
  start_serve serve 0
  URL="http://127.0.0.1:${PORTS[serve]}"
  log "serving on $URL; load for ${SECONDS_OF_LOAD}s"
  python3 scripts/chaos/load.py load --urls "$URL" --log "$WORK/acks.jsonl" --prefix "$PREFIX" \
    --seconds "$SECONDS_OF_LOAD" --until "$WORK/faults.done" --kinds runs 2>>"$WORK/load.log" &
  LOAD_PID=$!
  sleep "$(awk "BEGIN {print $SECONDS_OF_LOAD / 2}")"
  kill9 serve
  start_serve serve "${PORTS[serve]}"
  touch "$WORK/faults.done"
  wait "$LOAD_PID"
  LOAD_PID=""
  python3 scripts/chaos/load.py check --urls "$URL" --log "$WORK/acks.jsonl" --prefix "$PREFIX" \
    --deadline 60 --kinds runs
  STATUS=$?
fi
exit "$STATUS"
