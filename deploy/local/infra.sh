#!/usr/bin/env bash
# Local Kafka + PostgreSQL (+ the SoftHSM2 token of intake's KEKs) for development
# and tests, no Docker; installs Prometheus and Alertmanager (monitoring.sh starts them).
# Usage: deploy/local/infra.sh {up|down|status}
# Every command is idempotent: `up` on a running stack just confirms it.
set -euo pipefail

# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

print_addresses() {
    info "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP (SASL_SSL, SCRAM-SHA-512; CA $KAFKA_CA_FILE)"
    if ((ENLACE_KAFKA_NODES > 1)); then
        info "  $ENLACE_KAFKA_NODES Kafka nodes, one quorum: replication factor $ENLACE_KAFKA_NODES, min.insync.replicas $((ENLACE_KAFKA_NODES / 2 + 1)); one node: deploy/local/kafka.sh {stop|start|pause|resume} --node N"
    fi
    info "  principals and ACLs: deploy/kafka-access.yaml; passwords: $SECRETS_DIR/kafka/<principal>.password"
    info "PostgreSQL $ENLACE_HOST:$ENLACE_PG_PORT, databases ${PG_SERVICE_DBS[*]}, each owned by its service's role"
    info "  a service's DATABASE_URL: deploy/local/postgres.sh dsn <service>; superuser shell: deploy/local/postgres.sh psql"
    info "SoftHSM2 token enlace-intake (intake's KEKs with ENLACE_KEK_PROVIDER=pkcs11): deploy/local/softhsm.sh env"
}

up() {
    local t0=$SECONDS pg_out pg_job pg_rc=0 kafka_rc=0 hsm_out hsm_job hsm_rc=0 mon_out mon_job mon_rc=0
    mkdir -p "$RUN_DIR"
    # Private output files: two `up` may run at once (parallel test sessions).
    pg_out="$(mktemp "$RUN_DIR/postgres-up.XXXXXX")"
    hsm_out="$(mktemp "$RUN_DIR/softhsm-up.XXXXXX")"
    mon_out="$(mktemp "$RUN_DIR/monitoring-up.XXXXXX")"
    # The SoftHSM2 token too (tens of ms once made; apt-get on a cold machine).
    "$DEPLOY_LOCAL_DIR/softhsm.sh" init >"$hsm_out" 2>&1 &
    hsm_job=$!
    # Prometheus, Alertmanager and promtool installed (the suite tests the alert rules;
    # `make run` starts them after the services). Nothing when they are there.
    "$DEPLOY_LOCAL_DIR/monitoring.sh" install >"$mon_out" 2>&1 &
    mon_job=$!
    # PostgreSQL starts in the background while Kafka (the slow one) starts:
    # on a cold machine that overlaps initdb with the Maven resolve and JVM boot.
    "$DEPLOY_LOCAL_DIR/postgres.sh" start >"$pg_out" 2>&1 &
    pg_job=$!
    "$DEPLOY_LOCAL_DIR/kafka.sh" start || kafka_rc=$?
    wait "$pg_job" || pg_rc=$?
    wait "$hsm_job" || hsm_rc=$?
    wait "$mon_job" || mon_rc=$?
    sed 's/^/[postgres] /' "$pg_out"
    sed 's/^/[softhsm] /' "$hsm_out"
    sed 's/^/[monitoring] /' "$mon_out"
    rm -f -- "$pg_out" "$hsm_out" "$mon_out"
    ((kafka_rc == 0)) || die "kafka failed to start (exit $kafka_rc); see messages above" "$KAFKA_LOG"
    ((pg_rc == 0)) || die "postgres failed to start (exit $pg_rc); see messages above" "$PG_LOG"
    ((hsm_rc == 0)) || die "the SoftHSM2 token could not be made (exit $hsm_rc); see messages above"
    ((mon_rc == 0)) || die "Prometheus and Alertmanager could not be installed (exit $mon_rc); see messages above"
    "$DEPLOY_LOCAL_DIR/postgres.sh" createdbs
    # Kafka principals and ACLs from deploy/kafka-access.yaml (idempotent).
    "$PYTHON" "$DEPLOY_LOCAL_DIR/kafka_access.py" || die "could not apply deploy/kafka-access.yaml to Kafka" "$KAFKA_LOG"
    info "infra up in $((SECONDS - t0)) s"
    print_addresses
}

down() {
    local rc=0
    "$DEPLOY_LOCAL_DIR/kafka.sh" stop || rc=1
    "$DEPLOY_LOCAL_DIR/postgres.sh" stop || rc=1
    return "$rc"
}

status() {
    local rc=0
    "$DEPLOY_LOCAL_DIR/kafka.sh" status || rc=3
    "$DEPLOY_LOCAL_DIR/postgres.sh" status || rc=3
    "$DEPLOY_LOCAL_DIR/softhsm.sh" status || rc=3
    print_addresses
    return "$rc"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 {up|down|status}" >&2; exit 2 ;;
esac
