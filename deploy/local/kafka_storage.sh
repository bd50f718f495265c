# shellcheck shell=bash
# Sourced by deploy/local/kafka.sh: formatting each node's storage, once, for the mode
# it runs in (one broker, or three nodes formed into one quorum).

# reset_other_mode: storage formatted for the other mode (one broker vs three nodes)
# holds local data only; say so and format again, as for storage that predates SASL.
reset_other_mode() {
    local other=() dir was
    if multi; then
        [[ -e "$KAFKA_DIR/data" ]] && other+=("$KAFKA_DIR/data")
        was="one broker"
    else
        for dir in "$KAFKA_DIR"/node[0-9]*; do [[ -e "$dir" ]] && other+=("$dir"); done
        was="${#other[@]} nodes"
    fi
    ((${#other[@]} > 0)) || return 0
    local running
    running="$(instance_pids | paste -sd ' ')"
    [[ -z "$running" ]] || die "kafka instance $ENLACE_KAFKA_INSTANCE runs for $was (pids $running), not ENLACE_KAFKA_NODES=$NODES: stop it first (make stop, or deploy/local/kafka.sh stop)"
    info "kafka storage in $KAFKA_DIR was formatted for $was, not ENLACE_KAFKA_NODES=$NODES: formatting it again (local data only: its topics and messages are dropped)"
    rm -rf -- "${other[@]}" "$CLUSTER_ID_FILE"
}

# new_uuid FILE: a Kafka id from StorageTool random-uuid into FILE, unless it exists.
new_uuid() {
    [[ -s "$1" ]] && return 0
    java "${TOOL_JVM[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid >"$1.tmp" \
        && [[ -s "$1.tmp" ]] && mv -- "$1.tmp" "$1"
}

# initial_controllers: the founding voters, id@host:port:directory-id for each node.
# Each directory id is made once (node<N>/directory.id), so every node is formatted
# with the same list, once.
initial_controllers() {
    local n list=""
    for ((n = 1; n <= NODES; n++)); do
        list+="${list:+,}$n@$ENLACE_HOST:$(kafka_controller_port "$n"):$(<"$(kafka_node_dir "$n")/directory.id")"
    done
    echo "$list"
}

# needs_format: true if the current node's storage is not formatted (yet, or anymore).
needs_format() {
    [[ -f "$NODE_DATA/meta.properties" ]] || return 0
    # The marker says the storage holds the SCRAM admin user: storage formatted by the
    # older, unauthenticated version of this script holds local test data only.
    [[ -f "$NODE_DATA/.enlace-scram" || "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]] && return 1
    info "kafka storage in $NODE_DATA predates SASL (no admin user): formatting it again"
    rm -rf -- "$NODE_DATA"
    mkdir -p "$NODE_DATA"
    return 0
}

# format_node QUORUM-ARGS...: format the current node (--ignore-formatted keeps a
# repeated format harmless anyway).
format_node() {
    local scram=""
    [[ "${ENLACE_KAFKA_PLAINTEXT_BASELINE:-}" == 1 ]] || scram="SCRAM-SHA-512=[name=admin,password=$(ensure_secret kafka/admin.password)]"
    # --add-scram: the inter-broker (and scripts') admin user must exist before the
    # first start (KIP-900); every other user is added at run time by kafka_access.py.
    java "${TOOL_JVM[@]}" -Dlog4j2.configurationFile="$NODE_LOG4J" -cp "$KAFKA_LIBS/*" \
        kafka.tools.StorageTool format --config "$NODE_PROPS" --cluster-id "$(<"$CLUSTER_ID_FILE")" \
        "$@" --ignore-formatted ${scram:+--add-scram "$scram"} \
        >>"$NODE_LOG_DIR/format.log" 2>&1 \
        || die "$NODE_NAME storage format failed" "$NODE_LOG_DIR/format.log"
    touch "$NODE_DATA/.enlace-scram"
}

format_storage() {
    local n todo=() jobs=()
    for n in $(targets); do
        use_node "$n"
        needs_format && todo+=("$n")
    done
    ((${#todo[@]} > 0)) || return 0
    # The ids come from StorageTool random-uuid, all at once (a JVM start each).
    new_uuid "$CLUSTER_ID_FILE" &
    jobs+=("$!")
    if multi; then
        for n in $(targets); do new_uuid "$(kafka_node_dir "$n")/directory.id" & jobs+=("$!"); done
    fi
    for n in "${jobs[@]}"; do wait "$n" || die "StorageTool random-uuid failed (java -cp '$KAFKA_LIBS/*')"; done
    if ! multi; then
        use_node 1
        info "formatting KRaft storage in $NODE_DATA (cluster id $(<"$CLUSTER_ID_FILE"))"
        # --standalone: single-voter dynamic quorum, matches controller.quorum.bootstrap.servers.
        format_node --standalone
        return 0
    fi
    # One quorum of every node, never one --standalone each: that would make
    # separate one-node clusters sharing a cluster id, unnoticed until a topic with
    # replication factor 3 fails.
    local quorum
    quorum="$(initial_controllers)"
    info "formatting KRaft storage of nodes ${todo[*]} (cluster id $(<"$CLUSTER_ID_FILE"), voters $quorum)"
    jobs=()
    for n in "${todo[@]}"; do
        use_node "$n"
        format_node --initial-controllers "$quorum" &
        jobs+=("$!")
    done
    for n in "${jobs[@]}"; do wait "$n" || exit 1; done
}
