#!/usr/bin/env bash
# Local infrastructure on loopback: PostgreSQL, Redis, RabbitMQ (Debian packages) and Neo4j 5.26
# (tools/neo4j). Idempotent: `up` starts only what is not running and waits until each answers.
# Usage: scripts/infra.sh up|down|status|install
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${DISCOGSOGRAPHY_LOCAL_DIR:-$ROOT/.local}"
LOGS="$LOCAL/logs"
RUN="$LOCAL/run"

PG_PORT="${POSTGRES_PORT:-5432}"
PG_USER="${POSTGRES_USERNAME:-discogsography}"
PG_PASSWORD="${POSTGRES_PASSWORD:-discogsography}"
PG_DATABASE="${POSTGRES_DATABASE:-discogsography}"
REDIS_PORT="${REDIS_PORT:-6379}"
AMQP_PORT="${RABBITMQ_PORT:-5672}"
AMQP_MGMT_PORT="${RABBITMQ_MANAGEMENT_PORT:-15672}"
AMQP_USER="${RABBITMQ_USERNAME:-discogsography}"
AMQP_PASSWORD="${RABBITMQ_PASSWORD:-discogsography}"
NEO4J_PORT="${NEO4J_BOLT_PORT:-7687}"
NEO4J_PW="${NEO4J_PASSWORD:-discogsography}"
NEO4J_HEAP="${NEO4J_HEAP:-2g}"
NEO4J_PAGECACHE_MB="${NEO4J_PAGECACHE_MB:-2048}"
# G1 by default. ParallelGC cost Neo4j about 25% less CPU draining releases into a large graph
# (4% of a whole 1M first load), but one CI run with it failed a transaction-timeout test.
NEO4J_GC="${NEO4J_GC:-G1GC}"

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
NEO4J_DIR="$ROOT/tools/neo4j"
NEO4J_JAR="$NEO4J_DIR/target/neo4j-local-1.0.0.jar"

say() { printf '[infra] %s\n' "$*"; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for <name> <seconds> <log> <command...>: poll until the command succeeds.
wait_for() {
  local name=$1 timeout=$2 log=$3; shift 3
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start > timeout )); then
      die "$name did not answer within ${timeout}s; see $log"
    fi
    sleep 0.5
  done
  say "$name is up ($(( SECONDS - start ))s)"
}

# refuse_taken_port <name> <port> <pidfile>: a port held by someone else is a clear error.
refuse_taken_port() {
  if ! pid_alive "$3" && port_open "$2"; then
    die "$1: port 127.0.0.1:$2 is already taken by another process (not ours). Stop it or set the port variable."
  fi
}

install() {
  local missing=()
  [[ -n "$PG_BIN" ]] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
  command -v chromium >/dev/null || missing+=(chromium)
  if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >"$LOGS/apt.log" 2>&1 || die "apt-get install failed; see $LOGS/apt.log"
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
  fi
  neo4j_launcher
}

# Also before every start: `start-neo4j` alone (the tests, bench_pipeline) runs the current sources.
neo4j_launcher() {
  if [[ ! -f "$NEO4J_JAR" || ! -d "$NEO4J_DIR/target/lib" \
        || -n "$(find "$NEO4J_DIR/src" "$NEO4J_DIR/pom.xml" -newer "$NEO4J_JAR" -print -quit)" ]]; then
    say "building the Neo4j launcher with Maven (first time, or after its sources changed)"
    (cd "$NEO4J_DIR" && mvn -q -B package -DskipTests) >"$LOGS/neo4j-build.log" 2>&1 \
      || die "Maven build of tools/neo4j failed; see $LOGS/neo4j-build.log"
  fi
}

pg_up() {
  local data="$LOCAL/postgres" log="$LOGS/postgres.log"
  local pidfile="$data/postmaster.pid"
  mkdir -p "$data" "$RUN/pg"
  chown postgres:postgres "$data" "$RUN/pg"
  chmod 700 "$data"
  if [[ -f "$pidfile" ]] && kill -0 "$(head -n1 "$pidfile")" 2>/dev/null; then
    say "postgres already running"; return
  fi
  if port_open "$PG_PORT"; then
    die "postgres: port 127.0.0.1:$PG_PORT is already taken by another process. Stop it or set POSTGRES_PORT."
  fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    say "initialising PostgreSQL cluster in $data"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" --auth-local=peer --auth-host=scram-sha-256 \
      -U postgres -E UTF8 --locale=C.UTF-8 >"$LOGS/postgres-initdb.log" 2>&1 \
      || die "initdb failed; see $LOGS/postgres-initdb.log"
  fi
  touch "$log"; chown postgres:postgres "$log"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $RUN/pg -c max_connections=200 -c shared_buffers=${POSTGRES_SHARED_BUFFERS:-1GB} -c synchronous_commit=off -c max_wal_size=4GB" \
    >/dev/null || die "postgres failed to start; see $log"
  wait_for postgres 60 "$log" "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
  local psql=(runuser -u postgres -- "$PG_BIN/psql" -h "$RUN/pg" -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA -d postgres)
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" >/dev/null
  fi
  if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$PG_DATABASE'")" != 1 ]]; then
    "${psql[@]}" -c "CREATE DATABASE \"$PG_DATABASE\" OWNER \"$PG_USER\"" >/dev/null
  fi
}

pg_down() {
  local data="$LOCAL/postgres"
  if [[ -f "$data/postmaster.pid" ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    say "postgres stopped"
  fi
}

redis_up() {
  local dir="$LOCAL/redis" pidfile="$RUN/redis.pid" log="$LOGS/redis.log"
  mkdir -p "$dir"
  if pid_alive "$pidfile"; then say "redis already running"; return; fi
  refuse_taken_port redis "$REDIS_PORT" "$pidfile"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --daemonize yes \
    --pidfile "$pidfile" --logfile "$log" --save 60 1000 --appendonly no \
    || die "redis failed to start; see $log"
  wait_for redis 30 "$log" redis-cli -p "$REDIS_PORT" ping
}

redis_down() {
  if pid_alive "$RUN/redis.pid"; then
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$RUN/redis.pid")"
    say "redis stopped"
  fi
}

rabbit_env() {
  export RABBITMQ_NODENAME="discogsography-$AMQP_PORT@localhost"
  export RABBITMQ_MNESIA_BASE="$LOCAL/rabbitmq/mnesia"
  export RABBITMQ_LOG_BASE="$LOGS/rabbitmq"
  export RABBITMQ_CONFIG_FILE="$LOCAL/rabbitmq/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$LOCAL/rabbitmq/enabled_plugins"
  export RABBITMQ_PID_FILE="$RUN/rabbitmq.pid"
  export ERL_EPMD_ADDRESS=127.0.0.1
  # Explicit ports so several stacks (scripts/stack-env.sh) never share an Erlang distribution port.
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$AMQP_PORT"
  export RABBITMQ_DIST_PORT="$((AMQP_PORT + 20000))"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_DIST_PORT_MIN="$((AMQP_PORT + 30000))" RABBITMQ_CTL_DIST_PORT_MAX="$((AMQP_PORT + 30010))"
  export ERL_CRASH_DUMP="$LOGS/rabbitmq/erl_crash.dump"
  export HOME="${HOME:-/root}"
}

rabbit_up() {
  rabbit_env
  local log="$LOGS/rabbitmq.out"
  mkdir -p "$LOCAL/rabbitmq/mnesia" "$LOGS/rabbitmq"
  if pid_alive "$RABBITMQ_PID_FILE"; then say "rabbitmq already running"; return; fi
  refuse_taken_port rabbitmq "$AMQP_PORT" "$RABBITMQ_PID_FILE"
  echo "[rabbitmq_management]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  cat >"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $AMQP_MGMT_PORT
default_user = $AMQP_USER
default_pass = $AMQP_PASSWORD
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none
vm_memory_high_watermark.relative = 0.3
disk_free_limit.absolute = 1GB
EOF
  nohup /usr/lib/rabbitmq/bin/rabbitmq-server >"$log" 2>&1 &
  echo $! >"$RABBITMQ_PID_FILE"
  wait_for rabbitmq 120 "$log" curl -fsS -u "$AMQP_USER:$AMQP_PASSWORD" \
    "http://127.0.0.1:$AMQP_MGMT_PORT/api/aliveness-test/%2F"
}

rabbit_down() {
  rabbit_env
  if pid_alive "$RABBITMQ_PID_FILE"; then
    /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 \
      || kill "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
    say "rabbitmq stopped"
  fi
}

# The JVM flags of Neo4j's own neo4j.conf (what the official image of compose runs): final fields
# trusted by the JIT, @Contended padding against false sharing, no System.gc() from the JDK. Draining
# 60,000 releases into the 1M-release graph, Neo4j took 52 and 56 CPU-s (two sets of 6 warm runs)
# with them and 56 without: within this machine's noise, so they are here for parity.
NEO4J_JVM_DEFAULTS=(
  -XX:+UnlockExperimentalVMOptions -XX:+TrustFinalNonStaticFields -XX:-RestrictContended
  -XX:+DisableExplicitGC -XX:-OmitStackTraceInFastThrow -Djdk.nio.maxCachedBufferSize=1024
)

neo4j_up() {
  local home="$LOCAL/neo4j" pidfile="$RUN/neo4j.pid" log="$LOGS/neo4j.log"
  mkdir -p "$home"
  if pid_alive "$pidfile"; then say "neo4j already running"; return; fi
  neo4j_launcher
  refuse_taken_port neo4j "$NEO4J_PORT" "$pidfile"
  [[ "$NEO4J_GC" == ParallelGC || "$NEO4J_GC" == G1GC ]] || die "NEO4J_GC must be ParallelGC or G1GC, not '$NEO4J_GC'"
  NEO4J_BOLT_PORT="$NEO4J_PORT" NEO4J_PASSWORD="$NEO4J_PW" NEO4J_PAGECACHE_MB="$NEO4J_PAGECACHE_MB" \
    nohup java -Xms512m -Xmx"$NEO4J_HEAP" -XX:+Use"$NEO4J_GC" "${NEO4J_JVM_DEFAULTS[@]}" \
    --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true \
    -cp "$NEO4J_JAR:$NEO4J_DIR/target/lib/*" local.graphdb.LocalNeo4j "$home" >"$log" 2>&1 &
  echo $! >"$pidfile"
  wait_for neo4j 180 "$log" grep -q "NEO4J READY" "$log"
}

neo4j_down() {
  local pidfile="$RUN/neo4j.pid"
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    say "neo4j stopped"
  fi
}

status_line() {
  if port_open "$2"; then printf '  %-10s up    127.0.0.1:%s\n' "$1" "$2"
  else printf '  %-10s down  127.0.0.1:%s\n' "$1" "$2"; fi
}

status() {
  say "status (data under $LOCAL, logs under $LOGS)"
  status_line postgres "$PG_PORT"
  status_line redis "$REDIS_PORT"
  status_line rabbitmq "$AMQP_PORT"
  status_line neo4j "$NEO4J_PORT"
}

mkdir -p "$LOGS" "$RUN"
case "${1:-}" in
  install) install ;;
  up) install; pg_up; redis_up; rabbit_up; neo4j_up ;;
  down) neo4j_down; rabbit_down; redis_down; pg_down ;;
  status) status ;;
  # Single-service control, used by the tests that stop a store to watch /ready turn 503.
  start-postgres) pg_up ;; stop-postgres) pg_down ;;
  start-redis) redis_up ;; stop-redis) redis_down ;;
  start-rabbitmq) rabbit_up ;; stop-rabbitmq) rabbit_down ;;
  start-neo4j) neo4j_up ;; stop-neo4j) neo4j_down ;;
  *) die "usage: $0 up|down|status|install|start-<store>|stop-<store>" ;;
esac
