#!/usr/bin/env bash
# Entrypoint of one Kafka node of the compose stack (apache/kafka image): the same
# configuration as deploy/local/kafka_config.sh for three nodes. Combined
# broker+controller, SCRAM-SHA-512 over TLS for clients and between brokers, PLAIN over TLS on
# the controller listener (SCRAM cannot be used there, KAFKA-15513), ACLs enforced.
# The storage is formatted once, as one three-voter quorum, with the admin's SCRAM
# user (KIP-900); the other users and the ACLs come from init.py kafka.
set -euo pipefail
: "${NODE_ID:?}" "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_CONTROLLER_PASSWORD:?}"
: "${INITIAL_CONTROLLERS:?}"   # 1@kafka-1:9094:<dir-id>,2@kafka-2:9094:<dir-id>,3@...
: "${DIRECTORY_ID:?}"          # this node's metadata directory id (of INITIAL_CONTROLLERS)
DATA=/var/lib/kafka/data
CONF=/tmp/server.properties
cat >"$CONF" <<PROPS
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.bootstrap.servers=kafka-1:9094,kafka-2:9094,kafka-3:9094
listeners=SASL_SSL://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094
advertised.listeners=SASL_SSL://kafka-$NODE_ID:9093
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$KAFKA_CONTROLLER_PASSWORD" user_controller="$KAFKA_CONTROLLER_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false
ssl.keystore.type=PEM
ssl.keystore.location=/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=/tls/ca.crt
ssl.client.auth=none
log.dirs=$DATA
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
auto.create.topics.enable=false
log.retention.hours=168
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
group.initial.rebalance.delay.ms=0
PROPS
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$CONF" \
  --initial-controllers "$INITIAL_CONTROLLERS" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
exec /opt/kafka/bin/kafka-server-start.sh "$CONF"
