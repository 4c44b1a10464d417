#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (v4):
# seeds a fresh embedded data dir, serves it on a free port, runs every
# check (scripts/schemathesis.toml says which are tuned and why), stops the
# server. Uses `schemathesis` on PATH, or else installs schemathesis 4 from
# PyPI, once, into a venv of its own ($STRATA_FUZZ_VENV, default
# ~/.cache/strata/schemathesis); needs python3 with venv, and a built strata
# (STRATA_BIN, default target/debug/strata).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
strata=${STRATA_BIN:-${CARGO_TARGET_DIR:-$here/../target}/debug/strata}

schemathesis=$(command -v schemathesis || true)
if [[ -z $schemathesis ]]; then
    venv=${STRATA_FUZZ_VENV:-$HOME/.cache/strata/schemathesis}
    if [[ ! -x $venv/bin/schemathesis ]]; then
        echo "api-fuzz: installing schemathesis 4 into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'
    fi
    schemathesis=$venv/bin/schemathesis
fi
data=$(mktemp -d)
log=$data/serve.log
server=
cleanup() {
    if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$data"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# Only this script's settings: no STRATA_* from the caller's environment.
unset_strata=$(env | sed -n 's/^\(STRATA_[^=]*\)=.*/-u \1/p')
run() { env $unset_strata "$strata" --data-dir "$data/data" "$@"; }

run seed --runs 200 >/dev/null
# A simple command, not the function: $! is then strata itself (env execs
# it), which the clean-up stops; a function in the background would be a
# subshell, and strata would outlive it.
env $unset_strata "$strata" --data-dir "$data/data" serve --listen 127.0.0.1:0 2>"$log" &
server=$!
address=
for _ in $(seq 1 100); do
    address=$(sed -n 's|^strata: listening on http://||p' "$log")
    [[ -n $address ]] && break
    sleep 0.1
done
[[ -n $address ]] || { cat "$log"; echo "strata serve did not start" >&2; exit 1; }

"$schemathesis" --config-file "$here/schemathesis.toml" run "http://$address/openapi.json" \
    --checks all --exclude-checks ensure_resource_availability --seed "${SEED:-1}" "$@"
