#!/usr/bin/env bash
# Starts, stops and reports the four real services strata's full profile
# uses, on loopback, without Docker or systemd:
#
#   PostgreSQL 15  127.0.0.1:55432  user strata / strata-dev, database strata
#                                   (plain and TLS on the same port)
#   MongoDB        127.0.0.1:57017  user strata / strata-dev (authSource admin)
#                  127.0.0.1:57018  the same over TLS only (a second server,
#                                   with its own data and the same user)
#                  (SecantusDB, a MongoDB-compatible server from PyPI: the real
#                   mongod is not packaged for Debian 12)
#   Redis 7        127.0.0.1:56379  user default / strata-dev
#                  127.0.0.1:56380  the same server over TLS only
#   RabbitMQ       127.0.0.1:55672  user strata / strata-dev, vhost strata
#                  127.0.0.1:55671  the same broker over TLS only (amqps)
#
# The plain ports match config/full.toml and docker-compose.yml. For TLS,
# `up` (and `start NAME`) first creates, once, a private CA and a server
# certificate for localhost and 127.0.0.1 in $STATE/tls: ca.pem (what
# clients trust), server.pem, server.key. No client certificate is asked
# for. tests/tls_backends.rs connects to every service over TLS with it
# (docs/engines.md, "TLS to the services").
#
#   scripts/services.sh up       install what is missing, start what is down
#   scripts/services.sh down     stop exactly what `up` started (by pid file)
#   scripts/services.sh status   one line per service
#   scripts/services.sh stop NAME    stop one service (postgres, mongo, redis,
#                                    rabbitmq), keeping its data
#   scripts/services.sh start NAME   start it again (as `up` does, for one)
#
# `stop redis` shuts Redis down with SAVE, so that `start redis` comes back
# with the same keys (a Redis with persistence restarting); the snapshot is
# removed once loaded, so `down` then `up` still starts empty. The others
# keep their data on disk anyway. scripts/chaos.sh uses stop/start to take
# one service down at a time.
#
# The ports lie inside Linux's default ephemeral range (32768-60999): while
# a service is stopped, any outgoing connection on the machine may be given
# its port as a local port, and the service cannot listen again until that
# connection closes. So `up`, `start` and `stop` first add the ports to
# net.ipv4.ip_local_reserved_ports (kept until reboot; other reserved ports
# are kept), which keeps the kernel from handing them out.
#
# Everything lives in one state folder, $STRATA_SERVICES_DIR (default
# /var/tmp/strata-services: the postgres user must be able to reach it, so
# not under /root). `up` is idempotent and quick when all is up. Run as root
# on Debian 12.
set -euo pipefail

STATE="${STRATA_SERVICES_DIR:-/var/tmp/strata-services}"
PASSWORD="strata-dev"
PG_PORT=55432
MONGO_PORT=57017
MONGO_TLS_PORT=57018
REDIS_PORT=56379
REDIS_TLS_PORT=56380
AMQP_PORT=55672
AMQPS_PORT=55671
RABBIT_DIST_PORT=55673
EPMD_PORT=54369
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
RABBIT_NODE="strata@localhost"
TLS_DIR="$STATE/tls"

log() { printf '%s\n' "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Waits until "$@" succeeds, up to $1 seconds (polling a readiness probe).
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "$what did not become ready within ${seconds}s"
    fi
    sleep 0.2
  done
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  # Keep the packages' own init scripts from starting default instances.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((created)) && rm -f "$policy"
  return 0
}

# ----------------------------------------------------------------------- TLS
# A private CA and a server certificate signed by it, for localhost and
# 127.0.0.1 (both in subjectAltName), made once; every service uses them.
tls_up() {
  if [[ -f "$TLS_DIR/ca.pem" && -f "$TLS_DIR/server.pem" && -f "$TLS_DIR/server.key" ]]; then
    return
  fi
  command -v openssl >/dev/null || apt_install openssl
  log "creating a CA and a server certificate in $TLS_DIR"
  local tmp; tmp="$(mktemp -d "$STATE/tls.XXXXXX")"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -subj "/CN=strata services CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$tmp/server.ext"
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null
  # The CA key is not kept: nothing else is ever signed with it.
  rm -f "$tmp/server.csr" "$tmp/server.ext" "$tmp/ca.srl" "$tmp/ca.key"
  chmod 600 "$tmp/server.key"
  chmod 644 "$tmp/ca.pem" "$tmp/server.pem"
  chmod 755 "$tmp"
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# ---------------------------------------------------------------- PostgreSQL
pg_dir="$STATE/postgres"
pg_as() { runuser -u postgres -- "$@"; }
pg_running() { [[ -f "$pg_dir/data/postmaster.pid" ]] && pg_as "$PG_BIN/pg_ctl" -D "$pg_dir/data" status >/dev/null 2>&1; }

pg_up() {
  [[ -x "$PG_BIN/initdb" ]] || apt_install postgresql
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  if pg_running; then log "postgres already up on $PG_PORT"; return; fi
  mkdir -p "$pg_dir"
  chown postgres: "$pg_dir"
  # PostgreSQL wants its key owned by its own user, readable by it alone.
  install -o postgres -g postgres -m 600 "$TLS_DIR/server.key" "$pg_dir/server.key"
  if [[ ! -f "$pg_dir/data/PG_VERSION" ]]; then
    pg_as "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 >"$pg_dir/initdb.log"
  fi
  pg_as "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 30 start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pg_dir -c fsync=off -c max_connections=200 \
        -c ssl=on -c ssl_cert_file=$TLS_DIR/server.pem -c ssl_key_file=$pg_dir/server.key" >/dev/null
  local psql=(pg_as "$PG_BIN/psql" -h "$pg_dir" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'strata'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE ROLE strata LOGIN CREATEDB PASSWORD '$PASSWORD'"
  fi
  # DROP DATABASE ... WITH (FORCE), as the tests and the bench sandbox use,
  # must terminate every session in the database, an autovacuum worker
  # included, which a role needs pg_signal_backend for.
  "${psql[@]}" -c "SET client_min_messages = warning" -c "GRANT pg_signal_backend TO strata"
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'strata'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE strata OWNER strata"
  fi
  log "postgres up on 127.0.0.1:$PG_PORT (plain and TLS)"
}

pg_down() {
  if pg_running; then
    pg_as "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null
    log "postgres stopped"
  fi
}

# --------------------------------------------------------------------- Redis
redis_dir="$STATE/redis"
redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --user default --pass "$PASSWORD" --no-auth-warning ping | grep -q PONG; }
redis_tls_ping() {
  redis-cli -h 127.0.0.1 -p "$REDIS_TLS_PORT" --tls --cacert "$TLS_DIR/ca.pem" \
    --user default --pass "$PASSWORD" --no-auth-warning ping | grep -q PONG
}

redis_up() {
  command -v redis-server >/dev/null || apt_install redis-server
  if pid_alive "$redis_dir/redis.pid"; then log "redis already up on $REDIS_PORT"; return; fi
  mkdir -p "$redis_dir"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$PASSWORD" \
    --daemonize yes --save '' --appendonly no --dir "$redis_dir" \
    --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" \
    --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLS_DIR/server.pem" \
    --tls-key-file "$TLS_DIR/server.key" --tls-ca-cert-file "$TLS_DIR/ca.pem" \
    --tls-auth-clients no
  wait_for 15 redis redis_ping
  wait_for 15 "redis (TLS)" redis_tls_ping
  # A snapshot left by `stop redis` is loaded now; without it the next
  # `down`/`up` would bring those keys back.
  rm -f "$redis_dir/dump.rdb"
  log "redis up on 127.0.0.1:$REDIS_PORT, TLS on $REDIS_TLS_PORT"
}

# Stops Redis with a snapshot of its keys, which `redis_up` loads again.
redis_stop_saving() {
  if pid_alive "$redis_dir/redis.pid"; then
    local pid; pid="$(cat "$redis_dir/redis.pid")"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --user default --pass "$PASSWORD" --no-auth-warning \
      shutdown save >/dev/null 2>&1 || true
    wait_for 15 "redis shutdown" bash -c "! kill -0 $pid"
    log "redis stopped (keys saved to $redis_dir/dump.rdb)"
  fi
  rm -f "$redis_dir/redis.pid"
}

redis_down() {
  if pid_alive "$redis_dir/redis.pid"; then
    local pid; pid="$(cat "$redis_dir/redis.pid")"
    kill "$pid"
    wait_for 15 "redis shutdown" bash -c "! kill -0 $pid"
    log "redis stopped"
  fi
  rm -f "$redis_dir/redis.pid"
}

# ------------------------------------------------------------------ RabbitMQ
rabbit_dir="$STATE/rabbitmq"
rabbit_env() {
  env HOME="$rabbit_dir" \
    RABBITMQ_NODENAME="$RABBIT_NODE" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" \
    RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" \
    ERL_EPMD_PORT="$EPMD_PORT" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" \
    RABBITMQ_LOG_BASE="$rabbit_dir/log" \
    RABBITMQ_PID_FILE="$rabbit_dir/rabbitmq.pid" \
    RABBITMQ_CONFIG_FILE="$rabbit_dir/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/enabled_plugins" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$rabbit_dir/advanced.config" \
    "$@"
}
rabbitmqctl() { rabbit_env /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBIT_NODE" "$@"; }

rabbit_up() {
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || apt_install rabbitmq-server
  if pid_alive "$rabbit_dir/rabbitmq.pid" && rabbitmqctl status >/dev/null 2>&1; then
    rabbit_provision
    log "rabbitmq already up on $AMQP_PORT"; return
  fi
  mkdir -p "$rabbit_dir/log" "$rabbit_dir/mnesia"
  cat >"$rabbit_dir/rabbitmq.conf" <<EOF
loopback_users = none
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
  echo '[].' >"$rabbit_dir/enabled_plugins"
  echo '[].' >"$rabbit_dir/advanced.config"
  # The /usr/sbin wrappers switch to the rabbitmq user; as root, call the
  # server directly so every path stays in the state folder.
  rabbit_env setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$rabbit_dir/server.out" 2>&1 &
  echo $! >"$rabbit_dir/launcher.pid"
  # await_startup fails at once until the node has registered with epmd,
  # so retry it until the node is up or the deadline passes.
  local deadline=$((SECONDS + 90))
  until rabbitmqctl --timeout 10 await_startup >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! pid_alive "$rabbit_dir/launcher.pid"; then
      tail -n 20 "$rabbit_dir/server.out" >&2 || true
      die "rabbitmq did not start"
    fi
    sleep 0.5
  done
  rabbit_provision
  wait_for 30 "rabbitmq (TLS)" rabbit_tls_probe
  log "rabbitmq up on 127.0.0.1:$AMQP_PORT, TLS on $AMQPS_PORT"
}

# The TLS listener completes a handshake with a certificate the CA signed.
rabbit_tls_probe() {
  openssl s_client -connect "127.0.0.1:$AMQPS_PORT" -servername localhost \
    -CAfile "$TLS_DIR/ca.pem" -verify_return_error </dev/null >/dev/null 2>&1
}

rabbit_provision() {
  rabbitmqctl list_users -q | grep -q '^strata\b' || rabbitmqctl add_user strata "$PASSWORD" >/dev/null
  rabbitmqctl set_user_tags strata administrator >/dev/null
  rabbitmqctl list_vhosts -q | grep -qx strata || rabbitmqctl add_vhost strata >/dev/null
  rabbitmqctl set_permissions -p strata strata '.*' '.*' '.*' >/dev/null
}

rabbit_down() {
  if [[ -f "$rabbit_dir/rabbitmq.pid" || -f "$rabbit_dir/launcher.pid" ]]; then
    rabbitmqctl stop >/dev/null 2>&1 || true
    for f in "$rabbit_dir/rabbitmq.pid" "$rabbit_dir/launcher.pid"; do
      if pid_alive "$f"; then
        local pid; pid="$(cat "$f")"
        kill "$pid" 2>/dev/null || true
        wait_for 30 "rabbitmq shutdown" bash -c "! kill -0 $pid"
      fi
      rm -f "$f"
    done
    log "rabbitmq stopped"
  fi
  # epmd outlives the node; stop the one on our port only.
  if command -v epmd >/dev/null && ERL_EPMD_PORT="$EPMD_PORT" epmd -names >/dev/null 2>&1; then
    ERL_EPMD_PORT="$EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
  fi
  pkill -f "epmd.*-port $EPMD_PORT" 2>/dev/null || true
}

# ------------------------------------------------------- MongoDB (SecantusDB)
# Two servers: the plain one, and one over TLS only (SecantusDB wraps every
# socket of a port in TLS once it has a certificate), each with its data.
mongo_dir="$STATE/mongo"
mongo_py="$mongo_dir/venv/bin/python"

# Selects a server for the functions below: plain or tls.
mongo_select() {
  case $1 in
    plain)
      m_name=mongo m_port=$MONGO_PORT m_data="$mongo_dir/data" m_pid="$mongo_dir/mongo.pid"
      m_log="$mongo_dir/server.log" m_mark="$mongo_dir/provisioned" m_flags=() ;;
    tls)
      m_name="mongo (TLS)" m_port=$MONGO_TLS_PORT m_data="$mongo_dir/data-tls"
      m_pid="$mongo_dir/mongo-tls.pid" m_log="$mongo_dir/server-tls.log"
      m_mark="$mongo_dir/provisioned-tls"
      m_flags=(--tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key"
               --cache-size 256M) ;;
  esac
  m_kind=$1
}

# `mongo_ping [auth]`: the selected server answers a ping (over TLS,
# checking its certificate against the CA, for the TLS one).
mongo_ping() {
  "$mongo_py" - "$m_port" "$m_kind" "$@" <<EOF
import sys, pymongo
port, kind = int(sys.argv[1]), sys.argv[2]
auth = dict(username="strata", password="$PASSWORD", authSource="admin") if "auth" in sys.argv else {}
tls = dict(tls=True, tlsCAFile="$TLS_DIR/ca.pem") if kind == "tls" else {}
c = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=500, **auth, **tls)
c.admin.command("ping")
EOF
}

mongo_start() {
  setsid "$mongo_dir/venv/bin/secantusd-py" --host 127.0.0.1 --port "$m_port" \
    --storage-path "$m_data" --standalone --log-level WARNING "${m_flags[@]}" "$@" \
    >>"$m_log" 2>&1 &
  echo $! >"$m_pid"
}

mongo_stop() {
  if pid_alive "$m_pid"; then
    local pid; pid="$(cat "$m_pid")"
    kill "$pid"
    wait_for 30 "$m_name shutdown" bash -c "! kill -0 $pid"
  fi
  rm -f "$m_pid"
}

mongo_up_one() {
  mongo_select "$1"
  if pid_alive "$m_pid"; then log "$m_name already up on $m_port"; return; fi
  if [[ ! -f "$m_mark" ]]; then
    # Users are created on a first start without auth, then the server
    # restarts with SCRAM authentication required.
    mongo_start
    wait_for 60 "$m_name" mongo_ping
    "$mongo_py" - "$m_port" "$m_kind" <<EOF
import sys, pymongo
port, kind = int(sys.argv[1]), sys.argv[2]
tls = dict(tls=True, tlsCAFile="$TLS_DIR/ca.pem") if kind == "tls" else {}
c = pymongo.MongoClient("127.0.0.1", port, **tls)
if not c.admin.command("usersInfo", "strata")["users"]:
    c.admin.command("createUser", "strata", pwd="$PASSWORD", roles=["root"])
EOF
    mongo_stop
    touch "$m_mark"
  fi
  mongo_start --auth
  wait_for 60 "$m_name" mongo_ping auth
  log "$m_name up on 127.0.0.1:$m_port"
}

mongo_up() {
  mkdir -p "$mongo_dir"
  if [[ ! -x "$mongo_dir/venv/bin/secantusd-py" ]]; then
    log "installing secantusdb into $mongo_dir/venv"
    python3 -m venv "$mongo_dir/venv"
    "$mongo_dir/venv/bin/pip" install -q --disable-pip-version-check secantusdb pymongo
  fi
  mongo_up_one plain
  mongo_up_one tls
}

mongo_down() {
  local kind
  for kind in tls plain; do
    mongo_select "$kind"
    if pid_alive "$m_pid"; then mongo_stop; log "$m_name stopped"; fi
  done
}

# ------------------------------------------------------------------ commands
status() {
  local code=0
  if pg_running; then echo "postgres  up    127.0.0.1:$PG_PORT  TLS on the same port"; else echo "postgres  down"; code=1; fi
  if pid_alive "$mongo_dir/mongo.pid"; then echo "mongo     up    127.0.0.1:$MONGO_PORT"; else echo "mongo     down"; code=1; fi
  if pid_alive "$mongo_dir/mongo-tls.pid"; then echo "mongo     up    127.0.0.1:$MONGO_TLS_PORT  TLS"; else echo "mongo     down  (TLS, $MONGO_TLS_PORT)"; code=1; fi
  if pid_alive "$redis_dir/redis.pid"; then echo "redis     up    127.0.0.1:$REDIS_PORT  TLS on $REDIS_TLS_PORT"; else echo "redis     down"; code=1; fi
  if pid_alive "$rabbit_dir/rabbitmq.pid"; then echo "rabbitmq  up    127.0.0.1:$AMQP_PORT  TLS on $AMQPS_PORT"; else echo "rabbitmq  down"; code=1; fi
  if [[ -f "$TLS_DIR/ca.pem" ]]; then echo "tls       CA    $TLS_DIR/ca.pem"; fi
  return $code
}

# Keeps the services' ports from being handed out as local ports of
# outgoing connections (see the top of this file).
reserve_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports
  local ports="$PG_PORT,$MONGO_PORT,$MONGO_TLS_PORT,$REDIS_PORT,$REDIS_TLS_PORT,$AMQP_PORT,$AMQPS_PORT,$RABBIT_DIST_PORT,$EPMD_PORT"
  local current
  current="$(cat "$file" 2>/dev/null)" || current=""
  if ! { [[ -w $file ]] && echo "${current:+$current,}$ports" >"$file"; } 2>/dev/null; then
    log "warning: cannot reserve ports $ports in $file; a stopped service may find its port taken by a client connection"
  fi
}

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and runs postgres as its own user)"
mkdir -p "$STATE"
chmod 755 "$STATE"

case "${1:-}" in
  up)
    reserve_ports
    apt_install redis-server rabbitmq-server python3-venv openssl
    tls_up
    pg_up
    redis_up
    mongo_up
    rabbit_up
    ;;
  down)
    rabbit_down
    mongo_down
    redis_down
    pg_down
    ;;
  status) status ;;
  stop|start)
    reserve_ports
    if [[ $1 == start ]]; then tls_up; fi
    case "${2:-}" in
      postgres) if [[ $1 == stop ]]; then pg_down; else pg_up; fi ;;
      mongo) if [[ $1 == stop ]]; then mongo_down; else mongo_up; fi ;;
      redis) if [[ $1 == stop ]]; then redis_stop_saving; else redis_up; fi ;;
      rabbitmq) if [[ $1 == stop ]]; then rabbit_down; else rabbit_up; fi ;;
      *) echo "usage: $0 $1 postgres|mongo|redis|rabbitmq" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: $0 up|down|status|stop NAME|start NAME" >&2; exit 2 ;;
esac
