#!/usr/bin/env bash
# Start, stop and report the Enlace services on this machine (after infra.sh up).
#   deploy/local/services.sh start|stop|status
# Each service is one process (HTTP API + Kafka subscribers + outbox relay), with
# its own database, its log in .local/logs/<name>.log and its pid in .local/run/.
#
# ENLACE_STACK names a second, private stack on the same Kafka and PostgreSQL (the
# end-to-end test runs one beside a developer's `make run`): its state lives in
# .local/stacks/<name>/, its databases are ENLACE_DB_PREFIX<service> (created by
# the caller and owned by the service's role, e.g. `postgres.sh createdb NAME SERVICE`),
# its topics are under ENLACE_TOPIC_NAMESPACE, and each port can be moved with
# ENLACE_<NAME>_PORT (INTAKE, REFERRAL, FOLLOWUP, NOTIFICATIONS, OPS, SMTP, SMTP_API, SMS).
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

stack_dirs
LOG_DIR="$STATE_DIR/logs"
DB_PREFIX="${ENLACE_DB_PREFIX:-enlace_}"
export KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP"
# Every service connects over SASL_SSL as its own principal (svc-<name>, declared in
# deploy/kafka-access.yaml; its password generated once by kafka_access.py).
export KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export KAFKA_SSL_CAFILE="$KAFKA_CA_FILE"

P_INTAKE="${ENLACE_INTAKE_PORT:-8001}"
P_REFERRAL="${ENLACE_REFERRAL_PORT:-8002}"
P_FOLLOWUP="${ENLACE_FOLLOWUP_PORT:-8003}"
P_NOTIFICATIONS="${ENLACE_NOTIFICATIONS_PORT:-8004}"
P_OPS="${ENLACE_OPS_PORT:-8005}"
P_SMTP="${ENLACE_SMTP_PORT:-2525}"
P_SMS="${ENLACE_SMS_PORT:-8090}"
P_SMTP_API="${ENLACE_SMTP_API_PORT:-2526}"
# How the services find each other and the local providers: one place, from the ports.
export ENLACE_INTAKE_URL="http://$ENLACE_HOST:$P_INTAKE"
export ENLACE_REFERRAL_INTERNAL_URL="http://$ENLACE_HOST:$P_REFERRAL"
export ENLACE_REFERRAL_API_URL="http://$ENLACE_HOST:$P_REFERRAL"
export ENLACE_FOLLOWUP_API_URL="http://$ENLACE_HOST:$P_FOLLOWUP"
# What the operations service watches (its pipeline page: /readyz and /metrics of each).
export ENLACE_OPS_INTAKE_URL="$ENLACE_INTAKE_URL" ENLACE_OPS_REFERRAL_URL="http://$ENLACE_HOST:$P_REFERRAL"
export ENLACE_OPS_FOLLOWUP_URL="$ENLACE_FOLLOWUP_API_URL" ENLACE_OPS_NOTIFICATIONS_URL="http://$ENLACE_HOST:$P_NOTIFICATIONS"
# A private stack's operations service sees only its own consumer groups.
if [[ -n "${ENLACE_STACK:-}" ]]; then export ENLACE_OPS_LAG_GROUP_FILTER=".$ENLACE_STACK"; fi
export ENLACE_SMTP_HOST="$ENLACE_HOST" ENLACE_SMTP_PORT="$P_SMTP"
export ENLACE_EMAIL_LOOKUP_URL="http://$ENLACE_HOST:$P_SMTP_API"
export ENLACE_SMS_BASE_URL="http://$ENLACE_HOST:$P_SMS"
export ENLACE_SMS_STATUS_CALLBACK_URL="http://$ENLACE_HOST:$P_NOTIFICATIONS/v1/sms/status"
# The local providers have no contract to respect: the pipeline's own limits show.
export ENLACE_SMS_RATE_PER_SECOND="${ENLACE_SMS_RATE_PER_SECOND:-1000}" ENLACE_SMS_RATE_BURST="${ENLACE_SMS_RATE_BURST:-1000}"
export ENLACE_EMAIL_RATE_PER_SECOND="${ENLACE_EMAIL_RATE_PER_SECOND:-1000}" ENLACE_EMAIL_RATE_BURST="${ENLACE_EMAIL_RATE_BURST:-1000}"
# The local profile (a production service refuses demo or missing secrets): the demo
# agencies and keys of deploy/local, and an SMS auth token generated at first start
# (shared by the local provider and notifications; no fixed value exists anywhere).
export ENLACE_ENV=local ENLACE_AGENCIES_FILE="$DEPLOY_LOCAL_DIR/agencies.yaml"
ENLACE_SMS_AUTH_TOKEN="$(ensure_secret sms/auth-token)"
export ENLACE_SMS_AUTH_TOKEN
# The key that seals partner webhook endpoints' signing secrets at rest (notifications).
ENLACE_WEBHOOK_SECRETS_KEY="$(ensure_secret notifications/webhook-secrets.key)"
export ENLACE_WEBHOOK_SECRETS_KEY
# Intake seals each child's identity under a key of the case's own, wrapped by a
# key-encryption key: by default a key file under .local/secrets/intake-kek (made at
# first start); ENLACE_KEK_PROVIDER=pkcs11 uses the SoftHSM2 token of softhsm.sh.
# Duplicates are matched on a keyed hash: its key is generated here once.
export ENLACE_KEK_PROVIDER="${ENLACE_KEK_PROVIDER:-file}" ENLACE_KEK_DIR="${ENLACE_KEK_DIR:-$SECRETS_DIR/intake-kek}"
if [[ "$ENLACE_KEK_PROVIDER" == pkcs11 ]]; then
  "$DEPLOY_LOCAL_DIR/softhsm.sh" init
  export SOFTHSM2_CONF="$LOCAL_DIR/softhsm/softhsm2.conf"
  ENLACE_KEK_PKCS11_PIN="$(ensure_secret softhsm/user-pin)"
  export ENLACE_KEK_PKCS11_PIN
fi
ENLACE_IDENTITY_HASH_KEY="$(ensure_secret intake/identity-hash-key)"
export ENLACE_IDENTITY_HASH_KEY
# The operations console signs its session cookies with a key generated here once.
ENLACE_CONSOLE_SESSION_KEY="$(ensure_secret ops/console-session-key)"
export ENLACE_CONSOLE_SESSION_KEY
# demo_key PRINCIPAL: its demo API key (empty if it has none), for internal calls.
demo_key() { awk -v id="$1" '$1 == id { print $2 }' "$DEPLOY_LOCAL_DIR/demo-api-keys.txt"; }

# name | module | port | database ("" = none) | extra args
SERVICES=(
  "smtp|services.notifications.local_smtp|$P_SMTP||--port $P_SMTP --api-port $P_SMTP_API --maildir $STATE_DIR/mail"
  "sms|services.notifications.local_sms|$P_SMS||--port $P_SMS --dir $STATE_DIR/sms"
  "intake|services.intake|$P_INTAKE|${DB_PREFIX}intake|"
  "referral|services.referral|$P_REFERRAL|${DB_PREFIX}referral|"
  "followup|services.followup|$P_FOLLOWUP|${DB_PREFIX}followup|"
  "notifications|services.notifications|$P_NOTIFICATIONS|${DB_PREFIX}notifications|"
  "ops|services.ops|$P_OPS|${DB_PREFIX}ops|"
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
    elif curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.3
  done
  die "$name not ready after ${ENLACE_READY_TIMEOUT}s ($url)" "$LOG_DIR/$name.log"
}

start() {
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/mail" "$STATE_DIR/sms"
  local entry name module port db extra dsn
  for entry in "${SERVICES[@]}"; do
    IFS='|' read -r name module port db extra <<<"$entry"
    if alive "$name"; then
      echo "$name: already running (pid $(pid_of "$name"))"
      continue
    fi
    # Each service logs in as its own role (postgres.sh owns how).
    dsn=""
    if [[ -n "$db" ]]; then dsn="$("$DEPLOY_LOCAL_DIR/postgres.sh" dsn "$name" "$db")"; fi
    # shellcheck disable=SC2086  # extra holds several words on purpose
    # Consumer groups must start with enlace-<service> (the principal's ACL).
    env ${dsn:+DATABASE_URL="$dsn"} ENLACE_HTTP_PORT="$port" \
      ${db:+KAFKA_SASL_USERNAME="svc-$name" KAFKA_SASL_PASSWORD="$(ensure_secret "kafka/svc-$name.password")"} \
      ${db:+ENLACE_INTERNAL_API_KEY="$(demo_key "svc-$name")"} \
      ${ENLACE_STACK:+ENLACE_CONSUMER_GROUP="enlace-$name.$ENLACE_STACK"} \
      setsid nohup "$PYTHON" -m "$module" $extra \
      >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
  done
  for entry in "${SERVICES[@]}"; do
    IFS='|' read -r name module port db extra <<<"$entry"
    wait_ready "$name" "$port" "$db"
    echo "$name: ready on http://$ENLACE_HOST:$port"
  done
  [[ -n "${ENLACE_STACK:-}" ]] && return 0
  cat <<MSG

Enlace is running.
  APIs (OpenAPI at /docs):  intake http://127.0.0.1:8001  referral http://127.0.0.1:8002
                            followup http://127.0.0.1:8003  notifications http://127.0.0.1:8004
  Operations console:      http://127.0.0.1:8005/console (sign in with the key of enlace-ops)
                            JSON API /v1/ops/...; CLI: $PYTHON -m services.ops dlq list | lag
  Health and metrics:      /healthz  /readyz  /metrics on each service
  Kafka:                   $KAFKA_BOOTSTRAP   (read a topic: $PYTHON deploy/local/tail_topic.py protection.cases.v1)
  Logs (JSON):             $LOG_DIR/<service>.log, Kafka $KAFKA_LOG, PostgreSQL $PG_LOG
  E-mails sent:            Maildir $LOCAL_DIR/mail (one file per message in new/)
  SMS sent:                $LOCAL_DIR/sms/messages.jsonl (quiet hours 21:00-07:00 Lima hold non-urgent ones)
  Demo API keys:           deploy/local/demo-api-keys.txt
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
