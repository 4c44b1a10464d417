#!/usr/bin/env bash
# The dashboard (`strata serve` at /) in a real browser, headless Chromium:
#
#   1. installs Chromium when it is missing (apt-get, as root);
#   2. seeds a fresh data dir on the embedded engines (`strata seed`), starts
#      `strata serve` on a free port, and through the API declares a feature
#      view with features (read fresh and missing), registers a run (a
#      saga), and signs up a user from an unknown city (a dead letter), so
#      that every panel has data;
#   3. loads each page (#/overview, #/runs, #/features, #/queues,
#      #/dead-letters, #/sagas, and a search with a filter that does not
#      parse), checks the rendered DOM for the seeded values, that no API
#      error banner shows and that the browser reported no
#      Content-Security-Policy violation;
#   4. keeps a screenshot (1280x900) and the DOM of each page.
#
# The screenshots and DOM dumps are CI artifacts: .ci/run keeps them in
# dashboard-artifacts/ (ignored by git). Exits non-zero naming every failed
# check.
#
# Usage: scripts/dashboard-test.sh [ARTIFACTS_DIR]   (default dashboard-artifacts)
# Environment: STRATA_BIN (default $CARGO_TARGET_DIR/debug/strata, built
# when missing), CHROMIUM (default /usr/bin/chromium). STRATA_* settings
# are not passed to strata: it runs on the embedded engines in a temporary
# data dir, and leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

artifacts=${1:-dashboard-artifacts}
mkdir -p "$artifacts"
artifacts=$(cd "$artifacts" && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "dashboard-test: $chromium is missing; install Chromium (apt-get install chromium) as root" >&2
    exit 1
  fi
  echo "== installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"
bin=${STRATA_BIN:-$CARGO_TARGET_DIR/debug/strata}
if [ ! -x "$bin" ]; then
  echo "== cargo build --bin strata"
  cargo build --bin strata
fi

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# strata with none of the caller's STRATA_* settings, on its own data dir.
unset_strata=()
for name in $(compgen -e); do
  case "$name" in STRATA_*) unset_strata+=(-u "$name") ;; esac
done
strata() {
  (cd "$root" && exec env "${unset_strata[@]}" "$bin" --data-dir "$work/data" "$@")
}

failures=()
fail() {
  echo "FAIL: $*" >&2
  failures+=("$*")
}

echo "== strata seed"
strata seed >"$work/seed.log" 2>&1 || { cat "$work/seed.log" >&2; exit 1; }

echo "== strata serve"
# Not through the function: a function in the background is a subshell of
# its own, and $! would be that subshell, not strata. Here the subshell
# execs strata, so $! is strata and the cleanup stops it.
(cd "$root" && exec env "${unset_strata[@]}" "$bin" --data-dir "$work/data" serve --listen 127.0.0.1:0) \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!
address=""
for _ in $(seq 1 600); do
  address=$(sed -n 's#^strata: listening on http://##p' "$work/serve.err" | head -n1)
  [ -n "$address" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.err" >&2; echo "dashboard-test: strata serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { echo "dashboard-test: strata serve did not listen within 60 s" >&2; exit 1; }
base="http://$address"
# Listening comes before the services are open: wait until the API answers.
for _ in $(seq 1 600); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

# Sends a JSON request; fails the script on an unexpected status.
call() {
  local method=$1 path=$2 body=${3:-} expect=${4:-2}
  local status
  status=$(curl -sS -o "$work/answer.json" -w '%{http_code}' -X "$method" \
    -H 'content-type: application/json' ${body:+--data "$body"} "$base$path")
  case "$status" in
    "$expect"*) ;;
    *) echo "dashboard-test: $method $path answered $status: $(cat "$work/answer.json")" >&2; exit 1 ;;
  esac
}

echo "== data for every panel"
call PUT /v1/feature-views/dash_activity \
  '{"entity":"user","features":[{"name":"clicks_7d","type":"int"},{"name":"avg_basket","type":"float"}],"ttl_seconds":3600,"description":"dashboard test"}'
call PUT /v1/features/dash_activity/u-1 '{"features":{"clicks_7d":12,"avg_basket":31.5}}'
call GET /v1/features/dash_activity/u-1   # two fresh values
call GET /v1/features/dash_activity/u-2   # two missing ones
call POST /v1/runs '{"dataset":"fraud-train-v1","model_id":"dash-probe-v1","model_name":"dash-probe","framework":"sklearn","tags":{"team":"ops"}}'
call POST /v1/users '{"id":"dash-eve","email":"eve@example.com","name":"Eve","city":"Atlantis"}'
# The signup is refused by its consumer: wait for its dead letter.
dead=""
for _ in $(seq 1 300); do
  call GET '/v1/dead-letters?queue=onboarding'
  if grep -q 'Atlantis' "$work/answer.json"; then dead=yes; break; fi
  sleep 0.1
done
[ -n "$dead" ] || fail "setup: no dead letter for the signup from Atlantis within 30 s"

# Cache lookups while a page is open, for the hit-ratio chart.
traffic() {
  for _ in $(seq 1 150); do
    curl -s "$base/v1/features/dash_activity/u-1" >/dev/null || true
    curl -s "$base/v1/runs/fraud-detector-v1" >/dev/null || true
    sleep 0.05
  done
}

# Headless Chromium with a profile of its own, thrown away after.
chrome() {
  local profile rc=0
  profile=$(mktemp -d -p "$work")
  timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --enable-logging=stderr --v=0 \
    --user-data-dir="$profile" --virtual-time-budget=5000 "$@" || rc=$?
  rm -rf "$profile"
  return "$rc"
}

browse() { # NAME URL-HASH: dumps the DOM and takes a screenshot
  local name=$1 hash=$2
  if ! chrome --dump-dom "$base/$hash" >"$artifacts/$name.html" 2>"$work/$name.dom.log"; then
    fail "$name: chromium could not load $base/$hash"
    tail -n 20 "$work/$name.dom.log" >&2
  fi
  rm -f "$artifacts/$name.png"
  if ! chrome --window-size=1280,900 --screenshot="$artifacts/$name.png" "$base/$hash" \
    >/dev/null 2>"$work/$name.png.log"; then
    fail "$name: chromium could not take a screenshot"
  fi
  [ -s "$artifacts/$name.png" ] || fail "$name: no screenshot"
  if grep -qi 'Content.Security.Policy' "$work/$name.dom.log" "$work/$name.png.log"; then
    fail "$name: the browser reported a Content-Security-Policy violation: $(grep -hi 'Content.Security.Policy' "$work/$name.dom.log" "$work/$name.png.log" | head -n1)"
  fi
  # The DOM on one line, for the checks below.
  tr -d '\n' <"$artifacts/$name.html" >"$work/$name.flat"
  if ! grep -q 'id="banner" class="banner" hidden' "$work/$name.flat"; then
    fail "$name: the page shows an API error: $(grep -o 'id="banner"[^<]*' "$work/$name.flat")"
  fi
}

# Passes when the DOM of page NAME (or, with a table id, that table) has TEXT.
expect() { # NAME WHAT TEXT [TABLE-ID]
  local name=$1 what=$2 text=$3 table=${4:-}
  local scope="$work/$name.flat"
  if [ -n "$table" ]; then
    grep -o "<table id=\"$table\">.*" "$work/$name.flat" | sed 's#</table>.*##' >"$work/$name.$table" || true
    scope="$work/$name.$table"
  fi
  grep -qF -- "$text" "$scope" || fail "$name: $what: \`$text\` not found${table:+ in table #$table}"
}

echo "== pages"
traffic &
traffic_pid=$!
browse overview '#/overview'
wait "$traffic_pid" || true
expect overview "engine status" '<td>relational</td><td>sqlite</td><td><span class="pill ok">up</span>' engines
expect overview "round trip" ' ms</td>' engines
expect overview "the snapshot's status" 'id="ops-status">ok<'
expect overview "the feature views cache" '<td>feature_views</td>' caches
expect overview "the hit-ratio chart" 'id="cache-svg"'
expect overview "dead letters at a glance" '<dt>dead letters</dt><dd>1</dd>'

browse runs '#/runs'
expect runs "the leaderboard's leader" '<td>1</td><td>fraud-detector-v1</td><td>0.9845</td>' leaderboard
expect runs "the registered run" '<td>dash-probe-v1</td><td>sklearn</td><td>running</td>' runs
expect runs "a seeded run" '<td>recommender-model</td>' runs

browse runs-search "#/runs?filter=framework%20IN%20('sklearn')"
expect runs-search "the filtered run" '<td>dash-probe-v1</td>' runs
if grep -qF 'fraud-detector-v2' "$work/runs-search.runs"; then
  fail "runs-search: the filter framework IN ('sklearn') let fraud-detector-v2 (tensorflow) through"
fi
expect runs-search "the filter in the search box" 'framework IN'

browse runs-bad-filter '#/runs?filter=accuracy%20%3E'
expect runs-bad-filter "the filter's error" '400 invalid_input:'
expect runs-bad-filter "where the filter breaks" 'at column'

browse features '#/features'
expect features "the declared view" '<td>dash_activity</td><td>user</td><td>2</td><td>3,600 s</td>' views
# Its reads (two fresh, more while the overview was open; two missing):
# none stale.
expect features "its stale share" '<td>2</td><td>0.0 %</td>' views

browse queues '#/queues'
expect queues "the onboarding queue with its dead letter" '<td>onboarding</td><td>0</td>' queues
expect queues "the read-model queue" '<td>read-model</td>' queues
expect queues "the outbox backlog" 'outbox backlog'

browse dead-letters '#/dead-letters'
expect dead-letters "the signup's dead letter" 'Atlantis' dead-letters
expect dead-letters "its queue and class" '<td>onboarding</td><td>invalid</td>' dead-letters
expect dead-letters "the queue to replay" '<option value="onboarding">onboarding</option>'

browse sagas '#/sagas'
expect sagas "the registration's saga" '<td>register_run</td><td>dash-probe-v1</td><td><span class="pill ok">completed</span>' sagas
expect sagas "the counts by state" '<dt>completed</dt><dd>1</dd>'

echo "== artifacts in $artifacts"
ls "$artifacts"
if [ ${#failures[@]} -gt 0 ]; then
  echo "dashboard-test: ${#failures[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "dashboard-test: every page passed"
