# Sourced by scripts/chaos.sh and scripts/two-instances.sh: the bench's
# sandbox on the full profile (`strata chaos-sandbox`: its own PostgreSQL
# database, MongoDB database, Redis key prefix and queue prefix, the schema
# applied), held open by the caller's end of a FIFO on fd $SANDBOX_IN, so
# that it is removed when the caller ends, however it ends.
#
#   open_sandbox BIN DIR   starts it with its files in DIR and waits until it
#                          is ready; sets SANDBOX_PID, DATA_DIR and SANDBOX_ENV
#                          (its STRATA_* variables, as NAME=VALUE)
#   close_sandbox DIR      ends its input and waits until it has removed
#                          itself; fails when it did not say so
#
# A caller first opens `exec {SANDBOX_IN}>/dev/null`, and closes the fd in
# every process it starts (`{SANDBOX_IN}>&-`): a child holding it would keep
# the sandbox alive.

open_sandbox() {
  local bin=$1 dir=$2 name value
  local deadline=$((SECONDS + 60))
  mkfifo "$dir/sandbox.in"
  "$bin" --profile full chaos-sandbox <"$dir/sandbox.in" >"$dir/sandbox.out" 2>"$dir/sandbox.err" &
  SANDBOX_PID=$!
  exec {SANDBOX_IN}>&-
  exec {SANDBOX_IN}>"$dir/sandbox.in"
  until grep -q '^READY$' "$dir/sandbox.out" 2>/dev/null; do
    if ((SECONDS >= deadline)) || ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
      echo "sandbox: did not open: $(cat "$dir/sandbox.err")" >&2
      return 1
    fi
    sleep 0.2
  done
  SANDBOX_ENV=()
  while IFS='=' read -r name value; do
    case "$name" in
      DATA_DIR) DATA_DIR=$value ;;
      STRATA_*) SANDBOX_ENV+=("$name=$value") ;;
    esac
  done <"$dir/sandbox.out"
}

close_sandbox() {
  [[ -n ${SANDBOX_PID:-} ]] || return 0
  exec {SANDBOX_IN}>&-
  wait "$SANDBOX_PID" 2>/dev/null || true
  SANDBOX_PID=""
  grep -q '^REMOVED$' "$1/sandbox.out"
}
