#!/usr/bin/env bash
# A private PostgreSQL cluster for this checkout, on 127.0.0.1 only, using the
# machine's (Debian) server binaries.
#
# Roles: the superuser enlace_admin is for these scripts alone. Each service logs in
# as enlace_<service> (no superuser, no CREATEDB/CREATEROLE, no file access), which
# owns its database and nothing else; CONNECT is revoked from PUBLIC everywhere, so a
# role reaches only the databases it owns. Passwords are generated at first start
# into .local/secrets/postgres/<role>.password (0600); the files are the truth and
# `createdbs` sets them again. pg_hba takes scram-sha-256 on 127.0.0.1 only.
#
# Usage: deploy/local/postgres.sh {install|start|stop|restart|kill|pid|status|createdb NAME SERVICE|createdbs|dsn SERVICE [DATABASE]|psql [args]}
#   dsn SERVICE [DATABASE]  print the DSN of SERVICE's role (database enlace_<service> by default)
#   restart                 pg_ctl restart -m fast (clients are disconnected), then wait until it answers
#   kill                    SIGKILL of the postmaster, as a crash: returns once its backends are gone too
#   pid                     print the postmaster's pid (exit 3 when not running)
#
# ENLACE_PG_INSTANCE names a second, private cluster (default pg): its data and log in
# .local/<instance>/, its own lock, on ENLACE_PG_PORT (e.g. the fault suite, which
# restarts and kills its cluster without disturbing the shared one). The roles and
# their password files are the same for every instance.
set -euo pipefail

# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

usage() { echo "usage: $0 {install|start|stop|restart|kill|pid|status|createdb NAME SERVICE|createdbs|dsn SERVICE [DATABASE]|psql [args]}" >&2; exit 2; }

PG_INSTANCE="${ENLACE_PG_INSTANCE:-pg}"
[[ "$PG_INSTANCE" =~ ^[a-z0-9][a-z0-9-]{0,39}$ ]] || die "ENLACE_PG_INSTANCE must match [a-z0-9][a-z0-9-]{0,39}"
# The shared cluster keeps its lock and file names; a private one has its own.
if [[ "$PG_INSTANCE" == pg ]]; then
    PG_LOCK=postgres PG_RUN_PREFIX=""
else
    PG_LOCK="$PG_INSTANCE" PG_RUN_PREFIX="$PG_INSTANCE-"
fi

# A cluster made by this script carries this file (clusters from before the
# per-service roles had a superuser enlace/enlace and no such file).
PG_MARKER_NAME=enlace.cluster

secret_file() { echo "$SECRETS_DIR/postgres/$1.password"; }

# role_password ROLE: the password in its secret file; never invents one (a new
# random password the cluster does not know would only fail later, less clearly).
role_password() {
    local file
    file="$(secret_file "$1")"
    [[ -s "$file" ]] || die "no password file $file; run deploy/local/infra.sh up (or postgres.sh start and createdbs)"
    cat -- "$file"
}

service_role() {
    local svc
    for svc in "${PG_SERVICES[@]}"; do
        [[ "$1" == "$svc" ]] && { echo "enlace_$svc"; return 0; }
    done
    die "unknown service '$1' (expected one of: ${PG_SERVICES[*]})"
}

# shellcheck source=deploy/local/pg_install.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/pg_install.sh"

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PG_REAL_DATA" status >/dev/null 2>&1; }

# psql as the superuser over TCP (the same path the services use).
run_psql() {
    PGPASSWORD="$(role_password "$PG_SUPERUSER")" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 \
        -h "$ENLACE_HOST" -p "$ENLACE_PG_PORT" -U "$PG_SUPERUSER" "$@"
}

wait_ready() {
    local deadline=$((SECONDS + ENLACE_READY_TIMEOUT))
    # Ready = a real query answers, not just pg_ctl's "server started".
    until [[ "$(run_psql -d postgres -qAtc 'SELECT 1' 2>/dev/null)" == 1 ]]; do
        if ((SECONDS >= deadline)); then
            die "PostgreSQL did not answer SELECT 1 on $ENLACE_HOST:$ENLACE_PG_PORT within ${ENLACE_READY_TIMEOUT}s" "$PG_REAL_LOG"
        fi
        pg_running || die "PostgreSQL exited while starting" "$PG_REAL_LOG"
        sleep 0.2
    done
}

do_start() {
    do_install
    write_config
    if pg_running; then
        # Configuration may have changed (pg_hba above): apply it.
        as_pg "$PG_BIN/pg_ctl" -D "$PG_REAL_DATA" reload >/dev/null
        wait_ready
        info "postgres already running on $ENLACE_HOST:$ENLACE_PG_PORT"
        return 0
    fi
    if port_open "$ENLACE_PG_PORT"; then
        die "port $ENLACE_PG_PORT is taken by another process; stop it or set ENLACE_PG_PORT"
    fi
    info "starting postgres on $ENLACE_HOST:$ENLACE_PG_PORT (data $PG_REAL_DATA)"
    local t0=$SECONDS
    # The log file is opened by pg_ctl running as $PG_OS_USER: make sure it may.
    touch "$PG_REAL_LOG"
    if is_root; then chown "$PG_OS_USER:" "$PG_REAL_LOG"; fi
    # 9>&- : the postmaster must not inherit our start/stop lock.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_REAL_DATA" -l "$PG_REAL_LOG" -w -t "$ENLACE_READY_TIMEOUT" start \
        >"$RUN_DIR/${PG_RUN_PREFIX}pg_ctl.out" 2>&1 9>&- \
        || die "pg_ctl start failed ($(tail -n 1 "$RUN_DIR/${PG_RUN_PREFIX}pg_ctl.out"))" "$PG_REAL_LOG"
    wait_ready
    info "postgres ready on $ENLACE_HOST:$ENLACE_PG_PORT in $((SECONDS - t0)) s"
}

do_stop() {
    locate_binaries
    setup_run_user
    resolve_state_dir
    if [[ ! -f "$PG_REAL_DATA/PG_VERSION" ]] || ! pg_running; then
        info "postgres not running"
        return 0
    fi
    info "stopping postgres"
    # fast: roll back open transactions and disconnect clients, then a clean shutdown.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_REAL_DATA" stop -m fast -w -t "$ENLACE_STOP_TIMEOUT" >/dev/null \
        || die "pg_ctl stop failed" "$PG_REAL_LOG"
    info "postgres stopped"
}

# The postmaster's pid, if it runs (a zombie or a pid reused by another program is not it).
postmaster_pid() {
    local pid
    pid="$(head -n 1 "$PG_REAL_DATA/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && is_alive "$pid" \
        && [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == postgres* ]] && echo "$pid"
}

# is_alive PID: running, not a zombie waiting to be reaped.
is_alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z* ]]
}

do_pid() {
    locate_binaries
    setup_run_user
    resolve_state_dir
    postmaster_pid || { info "postgres not running" >&2; return 3; }
}

do_restart() {
    locate_binaries
    setup_run_user
    resolve_state_dir
    pg_running || die "postgres is not running; start it instead"
    info "restarting postgres (fast: open transactions rolled back, clients disconnected)"
    local t0=$SECONDS
    as_pg "$PG_BIN/pg_ctl" -D "$PG_REAL_DATA" -l "$PG_REAL_LOG" -w -t "$ENLACE_READY_TIMEOUT" restart -m fast \
        >"$RUN_DIR/${PG_RUN_PREFIX}pg_ctl.out" 2>&1 9>&- \
        || die "pg_ctl restart failed ($(tail -n 1 "$RUN_DIR/${PG_RUN_PREFIX}pg_ctl.out"))" "$PG_REAL_LOG"
    wait_ready
    info "postgres restarted in $((SECONDS - t0)) s"
}

# A crash of the postmaster: SIGKILL, no shutdown. Its backends notice it is gone and
# exit by themselves; a new postmaster refuses to start while one of them still holds
# the shared memory, so this returns once they are all gone (SIGKILL for any that
# outlives ENLACE_STOP_TIMEOUT).
do_kill() {
    locate_binaries
    setup_run_user
    resolve_state_dir
    local pid children child deadline
    pid="$(postmaster_pid)" || { info "postgres not running"; return 0; }
    children="$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)"
    info "killing the postmaster (pid $pid) with SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + ENLACE_STOP_TIMEOUT))
    for child in $pid $children; do
        while is_alive "$child"; do
            if ((SECONDS >= deadline)); then
                info "pid $child outlived the postmaster by ${ENLACE_STOP_TIMEOUT}s; sending SIGKILL"
                kill -KILL "$child" 2>/dev/null || true
                deadline=$((SECONDS + 10))
            fi
            sleep 0.1
        done
    done
    # pg_ctl counts a zombie postmaster as running: wait until it has been reaped.
    deadline=$((SECONDS + 10))
    while [[ -n "$(ps -o pid= -p "$pid" 2>/dev/null || true)" ]] && ((SECONDS < deadline)); do sleep 0.1; done
    info "postgres killed"
}

do_status() {
    locate_binaries
    setup_run_user
    resolve_state_dir
    if [[ -f "$PG_REAL_DATA/PG_VERSION" ]] && pg_running; then
        local pid
        pid="$(head -n 1 "$PG_REAL_DATA/postmaster.pid" 2>/dev/null || echo '?')"
        info "postgres: running (pid $pid) on $ENLACE_HOST:$ENLACE_PG_PORT data $PG_REAL_DATA"
        return 0
    fi
    info "postgres: stopped (would listen on $ENLACE_HOST:$ENLACE_PG_PORT)"
    return 3
}

# ensure_role SERVICE: its login role, with exactly the attributes below and the
# password of its secret file (created on first use). Idempotent.
ensure_role() {
    local role password
    role="$(service_role "$1")"
    password="$(ensure_secret "postgres/$role.password")"
    # The password goes in on stdin (never on a command line); it is URL-safe base64.
    [[ "$password" =~ ^[A-Za-z0-9_-]+$ ]] || die "unexpected characters in $(secret_file "$role")"
    run_psql -d postgres -q -v role="$role" <<SQL
\\set password '$password'
SELECT format('CREATE ROLE %I', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\\gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT -1 PASSWORD %L', :'role', :'password')
\\gexec
SQL
}

# createdb NAME SERVICE: idempotent; NAME is owned by SERVICE's role, and no other
# role (PUBLIC) may connect to it.
do_createdb() {
    local name="$1" owner
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] || die "invalid database name: $name"
    owner="$(service_role "$2")"
    # \gexec runs the generated statement only when the database is missing.
    run_psql -d postgres -q -v dbname="$name" -v owner="$owner" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'dbname', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'dbname', :'owner')
\gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'dbname')
\gexec
SQL
}

# The cluster's own databases: nobody but the superuser connects to them.
lock_system_databases() {
    run_psql -d postgres -q <<'SQL'
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;
SQL
}

# dsn SERVICE [DATABASE]: how SERVICE's role reaches DATABASE [enlace_<service>].
do_dsn() {
    local role database="${2:-}"
    role="$(service_role "$1")"
    database="${database:-$role}"
    [[ "$database" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] || die "invalid database name: $database"
    printf 'postgresql://%s:%s@%s:%s/%s\n' "$role" "$(role_password "$role")" \
        "$ENLACE_HOST" "$ENLACE_PG_PORT" "$database"
}

# Commands that only talk SQL need the binaries and the port, nothing else.
sql_prereqs() {
    locate_binaries
    role_password "$PG_SUPERUSER" >/dev/null
    run_psql -d postgres -qAtc 'SELECT 1' >/dev/null 2>&1 \
        || die "PostgreSQL is not answering on $ENLACE_HOST:$ENLACE_PG_PORT; run deploy/local/postgres.sh start" "$PG_LOG"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install) with_lock "$PG_LOCK"; do_install; info "postgres cluster ready in $PG_REAL_DATA" ;;
    start) with_lock "$PG_LOCK"; do_start ;;
    stop) with_lock "$PG_LOCK"; do_stop ;;
    restart) with_lock "$PG_LOCK"; do_restart ;;
    kill) with_lock "$PG_LOCK"; do_kill ;;
    pid) do_pid ;;
    status) do_status ;;
    createdb)
        [[ $# -eq 2 ]] || usage
        with_lock "$PG_LOCK"; sql_prereqs; ensure_role "$2"; do_createdb "$1" "$2"
        info "database $1 present, owned by $(service_role "$2")"
        ;;
    createdbs)
        with_lock "$PG_LOCK"; sql_prereqs; lock_system_databases
        for svc in "${PG_SERVICES[@]}"; do
            ensure_role "$svc"
            do_createdb "enlace_$svc" "$svc"
        done
        info "databases present, each owned by its service's role: ${PG_SERVICE_DBS[*]}"
        ;;
    dsn)
        [[ $# -ge 1 && $# -le 2 ]] || usage
        do_dsn "$@"
        ;;
    psql)
        locate_binaries
        PGPASSWORD="$(role_password "$PG_SUPERUSER")"
        export PGPASSWORD
        # Default database 'postgres'; a -d/--dbname in the args wins (psql takes the last one).
        exec "$PG_BIN/psql" -X -h "$ENLACE_HOST" -p "$ENLACE_PG_PORT" -U "$PG_SUPERUSER" -d postgres "$@"
        ;;
    *) usage ;;
esac
