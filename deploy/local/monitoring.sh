#!/usr/bin/env bash
# Prometheus and Alertmanager for this checkout, from Debian's packages, run as our own
# processes on loopback ports with project-local configuration and data; never as the
# packages' system daemons.
#
# Usage: deploy/local/monitoring.sh {install|start|stop|status}
#   install  the Debian packages prometheus (with promtool) and prometheus-alertmanager
#            (with amtool), if missing; quick when they are there (infra.sh up runs it)
#   start    render the configuration, start both (or reload them when running), wait
#            until both answer /-/ready
#   stop     stop both
#   status   say whether each runs (exit 3 when one does not) and list the alerts firing
#
# Prometheus (ENLACE_PROMETHEUS_PORT, 9190) scrapes /metrics of every service in
# ENLACE_MONITORED_SERVICES on its ENLACE_<SERVICE>_PORT (as services.sh: intake 8001,
# referral 8002, followup 8003, notifications 8004, ops 8005; job `enlace-<service>`),
# itself and Alertmanager, and evaluates deploy/monitoring/rules.yml. Alertmanager
# (ENLACE_ALERTMANAGER_PORT, 9193) mails every alert to ENLACE_ALERT_EMAIL_TO through
# the local SMTP server of services.sh (ENLACE_SMTP_PORT, 2525), so into its Maildir.
# Configuration is rendered from deploy/monitoring/*.tmpl into .local/monitoring/ at
# every start, beside the data (prometheus/, alertmanager/); logs in .local/logs/.
#
# ENLACE_STACK (as services.sh): a private stack's Prometheus and Alertmanager, their
# state in .local/stacks/<name>/; give them their own ports. A test shortens the
# intervals with ENLACE_PROMETHEUS_SCRAPE_INTERVAL, ENLACE_PROMETHEUS_EVALUATION_INTERVAL,
# ENLACE_ALERTMANAGER_GROUP_WAIT, ENLACE_ALERTMANAGER_GROUP_INTERVAL and loads another
# rules file with ENLACE_PROMETHEUS_RULES.
#
# The Debian packages enable a systemd unit and an init script each that would run
# them as system daemons on 0.0.0.0:9090 and :9093 (and the gossip port 9094). install
# keeps them from starting during the install (a policy-rc.d that refuses just them,
# when the machine has none of its own), then stops and disables them (systemctl
# disable, and stop when systemd runs; update-rc.d disable for the init scripts). It
# leaves out the recommended prometheus-node-exporter (another daemon, 0.0.0.0:9100).
set -euo pipefail

# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

usage() { echo "usage: $0 {install|start|stop|status}" >&2; exit 2; }

stack_dirs
MON_DIR="$STATE_DIR/monitoring"
LOG_DIR="$STATE_DIR/logs"
TEMPLATE_DIR="$REPO_ROOT/deploy/monitoring"

P_PROMETHEUS="${ENLACE_PROMETHEUS_PORT:-9190}"
P_ALERTMANAGER="${ENLACE_ALERTMANAGER_PORT:-9193}"
P_SMTP="${ENLACE_SMTP_PORT:-2525}"
MONITORED_SERVICES="${ENLACE_MONITORED_SERVICES:-intake referral followup notifications ops}"
RULES_SOURCE="${ENLACE_PROMETHEUS_RULES:-$TEMPLATE_DIR/rules.yml}"
EMAIL_TO="${ENLACE_ALERT_EMAIL_TO:-operaciones@enlace.example.org}"
EMAIL_FROM="${ENLACE_ALERT_EMAIL_FROM:-alertas@enlace.example.org}"
SCRAPE_INTERVAL="${ENLACE_PROMETHEUS_SCRAPE_INTERVAL:-15s}"
EVALUATION_INTERVAL="${ENLACE_PROMETHEUS_EVALUATION_INTERVAL:-15s}"
RETENTION="${ENLACE_PROMETHEUS_RETENTION:-15d}"
GROUP_WAIT="${ENLACE_ALERTMANAGER_GROUP_WAIT:-30s}"
GROUP_INTERVAL="${ENLACE_ALERTMANAGER_GROUP_INTERVAL:-5m}"
REPEAT_INTERVAL="${ENLACE_ALERTMANAGER_REPEAT_INTERVAL:-4h}"

PROMETHEUS_BIN=/usr/bin/prometheus
ALERTMANAGER_BIN=/usr/bin/prometheus-alertmanager
DEBIAN_UNITS=(prometheus prometheus-alertmanager)

# service_port NAME: the port services.sh gives the service (the same variables).
service_port() {
    case "$1" in
        intake) echo "${ENLACE_INTAKE_PORT:-8001}" ;;
        referral) echo "${ENLACE_REFERRAL_PORT:-8002}" ;;
        followup) echo "${ENLACE_FOLLOWUP_PORT:-8003}" ;;
        notifications) echo "${ENLACE_NOTIFICATIONS_PORT:-8004}" ;;
        ops) echo "${ENLACE_OPS_PORT:-8005}" ;;
        *) die "ENLACE_MONITORED_SERVICES: unknown service '$1' (intake referral followup notifications ops)" ;;
    esac
}

# ---- install -------------------------------------------------------------------------

installed() {
    [[ -x "$PROMETHEUS_BIN" && -x "$ALERTMANAGER_BIN" ]] \
        && command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1
}

POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_MARK="# enlace monitoring.sh: temporary"
OUR_POLICY=""

# While apt installs the packages: refuse their init scripts' start (invoke-rc.d and
# deb-systemd-invoke ask policy-rc.d; exit 101 = action forbidden), allow all else.
# A machine with a policy-rc.d of its own (a container's) keeps it.
guard_policy_rc_d() {
    if [[ -e "$POLICY_RC_D" ]] && ! grep -qF "$POLICY_MARK" "$POLICY_RC_D" 2>/dev/null; then
        return 0
    fi
    OUR_POLICY=1
    trap 'rm -f -- "$POLICY_RC_D"' EXIT
    {
        printf '#!/bin/sh\n%s, removed after apt-get install\n' "$POLICY_MARK"
        cat <<'POLICY'
case "$1" in
    prometheus|prometheus-alertmanager|prometheus-node-exporter) exit 101 ;;
esac
exit 0
POLICY
    } >"$POLICY_RC_D"
    chmod 755 "$POLICY_RC_D"
}

unguard_policy_rc_d() {
    [[ -n "$OUR_POLICY" ]] || return 0
    rm -f -- "$POLICY_RC_D"
    trap - EXIT
    OUR_POLICY=""
}

# The packages' system daemons: stopped if running, never started at boot. systemctl
# disable works on the unit links without a running systemd too (containers, CI).
disable_debian_daemons() {
    local unit
    for unit in "${DEBIAN_UNITS[@]}"; do
        if command -v systemctl >/dev/null 2>&1; then
            if [[ -d /run/systemd/system ]]; then systemctl stop "$unit.service" >/dev/null 2>&1 || true; fi
            systemctl disable --quiet "$unit.service" >/dev/null 2>&1 || true
        fi
        if [[ -x "/etc/init.d/$unit" ]]; then
            if "/etc/init.d/$unit" status >/dev/null 2>&1; then "/etc/init.d/$unit" stop >/dev/null 2>&1 || true; fi
            update-rc.d "$unit" disable >/dev/null 2>&1 || true
        fi
    done
    info "disabled the system daemons of the Debian packages (${DEBIAN_UNITS[*]}); ours run on $ENLACE_HOST:$P_PROMETHEUS and :$P_ALERTMANAGER"
}

do_install() {
    installed && return 0
    is_root && guard_policy_rc_d
    apt_install --no-install-recommends prometheus prometheus-alertmanager
    unguard_policy_rc_d
    installed || die "prometheus-alertmanager installed but $PROMETHEUS_BIN, $ALERTMANAGER_BIN, promtool or amtool is still missing"
    disable_debian_daemons
}

# ---- configuration -------------------------------------------------------------------

# check_settings: every setting well-formed, named by its variable when it is not.
check_settings() {
    local var value svc
    for var in PROMETHEUS ALERTMANAGER SMTP; do
        value="$(setting_value "$var")"
        if ! [[ "$value" =~ ^[0-9]{1,5}$ ]] || ((value == 0 || value > 65535)); then
            die "ENLACE_${var}_PORT: '$value' is not a port"
        fi
    done
    ((P_PROMETHEUS != P_ALERTMANAGER)) || die "ENLACE_PROMETHEUS_PORT and ENLACE_ALERTMANAGER_PORT are both $P_PROMETHEUS"
    for var in PROMETHEUS_SCRAPE_INTERVAL PROMETHEUS_EVALUATION_INTERVAL PROMETHEUS_RETENTION \
        ALERTMANAGER_GROUP_WAIT ALERTMANAGER_GROUP_INTERVAL ALERTMANAGER_REPEAT_INTERVAL; do
        value="$(setting_value "$var")"
        [[ "$value" =~ ^([0-9]+(ms|s|m|h|d|w|y))+$ ]] || die "ENLACE_$var: '$value' is not a duration (e.g. 15s, 5m)"
    done
    for var in ALERT_EMAIL_TO ALERT_EMAIL_FROM; do
        value="$(setting_value "$var")"
        [[ "$value" =~ ^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$ ]] || die "ENLACE_$var: '$value' is not an e-mail address"
    done
    for svc in $MONITORED_SERVICES; do
        value="$(service_port "$svc")" || exit 1
        [[ "$value" =~ ^[0-9]{1,5}$ ]] || die "ENLACE_${svc^^}_PORT: '$value' is not a port"
    done
    [[ -r "$RULES_SOURCE" ]] || die "ENLACE_PROMETHEUS_RULES: no rules file $RULES_SOURCE"
}

# setting_value NAME: the value in force of ENLACE_<NAME> (its default when unset).
setting_value() {
    case "$1" in
        PROMETHEUS) echo "$P_PROMETHEUS" ;;
        ALERTMANAGER) echo "$P_ALERTMANAGER" ;;
        SMTP) echo "$P_SMTP" ;;
        PROMETHEUS_SCRAPE_INTERVAL) echo "$SCRAPE_INTERVAL" ;;
        PROMETHEUS_EVALUATION_INTERVAL) echo "$EVALUATION_INTERVAL" ;;
        PROMETHEUS_RETENTION) echo "$RETENTION" ;;
        ALERTMANAGER_GROUP_WAIT) echo "$GROUP_WAIT" ;;
        ALERTMANAGER_GROUP_INTERVAL) echo "$GROUP_INTERVAL" ;;
        ALERTMANAGER_REPEAT_INTERVAL) echo "$REPEAT_INTERVAL" ;;
        ALERT_EMAIL_TO) echo "$EMAIL_TO" ;;
        ALERT_EMAIL_FROM) echo "$EMAIL_FROM" ;;
        *) die "unknown setting $1" ;;
    esac
}

# The scrape job of each monitored service, in place of the @SERVICE_JOBS@ line.
service_jobs() {
    local svc port
    for svc in $MONITORED_SERVICES; do
        port="$(service_port "$svc")"
        printf '  - job_name: enlace-%s\n    static_configs:\n      - targets: [%s]\n' \
            "$svc" "'$ENLACE_HOST:$port'"
    done
}

# render TEMPLATE OUT: @NAME@ replaced by VALUES[NAME]; written whole or not at all.
declare -A VALUES
render() {
    local template="$1" out="$2" line key tmp
    tmp="$(mktemp "$out.XXXXXX")"
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" == *'@SERVICE_JOBS@'* ]]; then
            service_jobs
            continue
        fi
        for key in "${!VALUES[@]}"; do
            line="${line//"@$key@"/"${VALUES[$key]}"}"
        done
        [[ ! "$line" =~ @[A-Z_]+@ ]] || die "$template: no value for ${BASH_REMATCH[0]}"
        printf '%s\n' "$line"
    done <"$template" >"$tmp"
    mv -f -- "$tmp" "$out"
}

write_config() {
    check_settings
    mkdir -p "$MON_DIR/prometheus" "$MON_DIR/alertmanager" "$LOG_DIR" "$RUN_DIR"
    cp -f -- "$RULES_SOURCE" "$MON_DIR/rules.yml"
    VALUES=(
        [HOST]="$ENLACE_HOST"
        [PROMETHEUS_PORT]="$P_PROMETHEUS"
        [ALERTMANAGER_PORT]="$P_ALERTMANAGER"
        [SMTP_PORT]="$P_SMTP"
        [EMAIL_TO]="$EMAIL_TO"
        [EMAIL_FROM]="$EMAIL_FROM"
        [SCRAPE_INTERVAL]="$SCRAPE_INTERVAL"
        [EVALUATION_INTERVAL]="$EVALUATION_INTERVAL"
        [GROUP_WAIT]="$GROUP_WAIT"
        [GROUP_INTERVAL]="$GROUP_INTERVAL"
        [REPEAT_INTERVAL]="$REPEAT_INTERVAL"
        [RULES_FILE]="$MON_DIR/rules.yml"
        [STACK]="${ENLACE_STACK:-local}"
    )
    render "$TEMPLATE_DIR/prometheus.yml.tmpl" "$MON_DIR/prometheus.yml"
    render "$TEMPLATE_DIR/alertmanager.yml.tmpl" "$MON_DIR/alertmanager.yml"
    # Refuse a broken configuration here, not in a log after the start.
    promtool check config "$MON_DIR/prometheus.yml" >"$RUN_DIR/promtool-check.out" 2>&1 \
        || die "promtool check config $MON_DIR/prometheus.yml failed" "$RUN_DIR/promtool-check.out"
    amtool check-config "$MON_DIR/alertmanager.yml" >"$RUN_DIR/amtool-check.out" 2>&1 \
        || die "amtool check-config $MON_DIR/alertmanager.yml failed" "$RUN_DIR/amtool-check.out"
}

# ---- processes -----------------------------------------------------------------------

pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }
# alive NAME: its pid runs one of our binaries (not a reused pid).
alive() {
    local pid
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == prometheus* ]]
}
port_of() { if [[ "$1" == prometheus ]]; then echo "$P_PROMETHEUS"; else echo "$P_ALERTMANAGER"; fi; }

launch() {
    local name="$1" port
    port="$(port_of "$name")"
    port_open "$port" && die "port $port is taken by another process; stop it or set ENLACE_${name^^}_PORT"
    local args
    if [[ "$name" == prometheus ]]; then
        args=("$PROMETHEUS_BIN"
            --config.file="$MON_DIR/prometheus.yml"
            --storage.tsdb.path="$MON_DIR/prometheus"
            --storage.tsdb.retention.time="$RETENTION"
            --web.listen-address="$ENLACE_HOST:$port"
            --web.external-url="http://$ENLACE_HOST:$port/"
            --web.enable-lifecycle)
    else
        # --cluster.listen-address= : no gossip port (it would listen on 0.0.0.0:9094).
        args=("$ALERTMANAGER_BIN"
            --config.file="$MON_DIR/alertmanager.yml"
            --storage.path="$MON_DIR/alertmanager"
            --web.listen-address="$ENLACE_HOST:$port"
            --web.external-url="http://$ENLACE_HOST:$port/"
            --cluster.listen-address=)
    fi
    # 9>&- : the server must not inherit our start/stop lock.
    setsid nohup "${args[@]}" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$RUN_DIR/$name.pid"
}

wait_ready() {
    local name="$1" port deadline=$((SECONDS + ENLACE_READY_TIMEOUT))
    port="$(port_of "$name")"
    until curl -fsS -o /dev/null --max-time 2 "http://$ENLACE_HOST:$port/-/ready" 2>/dev/null; do
        alive "$name" || die "$name exited during start-up" "$LOG_DIR/$name.log"
        ((SECONDS < deadline)) || die "$name not ready after ${ENLACE_READY_TIMEOUT}s (http://$ENLACE_HOST:$port/-/ready)" "$LOG_DIR/$name.log"
        sleep 0.2
    done
}

# A running one reads its new configuration (an error answers 500: we say it).
reload() {
    local name="$1" port out="$RUN_DIR/$1-reload.out"
    port="$(port_of "$name")"
    curl -fsS -X POST --max-time 30 "http://$ENLACE_HOST:$port/-/reload" >"$out" 2>&1 \
        || die "$name did not take the new configuration" "$out"
}

do_start() {
    do_install
    with_lock monitoring
    write_config
    local name
    # Alertmanager first: Prometheus sends to it from its first evaluation.
    for name in alertmanager prometheus; do
        if alive "$name"; then
            reload "$name"
            info "$name: already running (pid $(pid_of "$name")), configuration reloaded"
        else
            launch "$name"
        fi
    done
    for name in alertmanager prometheus; do
        wait_ready "$name"
        info "$name: ready on http://$ENLACE_HOST:$(port_of "$name")"
    done
    [[ -n "${ENLACE_STACK:-}" ]] && return 0
    cat <<MSG

Monitoring is running.
  Prometheus:    http://$ENLACE_HOST:$P_PROMETHEUS/classic/alerts  (targets /classic/targets; scrapes: $MONITORED_SERVICES)
  Alertmanager:  http://$ENLACE_HOST:$P_ALERTMANAGER  (amtool --alertmanager.url=http://$ENLACE_HOST:$P_ALERTMANAGER alert query)
  Alert e-mails: to $EMAIL_TO through $ENLACE_HOST:$P_SMTP: Maildir $STATE_DIR/mail/new
  Rules:         deploy/monitoring/rules.yml; configuration and data in $MON_DIR
  Logs:          $LOG_DIR/prometheus.log, $LOG_DIR/alertmanager.log
MSG
}

do_stop() {
    with_lock monitoring
    local name pid deadline
    for name in prometheus alertmanager; do
        if alive "$name"; then
            pid="$(pid_of "$name")"
            kill -TERM "$pid" 2>/dev/null || true
            deadline=$((SECONDS + ENLACE_STOP_TIMEOUT))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
            info "$name: stopped"
        fi
        rm -f -- "$RUN_DIR/$name.pid"
    done
}

do_status() {
    local name rc=0
    for name in prometheus alertmanager; do
        if alive "$name"; then
            info "$name: running (pid $(pid_of "$name")) on http://$ENLACE_HOST:$(port_of "$name")"
        else
            info "$name: stopped"
            rc=3
        fi
    done
    if alive alertmanager && command -v amtool >/dev/null 2>&1; then
        info "alerts firing:"
        amtool --alertmanager.url="http://$ENLACE_HOST:$P_ALERTMANAGER" alert query 2>&1 | sed 's/^/  /' || true
    fi
    return "$rc"
}

case "${1:-}" in
    install) do_install ;;
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) usage ;;
esac
