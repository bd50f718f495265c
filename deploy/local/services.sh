#!/usr/bin/env bash
# Start, stop and report the Enlace services on this machine (after infra.sh up).
#   deploy/local/services.sh start|stop|status
# Each service is one process (HTTP API + Kafka subscribers + outbox relay), with
# its own database, its log in .local/logs/<name>.log and its pid in .local/run/.
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

LOG_DIR="$LOCAL_DIR/logs"
PG_BASE="postgresql://$PG_SUPERUSER:$PG_PASSWORD@$ENLACE_HOST:$ENLACE_PG_PORT"
export KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP"

# name | module | port | database ("" = none) | extra args
SERVICES=(
  "smtp|services.notifications.local_smtp|2525||--port 2525 --maildir $LOCAL_DIR/mail"
  "sms|services.notifications.local_sms|8090||--port 8090 --dir $LOCAL_DIR/sms"
  "intake|services.intake|8001|enlace_intake|"
  "referral|services.referral|8002|enlace_referral|"
  "followup|services.followup|8003|enlace_followup|"
  "notifications|services.notifications|8004|enlace_notifications|"
)

pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

wait_ready() {
  local name="$1" port="$2" db="$3" deadline=$((SECONDS + ENLACE_READY_TIMEOUT))
  local url="http://$ENLACE_HOST:$port/readyz"
  while ((SECONDS < deadline)); do
    alive "$name" || die "$name exited during start-up" "$LOG_DIR/$name.log"
    if [[ -z "$db" ]]; then
      (exec 3<>"/dev/tcp/$ENLACE_HOST/$port") 2>/dev/null && return 0
    elif curl -fsS -o /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.3
  done
  die "$name not ready after ${ENLACE_READY_TIMEOUT}s ($url)" "$LOG_DIR/$name.log"
}

start() {
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$LOCAL_DIR/mail" "$LOCAL_DIR/sms"
  local entry name module port db extra
  for entry in "${SERVICES[@]}"; do
    IFS='|' read -r name module port db extra <<<"$entry"
    if alive "$name"; then
      echo "$name: already running (pid $(pid_of "$name"))"
      continue
    fi
    # shellcheck disable=SC2086  # extra holds several words on purpose
    env ${db:+DATABASE_URL="$PG_BASE/$db"} ENLACE_HTTP_PORT="$port" \
      setsid nohup "$PYTHON" -m "$module" $extra \
      >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
  done
  for entry in "${SERVICES[@]}"; do
    IFS='|' read -r name module port db extra <<<"$entry"
    wait_ready "$name" "$port" "$db"
    echo "$name: ready on http://$ENLACE_HOST:$port"
  done
  cat <<MSG

Enlace is running.
  APIs (OpenAPI at /docs):  intake http://127.0.0.1:8001  referral http://127.0.0.1:8002
                            followup http://127.0.0.1:8003  notifications http://127.0.0.1:8004
  Health and metrics:      /healthz  /readyz  /metrics on each service
  Kafka:                   $KAFKA_BOOTSTRAP   (read a topic: $PYTHON deploy/local/tail_topic.py protection.cases.v1)
  Logs (JSON):             $LOG_DIR/<service>.log, Kafka $KAFKA_LOG, PostgreSQL $PG_LOG
  E-mails sent:            Maildir $LOCAL_DIR/mail (one file per message in new/)
  SMS sent:                $LOCAL_DIR/sms/messages.jsonl (quiet hours 21:00-07:00 Lima hold non-urgent ones)
  Demo API keys:           deploy/demo-api-keys.txt
  Try:                     deploy/local/demo.sh   (registers a Piura case and shows what follows)
  Stop:                    make stop
MSG
}

stop() {
  local entry name pid deadline
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    IFS='|' read -r name _ <<<"${SERVICES[$i]}"
    if alive "$name"; then
      pid="$(pid_of "$name")"
      kill -TERM "$pid" 2>/dev/null || true
      deadline=$((SECONDS + ENLACE_STOP_TIMEOUT))
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      echo "$name: stopped"
    fi
    rm -f "$RUN_DIR/$name.pid"
  done
}

status() {
  local entry name module port rc=0
  for entry in "${SERVICES[@]}"; do
    IFS='|' read -r name module port _ <<<"$entry"
    if alive "$name"; then echo "$name: running (pid $(pid_of "$name")) on port $port"
    else echo "$name: stopped"; rc=3; fi
  done
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
