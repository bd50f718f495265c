# shellcheck shell=bash
# Sourced by deploy/local/kafka.sh: the files a node runs from. The TLS material of the
# client listener, and each node's server.properties and log4j2.properties.

# TLS material of the client listener, made once by this script with openssl: a
# project-local CA and a broker certificate for 127.0.0.1/localhost signed by it.
# Kafka reads PEM directly (ssl.keystore.type=PEM), so no Java keystore is needed.
# Shared by every local broker instance and node; clients trust $KAFKA_CA_FILE.
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

# security_config: the listener and authorisation lines of the current node.
security_config() {
    if [[ "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]]; then
        # The bench's baseline broker alone (make bench measures what TLS and SCRAM
        # cost): never the shared instance, never started by make run or make test.
        [[ "$ENLACE_KAFKA_INSTANCE" == bench-* ]] \
            || die "ENLACE_KAFKA_PLAINTEXT_BASELINE is for a bench-* instance only, not $ENLACE_KAFKA_INSTANCE"
        multi && die "ENLACE_KAFKA_PLAINTEXT_BASELINE is a single broker: unset ENLACE_KAFKA_NODES"
        cat <<SEC
# UNAUTHENTICATED baseline broker of make bench: no client data ever goes here.
listeners=PLAINTEXT://$ENLACE_HOST:$NODE_PORT,CONTROLLER://$ENLACE_HOST:$NODE_CPORT
advertised.listeners=PLAINTEXT://$ENLACE_HOST:$NODE_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
SEC
        return 0
    fi
    local admin_pw controller_pw
    admin_pw="$(ensure_secret kafka/admin.password)"
    controller_pw="$(ensure_secret kafka/controller.password)"
    cat <<SEC
# Clients (and the broker to itself) only over SASL_SSL with SCRAM-SHA-512; there is
# no PLAINTEXT listener. KRaft cannot use SCRAM on the controller listener
# (KAFKA-15513): it authenticates with PLAIN there, over TLS too.
listeners=SASL_SSL://$ENLACE_HOST:$NODE_PORT,CONTROLLER://$ENLACE_HOST:$NODE_CPORT
advertised.listeners=SASL_SSL://$ENLACE_HOST:$NODE_PORT
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
}

# replication_config: how many copies of each partition, and how many must hold a write.
replication_config() {
    if ! multi; then
        cat <<EOF
# Single broker: every internal topic must have replication factor 1.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
        return 0
    fi
    # A majority of the copies must hold a write before acks=all answers: one node
    # may fail without losing an acknowledged write (the default min ISR, 1, would).
    local isr=$((NODES / 2 + 1))
    cat <<EOF
# $NODES nodes: every partition, internal ones included, on all of them.
default.replication.factor=$NODES
min.insync.replicas=$isr
offsets.topic.replication.factor=$NODES
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$NODES
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$NODES
share.coordinator.state.topic.min.isr=$isr
EOF
}

# write_config: the current node's server.properties and log4j2.properties.
write_config() {
    mkdir -p "$NODE_DATA" "$NODE_LOG_DIR" "$RUN_DIR"
    local voters="$ENLACE_HOST:$(kafka_controller_port 1)" n
    for ((n = 2; n <= NODES; n++)); do voters+=",$ENLACE_HOST:$(kafka_controller_port "$n")"; done
    local security replication
    security="$(security_config)"
    replication="$(replication_config)"
    # Rewritten every time (cheap) so port changes in env take effect. It holds the
    # admin and controller passwords: owner-only.
    (umask 077 && cat >"$NODE_PROPS") <<EOF
# Generated by deploy/local/kafka.sh; edits are overwritten.
process.roles=broker,controller
node.id=$NODE
controller.quorum.bootstrap.servers=$voters
$security
log.dirs=$NODE_DATA
$replication
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
    cat >"$NODE_LOG4J" <<EOF
# Generated by deploy/local/kafka.sh; edits are overwritten.
status = warn
name = enlace-kafka
appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = $NODE_LOG
appender.server.filePattern = $NODE_LOG.%i
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
