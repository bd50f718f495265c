#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, combined broker+controller) on 127.0.0.1,
# run from the official Maven Central artifacts with the machine's Java 17+.
# Usage: deploy/local/kafka.sh {install|start|stop [--kill]|status|logs}
set -euo pipefail

# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

PID_FILE="$RUN_DIR/$ENLACE_KAFKA_INSTANCE.pid"
CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
MAIN_CLASS=kafka.Kafka

usage() { echo "usage: $0 {install|start|stop [--kill]|status|logs}" >&2; exit 2; }

check_java() {
    command -v java >/dev/null 2>&1 || die "java not found; Kafka 4.x needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
    local line major
    line="$(java -version 2>&1 | head -n 1)"
    # 'openjdk version "17.0.15" ...' or legacy 'java version "1.8.0_x"'.
    major="$(sed -E 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/' <<<"$line")"
    if [[ "${major%% *}" == 1 ]]; then major="${major#* }"; else major="${major%% *}"; fi
    [[ "$major" =~ ^[0-9]+$ ]] || die "cannot read the Java version from: $line"
    ((major >= 17)) || die "Kafka 4.x needs Java 17 or newer, found: $line (set PATH/JAVA_HOME to a JDK 17+)"
}

libs_present() { compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; }

install_libs() {
    libs_present && return 0
    if ! command -v mvn >/dev/null 2>&1; then
        apt_install maven
    fi
    info "resolving Kafka with Maven (Central, cached in ~/.m2) into $KAFKA_LIBS (first run only)"
    # Resolve into a temp dir and rename: an interrupted download never leaves
    # a half-filled libs dir that would pass the check above.
    local tmp="$KAFKA_DIR/libs.tmp"
    rm -rf -- "$tmp"
    mkdir -p "$KAFKA_DIR"
    mkdir -p "$KAFKA_LOG_DIR"
    mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_LOG_DIR/mvn.log" 2>&1 \
        || die "mvn could not resolve Kafka (is Maven Central reachable? proxy in ~/.m2/settings.xml?)" "$KAFKA_LOG_DIR/mvn.log"
    # copy-dependencies of a pom-packaging project copies its direct deps, so
    # kafka_2.13 itself is there (verified with 4.1.1); fail loudly if not.
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka_2.13 jar missing after mvn copy-dependencies in $tmp"
    rm -rf -- "$KAFKA_LIBS"
    mv -- "$tmp" "$KAFKA_LIBS"
}

kafka_version() {
    local jar
    jar="$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" | head -n 1)"
    jar="${jar##*/kafka_2.13-}"
    echo "${jar%.jar}"
}

# TLS material of the client listener, made once by this script with openssl: a
# project-local CA and a broker certificate for 127.0.0.1/localhost signed by it.
# Kafka reads PEM directly (ssl.keystore.type=PEM), so no Java keystore is needed.
# Shared by every local broker instance; clients trust $KAFKA_CA_FILE.
ensure_tls() {
    [[ -s "$KAFKA_CA_FILE" && -s "$KAFKA_TLS_DIR/broker.pem" ]] && return 0
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    info "making the local Kafka CA and broker certificate in $KAFKA_TLS_DIR"
    mkdir -p "$KAFKA_TLS_DIR"
    chmod 700 "$SECRETS_DIR" "$KAFKA_TLS_DIR"
    (
        umask 077
        cd "$KAFKA_TLS_DIR"
        openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.crt.tmp -days 3650 \
            -subj "/CN=Enlace local Kafka CA" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey rsa:3072 -nodes -keyout broker.key -out broker.csr \
            -subj "/CN=localhost" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >broker.ext
        openssl x509 -req -in broker.csr -CA ca.crt.tmp -CAkey ca.key -CAcreateserial \
            -out broker.crt -days 825 -extfile broker.ext 2>/dev/null
        # The PKCS#8 key, then the chain: the layout Kafka's PEM keystore expects.
        { openssl pkcs8 -topk8 -nocrypt -in broker.key; cat broker.crt ca.crt.tmp; } >broker.pem
        rm -f broker.csr broker.ext ca.crt.srl broker.key
        mv ca.crt.tmp ca.crt
    ) || die "could not make the Kafka TLS material in $KAFKA_TLS_DIR"
}

write_config() {
    mkdir -p "$KAFKA_DATA" "$KAFKA_LOG_DIR" "$RUN_DIR"
    ensure_tls
    local admin_pw controller_pw
    admin_pw="$(ensure_secret kafka/admin.password)"
    controller_pw="$(ensure_secret kafka/controller.password)"
    # Rewritten every time (cheap) so port changes in env take effect. It holds the
    # admin and controller passwords: owner-only.
    local security
    if [[ "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]]; then
        # The bench's baseline broker alone (make bench measures what TLS and SCRAM
        # cost): never the shared instance, never started by make run or make test.
        [[ "$ENLACE_KAFKA_INSTANCE" == bench-* ]] \
            || die "ENLACE_KAFKA_PLAINTEXT_BASELINE is for a bench-* instance only, not $ENLACE_KAFKA_INSTANCE"
        security="# UNAUTHENTICATED baseline broker of make bench: no client data ever goes here.
listeners=PLAINTEXT://$ENLACE_HOST:$ENLACE_KAFKA_PORT,CONTROLLER://$ENLACE_HOST:$ENLACE_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$ENLACE_HOST:$ENLACE_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    else
        security="$(cat <<SEC
# Clients (and the broker to itself) only over SASL_SSL with SCRAM-SHA-512; there is
# no PLAINTEXT listener. KRaft cannot use SCRAM on the controller listener
# (KAFKA-15513): it authenticates with PLAIN there, over TLS too.
listeners=SASL_SSL://$ENLACE_HOST:$ENLACE_KAFKA_PORT,CONTROLLER://$ENLACE_HOST:$ENLACE_KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$ENLACE_HOST:$ENLACE_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$controller_pw" user_controller="$controller_pw";
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_CA_FILE
ssl.client.auth=none
# Nothing is allowed unless an ACL says so. admin (used by the scripts alone) and the
# controller are the only super users; every other principal and ACL comes from
# deploy/kafka-access.yaml through deploy/local/kafka_access.py.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false
SEC
)"
    fi
    (umask 077 && cat >"$KAFKA_PROPS") <<EOF
# Generated by deploy/local/kafka.sh; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$ENLACE_HOST:$ENLACE_KAFKA_CONTROLLER_PORT
$security
log.dirs=$KAFKA_DATA
# Single broker: every internal topic must have replication factor 1.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers join at once instead of waiting 3 s for more members (tests).
group.initial.rebalance.delay.ms=0
# Topics are created explicitly, never by a typo in a producer.
auto.create.topics.enable=false
num.partitions=3
log.retention.hours=168
num.network.threads=2
num.io.threads=2
# After a crash (kill -9) the controller refuses the new broker incarnation until
# the old one's session expires: 9 s by default. 5 s keeps restarts quick while
# still tolerating GC pauses on a busy 2-core CI machine.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000
EOF
    # log4j2 properties format: needs only log4j-core (no YAML/JSON parser).
    cat >"$KAFKA_LOG4J" <<EOF
# Generated by deploy/local/kafka.sh; edits are overwritten.
status = warn
name = enlace-kafka
appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = $KAFKA_LOG
appender.server.filePattern = $KAFKA_LOG.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER
# Per-request logging is far too chatty for a dev broker.
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

format_storage() {
    # Format once. meta.properties is what StorageTool writes; --ignore-formatted
    # keeps a concurrent/repeated format harmless anyway. The marker says the storage
    # holds the SCRAM admin user: storage formatted by the older, unauthenticated
    # version of this script holds local test data only and is formatted again.
    if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
        [[ -f "$KAFKA_DATA/.enlace-scram" || "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]] && return 0
        info "kafka storage in $KAFKA_DATA predates SASL (no admin user): formatting it again"
        rm -rf -- "$KAFKA_DATA"
        mkdir -p "$KAFKA_DATA"
    fi
    [[ -s "$CLUSTER_ID_FILE" ]] || java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE"
    local scram=""
    [[ "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]] || scram="SCRAM-SHA-512=[name=admin,password=$(ensure_secret kafka/admin.password)]"
    info "formatting KRaft storage in $KAFKA_DATA (cluster id $(<"$CLUSTER_ID_FILE"))"
    # --standalone: single-voter dynamic quorum, matches controller.quorum.bootstrap.servers.
    # --add-scram: the inter-broker (and scripts') admin user must exist before the
    # first start (KIP-900); every other user is added at run time by kafka_access.py.
    java -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
        --config "$KAFKA_PROPS" --cluster-id "$(<"$CLUSTER_ID_FILE")" --standalone --ignore-formatted \
        ${scram:+--add-scram "$scram"} \
        >>"$KAFKA_LOG_DIR/format.log" 2>&1 \
        || die "kafka storage format failed" "$KAFKA_LOG_DIR/format.log"
    touch "$KAFKA_DATA/.enlace-scram"
}

do_install() {
    check_java
    install_libs
    write_config
    format_storage
}

# is_our_kafka PID: live process that is this checkout's broker (guards against pid reuse).
is_our_kafka() {
    local pid="$1" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" $MAIN_CLASS $KAFKA_PROPS"* ]]
}

# find_pid: print the broker pid, from the pid file or, if that is lost/stale,
# by scanning /proc for a java running our server.properties.
find_pid() {
    local pid dir
    if [[ -r "$PID_FILE" ]]; then
        pid="$(<"$PID_FILE")"
        if is_our_kafka "$pid"; then echo "$pid"; return 0; fi
    fi
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        if is_our_kafka "$pid"; then
            mkdir -p "$RUN_DIR"; echo "$pid" >"$PID_FILE"; echo "$pid"; return 0
        fi
    done
    return 1
}

wait_ready() {
    local pid="$1"
    [[ -x "$PYTHON" ]] || die "python with aiokafka not found at $PYTHON (create .venv or set ENLACE_PYTHON)"
    local who=--admin
    [[ "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]] && who=--plaintext
    if ! "$PYTHON" "$DEPLOY_LOCAL_DIR/kafka_ready.py" --bootstrap "$KAFKA_BOOTSTRAP" "$who" \
        --timeout "$ENLACE_READY_TIMEOUT" --pid "$pid"; then
        die "Kafka did not become ready on $KAFKA_BOOTSTRAP within ${ENLACE_READY_TIMEOUT}s (also see $KAFKA_STDOUT_LOG)" "$KAFKA_LOG"
    fi
}

do_start() {
    do_install
    local pid
    if pid="$(find_pid)"; then
        # Running (maybe still starting): wait for readiness rather than launch a second one.
        wait_ready "$pid"
        info "kafka already running (pid $pid) on $KAFKA_BOOTSTRAP"
        return 0
    fi
    if port_open "$ENLACE_KAFKA_PORT" || port_open "$ENLACE_KAFKA_CONTROLLER_PORT"; then
        die "port $ENLACE_KAFKA_PORT or $ENLACE_KAFKA_CONTROLLER_PORT is taken by another process (another checkout's broker?); stop it or set ENLACE_KAFKA_PORT/ENLACE_KAFKA_CONTROLLER_PORT"
    fi
    info "starting kafka $(kafka_version) on $KAFKA_BOOTSTRAP"
    local t0=$SECONDS
    rm -f -- "$PID_FILE"
    # Marker, so a failure tail shows this run's lines, not the previous run's.
    printf '===== %s kafka.sh start =====\n' "$(date -u '+%Y-%m-%d %H:%M:%S')" >>"$KAFKA_LOG"
    # setsid: own session, so Ctrl-C/hangup of the caller does not kill it.
    # bash writes its own pid then execs java, so the pid file is java's pid.
    # 9>&- : do not let the broker inherit the start/stop lock.
    # $ENLACE_KAFKA_HEAP is deliberately unquoted: it holds several JVM options.
    # shellcheck disable=SC2016,SC2086
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        java $ENLACE_KAFKA_HEAP -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
        -cp "$KAFKA_LIBS/*" "$MAIN_CLASS" "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_STDOUT_LOG" 2>&1 9>&- &
    # Wait briefly for the pid file written by the child.
    local i
    for ((i = 0; i < 50; i++)); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
    pid="$(<"$PID_FILE")"
    wait_ready "$pid"
    info "kafka ready (pid $pid) on $KAFKA_BOOTSTRAP in $((SECONDS - t0)) s"
}

do_stop() {
    local kill_now=0
    [[ "${1:-}" == "--kill" ]] && kill_now=1
    local pid
    if ! pid="$(find_pid)"; then
        rm -f -- "$PID_FILE"
        info "kafka not running"
        return 0
    fi
    if ((kill_now)); then
        info "killing kafka (pid $pid) with SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    else
        info "stopping kafka (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + ENLACE_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            info "kafka did not exit within ${ENLACE_STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            # Second lap: a SIGKILLed process exits promptly.
            while kill -0 "$pid" 2>/dev/null; do
                ((SECONDS < deadline)) || die "kafka pid $pid survives SIGKILL" "$KAFKA_LOG"
                sleep 0.2
            done
            break
        fi
        sleep 0.2
    done
    rm -f -- "$PID_FILE"
    info "kafka stopped"
}

do_status() {
    local pid
    if pid="$(find_pid)" && port_open "$ENLACE_KAFKA_PORT"; then
        info "kafka: running (pid $pid) bootstrap $KAFKA_BOOTSTRAP"
        return 0
    elif [[ -n "${pid:-}" ]]; then
        info "kafka: starting or unhealthy (pid $pid, port $ENLACE_KAFKA_PORT not answering) log $KAFKA_LOG"
        return 3
    fi
    info "kafka: stopped (bootstrap would be $KAFKA_BOOTSTRAP)"
    return 3
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install) with_lock kafka; do_install; info "kafka $(kafka_version) installed in $KAFKA_LIBS" ;;
    start) with_lock "$ENLACE_KAFKA_INSTANCE"; do_start ;;
    stop) with_lock "$ENLACE_KAFKA_INSTANCE"; do_stop "$@" ;;
    status) do_status ;;
    # Follow only on a terminal; in CI just print the tail and return.
    logs) if [[ -t 1 ]]; then exec tail -n 100 -F -- "$KAFKA_LOG"; else exec tail -n 200 -- "$KAFKA_LOG"; fi ;;
    *) usage ;;
esac
