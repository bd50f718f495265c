#!/usr/bin/env bash
# Apache Kafka 4.x in KRaft mode on 127.0.0.1, run from the official Maven Central
# artifacts with the machine's Java 17+: one combined broker+controller, or, with
# ENLACE_KAFKA_NODES=3, three of them formed into one cluster (see env.sh).
# Usage: deploy/local/kafka.sh {install|start [--node N]|stop [--kill] [--node N]|status
#                               |pid --node N|pause --node N|resume --node N|logs [--node N]}
# Without --node a command acts on every node; node 1 is the single broker.
# pause/resume send SIGSTOP/SIGCONT (a hung node, for fault tests).
set -euo pipefail

# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

NODES="$ENLACE_KAFKA_NODES"
CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
MAIN_CLASS=kafka.Kafka
# StorageTool runs for a second: a JVM tuned to start fast, not to run long.
TOOL_JVM=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

usage() {
    echo "usage: $0 {install|start [--node N]|stop [--kill] [--node N]|status|pid --node N|pause --node N|resume --node N|logs [--node N]}" >&2
    exit 2
}

multi() { ((NODES > 1)); }

# use_node N: point the NODE_* variables at node N's files and ports.
use_node() {
    NODE="$1"
    NODE_DIR="$(kafka_node_dir "$1")"
    NODE_DATA="$NODE_DIR/data"
    NODE_LOG_DIR="$NODE_DIR/logs"
    NODE_LOG="$NODE_LOG_DIR/server.log"
    NODE_STDOUT_LOG="$NODE_LOG_DIR/stdout.log"
    NODE_PROPS="$NODE_DIR/server.properties"
    NODE_LOG4J="$NODE_DIR/log4j2.properties"
    NODE_PORT="$(kafka_port "$1")"
    NODE_CPORT="$(kafka_controller_port "$1")"
    NODE_NAME=kafka
    NODE_PID_FILE="$RUN_DIR/$ENLACE_KAFKA_INSTANCE.pid"
    if multi; then
        NODE_NAME="kafka node $1"
        NODE_PID_FILE="$RUN_DIR/$ENLACE_KAFKA_INSTANCE-node$1.pid"
    fi
}

# targets [N]: the nodes a command acts on (N alone, or all).
targets() { if [[ -n "${1:-}" ]]; then echo "$1"; else seq 1 "$NODES"; fi; }

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
    # Every instance shares the libraries: one resolve at a time (fd 7; 9 is the instance's).
    mkdir -p "$RUN_DIR"
    exec 7>"$RUN_DIR/kafka-libs.lock"
    flock -w 900 7 || die "could not take lock $RUN_DIR/kafka-libs.lock within 900 s"
    if libs_present; then exec 7>&-; return 0; fi
    if ! command -v mvn >/dev/null 2>&1; then
        apt_install maven
    fi
    info "resolving Kafka with Maven (Central, cached in ~/.m2) into $KAFKA_LIBS (first run only)"
    # Resolve into a temp dir and rename: an interrupted download never leaves
    # a half-filled libs dir that would pass the check above.
    local tmp="$LOCAL_DIR/kafka/libs.tmp"
    rm -rf -- "$tmp"
    mkdir -p "$LOCAL_DIR/kafka" "$KAFKA_LOG_DIR"
    mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_LOG_DIR/mvn.log" 2>&1 \
        || die "mvn could not resolve Kafka (is Maven Central reachable? proxy in ~/.m2/settings.xml?)" "$KAFKA_LOG_DIR/mvn.log"
    # copy-dependencies of a pom-packaging project copies its direct deps, so
    # kafka_2.13 itself is there (verified with 4.1.1); fail loudly if not.
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka_2.13 jar missing after mvn copy-dependencies in $tmp"
    rm -rf -- "$KAFKA_LIBS"
    mv -- "$tmp" "$KAFKA_LIBS"
    exec 7>&-
}

kafka_version() {
    local jar
    jar="$(compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" | head -n 1)"
    jar="${jar##*/kafka_2.13-}"
    echo "${jar%.jar}"
}

# shellcheck source=deploy/local/kafka_config.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/kafka_config.sh"
# shellcheck source=deploy/local/kafka_storage.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/kafka_storage.sh"

# instance_pids: every running broker of this instance, whatever its mode.
instance_pids() {
    local dir pid cmdline
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        cmdline="$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null)" || continue
        [[ "$cmdline" == *" $MAIN_CLASS $KAFKA_DIR/"* ]] && echo "$pid"
    done
    return 0
}

do_install() {
    check_java
    install_libs
    reset_other_mode
    ensure_tls
    local n
    for n in $(targets); do
        use_node "$n"
        write_config
    done
    format_storage
}

# is_our_kafka PID: live process that is the current node (guards against pid reuse).
is_our_kafka() {
    local pid="$1" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" $MAIN_CLASS $NODE_PROPS "* ]]
}

# find_pid: print the current node's pid, from its pid file or, if that is lost or
# stale, by scanning /proc for a java running its server.properties.
find_pid() {
    local pid dir
    if [[ -r "$NODE_PID_FILE" ]]; then
        pid="$(<"$NODE_PID_FILE")"
        if is_our_kafka "$pid"; then echo "$pid"; return 0; fi
    fi
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        if is_our_kafka "$pid"; then
            mkdir -p "$RUN_DIR"; echo "$pid" >"$NODE_PID_FILE"; echo "$pid"; return 0
        fi
    done
    return 1
}

# paused PID: true if the process is stopped (SIGSTOP).
paused() { [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" == T ]]; }

# wait_ready BOOTSTRAP PIDS [--broker-id N | --brokers N]: an admin client gets
# metadata back through BOOTSTRAP, with those brokers registered.
wait_ready() {
    local bootstrap="$1" pids="$2" pid args=()
    shift 2
    [[ -x "$PYTHON" ]] || die "python with aiokafka not found at $PYTHON (create .venv or set ENLACE_PYTHON)"
    args=(--admin)
    [[ "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]] && args=(--plaintext)
    for pid in $pids; do args+=(--pid "$pid"); done
    if ! "$PYTHON" "$DEPLOY_LOCAL_DIR/kafka_ready.py" --bootstrap "$bootstrap" "${args[@]}" "$@" \
        --timeout "$ENLACE_READY_TIMEOUT"; then
        local logs="$NODE_STDOUT_LOG"
        multi && logs="$KAFKA_DIR/node*/logs/"
        die "Kafka did not become ready on $bootstrap within ${ENLACE_READY_TIMEOUT}s (also see $logs)" "$NODE_LOG"
    fi
}

# launch: start the current node in the background; its pid in LAUNCHED_PID.
launch() {
    if port_open "$NODE_PORT" || port_open "$NODE_CPORT"; then
        die "port $NODE_PORT or $NODE_CPORT is taken by another process (another checkout's broker?); stop it or set ENLACE_KAFKA_PORT/ENLACE_KAFKA_CONTROLLER_PORT"
    fi
    info "starting kafka $(kafka_version)${NODE_NAME#kafka} on $ENLACE_HOST:$NODE_PORT"
    rm -f -- "$NODE_PID_FILE"
    # Marker, so a failure tail shows this run's lines, not the previous run's.
    printf '===== %s kafka.sh start =====\n' "$(date -u '+%Y-%m-%d %H:%M:%S')" >>"$NODE_LOG"
    # setsid: own session, so Ctrl-C/hangup of the caller does not kill it.
    # bash writes its own pid then execs java, so the pid file is java's pid.
    # 9>&- : do not let the broker inherit the start/stop lock.
    # $ENLACE_KAFKA_HEAP is deliberately unquoted: it holds several JVM options.
    # shellcheck disable=SC2016,SC2086
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$NODE_PID_FILE" \
        java $ENLACE_KAFKA_HEAP -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$NODE_LOG4J" -Dkafka.logs.dir="$NODE_LOG_DIR" \
        -cp "$KAFKA_LIBS/*" "$MAIN_CLASS" "$NODE_PROPS" \
        </dev/null >>"$NODE_STDOUT_LOG" 2>&1 9>&- &
    # Wait briefly for the pid file written by the child.
    local i
    for ((i = 0; i < 50; i++)); do [[ -s "$NODE_PID_FILE" ]] && break; sleep 0.1; done
    [[ -s "$NODE_PID_FILE" ]] || die "$NODE_NAME did not start" "$NODE_STDOUT_LOG"
    LAUNCHED_PID="$(<"$NODE_PID_FILE")"
}

# do_start [N]: start the nodes not running (N alone, or all) and wait until the
# cluster answers with them registered.
do_start() {
    local only="${1:-}" n pid pids="" started="" t0=$SECONDS
    do_install
    for n in $(targets "$only"); do
        use_node "$n"
        if pid="$(find_pid)"; then
            paused "$pid" && die "$NODE_NAME (pid $pid) is paused: resume it first (kafka.sh resume --node $n)"
            pids+=" $pid"
            continue
        fi
        launch
        pids+=" $LAUNCHED_PID"
        started+=" $n"
    done
    local bootstrap="$KAFKA_BOOTSTRAP" ready=(--brokers "$NODES")
    if [[ -n "$only" ]]; then
        # Through the node's own listener: it answers only once registered and unfenced.
        use_node "$only"
        bootstrap="$ENLACE_HOST:$NODE_PORT"
        ready=(--broker-id "$only")
    fi
    wait_ready "$bootstrap" "$pids" "${ready[@]}"
    if [[ -z "$started" ]]; then
        info "$( [[ -n "$only" ]] && echo "$NODE_NAME" || echo kafka) already running (pid$( multi && [[ -z "$only" ]] && echo s)${pids}) on $bootstrap"
    elif [[ -n "$only" ]] || ! multi; then
        info "$NODE_NAME ready (pid${pids}) on $bootstrap in $((SECONDS - t0)) s"
    else
        info "kafka cluster ready ($NODES nodes, pids${pids}) on $bootstrap in $((SECONDS - t0)) s"
    fi
}

# signal_stop KILL PID NAME: SIGKILL at once, or SIGTERM (and SIGCONT: a paused node
# would never see the SIGTERM).
signal_stop() {
    if (($1)); then
        info "killing $3 (pid $2) with SIGKILL"
        kill -KILL "$2" 2>/dev/null || true
    else
        info "stopping $3 (pid $2)"
        kill -TERM "$2" 2>/dev/null || true
        kill -CONT "$2" 2>/dev/null || true
    fi
}

# wait_gone PID NAME LOG: wait for the process to exit, SIGKILL after the stop timeout.
wait_gone() {
    local deadline=$((SECONDS + ENLACE_STOP_TIMEOUT))
    while kill -0 "$1" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            info "$2 did not exit within ${ENLACE_STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$1" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            # Second lap: a SIGKILLed process exits promptly.
            while kill -0 "$1" 2>/dev/null; do
                ((SECONDS < deadline)) || die "$2 pid $1 survives SIGKILL" "$3"
                sleep 0.2
            done
            break
        fi
        sleep 0.2
    done
}

# do_stop KILL [N]: stop the nodes (N alone, or all) together, and wait until they are
# gone. Stopping all also stops a broker of this instance started with the other
# ENLACE_KAFKA_NODES, so `make stop` never leaves one behind.
do_stop() {
    local kill_now="$1" only="${2:-}" n pid entry left=() stopping=" "
    for n in $(targets "$only"); do
        use_node "$n"
        if ! pid="$(find_pid)"; then
            rm -f -- "$NODE_PID_FILE"
            info "$NODE_NAME not running"
            continue
        fi
        signal_stop "$kill_now" "$pid" "$NODE_NAME"
        left+=("$pid|$NODE_NAME|$NODE_PID_FILE|$NODE_LOG")
        stopping+="$pid "
    done
    if [[ -z "$only" ]]; then
        for pid in $(instance_pids); do
            [[ "$stopping" == *" $pid "* ]] && continue
            signal_stop "$kill_now" "$pid" "kafka of instance $ENLACE_KAFKA_INSTANCE (other ENLACE_KAFKA_NODES)"
            left+=("$pid|kafka pid $pid|/dev/null|$KAFKA_DIR")
        done
    fi
    local name pid_file log
    for entry in "${left[@]}"; do
        IFS='|' read -r pid name pid_file log <<<"$entry"
        wait_gone "$pid" "$name" "$log"
        [[ "$pid_file" == /dev/null ]] || rm -f -- "$pid_file"
        info "$name stopped"
    done
}

do_status() {
    local n pid rc=0
    for n in $(targets); do
        use_node "$n"
        pid=""
        if pid="$(find_pid)" && paused "$pid"; then
            info "$NODE_NAME: paused (pid $pid, SIGSTOP; kafka.sh resume --node $n)"
            rc=3
        elif [[ -n "$pid" ]] && port_open "$NODE_PORT"; then
            info "$NODE_NAME: running (pid $pid) bootstrap $( multi && echo "$ENLACE_HOST:$NODE_PORT" || echo "$KAFKA_BOOTSTRAP")"
        elif [[ -n "$pid" ]]; then
            info "$NODE_NAME: starting or unhealthy (pid $pid, port $NODE_PORT not answering) log $NODE_LOG"
            rc=3
        else
            info "$NODE_NAME: stopped (bootstrap would be $( multi && echo "$ENLACE_HOST:$NODE_PORT" || echo "$KAFKA_BOOTSTRAP"))"
            rc=3
        fi
    done
    multi && info "kafka cluster bootstrap $KAFKA_BOOTSTRAP"
    return "$rc"
}

# do_signal SIGNAL VERB N: pause or resume one node.
do_signal() {
    use_node "$3"
    local pid
    pid="$(find_pid)" || die "$NODE_NAME is not running"
    kill "-$1" "$pid"
    info "$NODE_NAME (pid $pid) $2"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
KILL=0 ONLY=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kill) [[ "$cmd" == stop ]] || usage; KILL=1 ;;
        --node) [[ $# -ge 2 ]] || usage; ONLY="$2"; shift ;;
        --node=*) ONLY="${1#--node=}" ;;
        *) usage ;;
    esac
    shift
done
if [[ -n "$ONLY" ]]; then
    [[ "$ONLY" =~ ^[0-9]+$ ]] && ((ONLY >= 1 && ONLY <= NODES)) \
        || die "--node $ONLY: instance $ENLACE_KAFKA_INSTANCE has nodes 1..$NODES (ENLACE_KAFKA_NODES=$NODES)"
    [[ "$cmd" == install || "$cmd" == status ]] && usage
fi
case "$cmd" in
    install) with_lock "$ENLACE_KAFKA_INSTANCE"; do_install; info "kafka $(kafka_version) installed in $KAFKA_LIBS" ;;
    start) with_lock "$ENLACE_KAFKA_INSTANCE"; do_start "$ONLY" ;;
    stop) with_lock "$ENLACE_KAFKA_INSTANCE"; do_stop "$KILL" "$ONLY" ;;
    status) do_status ;;
    pid)
        [[ -n "$ONLY" ]] || usage
        use_node "$ONLY"
        find_pid || { info "$NODE_NAME is not running" >&2; exit 3; } ;;
    pause) [[ -n "$ONLY" ]] || usage; do_signal STOP "paused (SIGSTOP)" "$ONLY" ;;
    resume) [[ -n "$ONLY" ]] || usage; do_signal CONT "resumed (SIGCONT)" "$ONLY" ;;
    # Follow only on a terminal; in CI just print the tail and return.
    logs)
        use_node "${ONLY:-1}"
        if [[ -t 1 ]]; then exec tail -n 100 -F -- "$NODE_LOG"; else exec tail -n 200 -- "$NODE_LOG"; fi ;;
    *) usage ;;
esac
