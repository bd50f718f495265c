# shellcheck shell=bash
# Variables here are used by the scripts that source this file.
# shellcheck disable=SC2034
# Shared settings for deploy/local/*.sh. Sourced, never executed.
# Everything the local runtime writes lives under $LOCAL_DIR (git-ignored),
# so `rm -rf .local` is a full reset.

# Resolve the repository from this file's location, not from $PWD, so the
# scripts work from any directory (CI, IDE, tests calling subprocess).
DEPLOY_LOCAL_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$DEPLOY_LOCAL_DIR/../.." && pwd -P)"
LOCAL_DIR="$REPO_ROOT/.local"

# Ports: non-default values so we never collide with a system Kafka/PostgreSQL.
ENLACE_KAFKA_PORT="${ENLACE_KAFKA_PORT:-19092}"
ENLACE_KAFKA_CONTROLLER_PORT="${ENLACE_KAFKA_CONTROLLER_PORT:-19093}"
ENLACE_PG_PORT="${ENLACE_PG_PORT:-15432}"
# ENLACE_KAFKA_NODES=3: three combined broker+controller nodes (one KRaft quorum,
# replication factor 3, min.insync.replicas 2) instead of the single broker; node N
# listens on ENLACE_KAFKA_PORT + 2*(N-1) and ENLACE_KAFKA_CONTROLLER_PORT + 2*(N-1).
ENLACE_KAFKA_NODES="${ENLACE_KAFKA_NODES:-1}"
if [[ "$ENLACE_KAFKA_NODES" != 1 && "$ENLACE_KAFKA_NODES" != 3 ]]; then
    printf 'ERROR: ENLACE_KAFKA_NODES=%s: expected 1 (one broker) or 3 (three nodes)\n' "$ENLACE_KAFKA_NODES" >&2
    exit 2
fi
if ((ENLACE_KAFKA_NODES > 1)); then
    ENLACE_KAFKA_HEAP="${ENLACE_KAFKA_HEAP:--Xms192m -Xmx384m}"
else
    ENLACE_KAFKA_HEAP="${ENLACE_KAFKA_HEAP:--Xms256m -Xmx512m}"
fi
ENLACE_READY_TIMEOUT="${ENLACE_READY_TIMEOUT:-60}"
ENLACE_STOP_TIMEOUT="${ENLACE_STOP_TIMEOUT:-30}"
# Host is fixed: both servers listen on loopback only, by design.
ENLACE_HOST=127.0.0.1

# ENLACE_KAFKA_INSTANCE names a second, private broker (its own data, logs and pid;
# the same libraries), e.g. for a test that must stop and restart its broker
# without disturbing anything else on the machine.
ENLACE_KAFKA_INSTANCE="${ENLACE_KAFKA_INSTANCE:-kafka}"
KAFKA_DIR="$LOCAL_DIR/$ENLACE_KAFKA_INSTANCE"
KAFKA_LIBS="$LOCAL_DIR/kafka/libs"
# kafka_node_dir N: node N's config, data and logs. The single broker keeps the
# instance directory itself; each of three nodes has node<N>/ beneath it.
kafka_node_dir() {
    if ((ENLACE_KAFKA_NODES > 1)); then echo "$KAFKA_DIR/node$1"; else echo "$KAFKA_DIR"; fi
}
# The single broker's files (node 1's when there are three; kafka.sh sets each node's).
KAFKA_DATA="$(kafka_node_dir 1)/data"
KAFKA_LOG_DIR="$(kafka_node_dir 1)/logs"
KAFKA_LOG="$KAFKA_LOG_DIR/server.log"
KAFKA_STDOUT_LOG="$KAFKA_LOG_DIR/stdout.log"
KAFKA_PROPS="$(kafka_node_dir 1)/server.properties"
KAFKA_LOG4J="$(kafka_node_dir 1)/log4j2.properties"
KAFKA_POM="$DEPLOY_LOCAL_DIR/kafka/pom.xml"
# kafka_port N / kafka_controller_port N: node N's client and controller ports.
kafka_port() { echo $((ENLACE_KAFKA_PORT + 2 * ($1 - 1))); }
kafka_controller_port() { echo $((ENLACE_KAFKA_CONTROLLER_PORT + 2 * ($1 - 1))); }
# Every node's client listener: clients reach the cluster through any node alive.
KAFKA_BOOTSTRAP="$ENLACE_HOST:$ENLACE_KAFKA_PORT"
for ((_node = 2; _node <= ENLACE_KAFKA_NODES; _node++)); do
    KAFKA_BOOTSTRAP+=",$ENLACE_HOST:$(kafka_port "$_node")"
done
unset _node
# TLS of the client listener (kafka.sh makes it once): clients trust this CA.
KAFKA_TLS_DIR="$LOCAL_DIR/secrets/kafka-tls"
KAFKA_CA_FILE="$KAFKA_TLS_DIR/ca.crt"

PG_DIR="$LOCAL_DIR/${ENLACE_PG_INSTANCE:-pg}"  # ENLACE_PG_INSTANCE: a private cluster (postgres.sh)
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
# Used by the scripts alone; each service logs in as its own role enlace_<service>,
# which owns its database enlace_<service> and nothing else. Every password is
# generated at first start: $SECRETS_DIR/postgres/<role>.password (see postgres.sh).
PG_SUPERUSER=enlace_admin
PG_SERVICES=(intake referral followup notifications ops)
PG_SERVICE_DBS=(enlace_intake enlace_referral enlace_followup enlace_notifications enlace_ops)

RUN_DIR="$LOCAL_DIR/run"
PYTHON="${ENLACE_PYTHON:-$REPO_ROOT/.venv/bin/python}"

# CI has no terminal: never let apt or anything else prompt.
export DEBIAN_FRONTEND=noninteractive

# die MESSAGE [LOGFILE]: print a clear error (and where to look) and exit 1.
die() {
    local msg="$1" log="${2:-}"
    printf 'ERROR: %s\n' "$msg" >&2
    if [[ -n "$log" ]]; then
        printf 'ERROR: read the log: %s\n' "$log" >&2
        if [[ -r "$log" ]]; then
            printf -- '----- last 30 lines of %s -----\n' "$log" >&2
            tail -n 30 -- "$log" >&2 || true
            printf -- '-----\n' >&2
        fi
    fi
    exit 1
}

info() { printf '%s\n' "$*"; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# apt_install PKG...: only as root (CI runs as root); otherwise say what to run.
apt_install() {
    if ! is_root; then
        die "missing $*; install it with: sudo apt-get update && sudo apt-get install -y $*"
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get on this machine; install it manually"
    info "installing $* with apt-get"
    mkdir -p "$RUN_DIR"
    # infra.sh up runs kafka.sh and postgres.sh in parallel: one apt at a time.
    (
        flock -w 600 8 || die "could not take $RUN_DIR/apt.lock"
        if ! { apt-get -q -o DPkg::Lock::Timeout=300 update \
            && apt-get -q -y -o DPkg::Lock::Timeout=300 install "$@"; } >"$RUN_DIR/apt.log" 2>&1; then
            die "apt-get install $* failed" "$RUN_DIR/apt.log"
        fi
    ) 8>"$RUN_DIR/apt.lock"
}

# Secrets the local scripts generate at first start: one file per secret under
# $SECRETS_DIR (directory 0700, files 0600), never committed, never a fixed value.
SECRETS_DIR="$LOCAL_DIR/secrets"

# ensure_secret RELPATH: print the secret in $SECRETS_DIR/RELPATH, creating it
# (32 random bytes, URL-safe base64) on first use. Safe to call concurrently.
ensure_secret() {
    local file="$SECRETS_DIR/$1" tmp
    if [[ ! -s "$file" ]]; then
        mkdir -p "$(dirname -- "$file")"
        chmod 700 "$SECRETS_DIR" "$(dirname -- "$file")"
        tmp="$(mktemp "$file.XXXXXX")"
        chmod 600 "$tmp"
        head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$tmp"
        # ln fails if another process created it first: theirs wins, ours is dropped.
        ln "$tmp" "$file" 2>/dev/null || true
        rm -f -- "$tmp"
    fi
    cat -- "$file"
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$ENLACE_HOST/$1" 2>/dev/null
}

# with_lock NAME: serialise concurrent start/stop of one component (two test
# sessions may run `infra.sh up` at once). Uses fd 9; children that outlive
# the script (the servers) must be started with 9>&- so they do not keep it.
with_lock() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/$1.lock"
    flock -w 600 9 || die "could not take lock $RUN_DIR/$1.lock within 600 s"
}

# stack_dirs: STATE_DIR (and RUN_DIR) of this stack. ENLACE_STACK names a private
# stack beside `make run` (services.sh, monitoring.sh): its state lives in
# .local/stacks/<name>/; without it, .local/ itself.
stack_dirs() {
    if [[ -n "${ENLACE_STACK:-}" ]]; then
        [[ "$ENLACE_STACK" =~ ^[a-z0-9-]{1,40}$ ]] || die "ENLACE_STACK must match [a-z0-9-]{1,40}"
        STATE_DIR="$LOCAL_DIR/stacks/$ENLACE_STACK"
        RUN_DIR="$STATE_DIR/run"
    else
        STATE_DIR="$LOCAL_DIR"
    fi
}
