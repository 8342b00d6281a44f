#!/usr/bin/env bash
# The getting-started guide (docs/getting-started.md) run for real on a throwaway kind cluster:
# Istio + its Prometheus, the canary controller built from this repository, the example service,
# a good release (canary wait → 0, promotion → Idle) and a bad one (canary wait → 1, helm history
# ends "Rollback to N").
#
# Needs docker, kind, kubectl, helm 3, istioctl and curl on PATH and network access. Without
# them it says so and exits 0 ("skipped"): the repository's CI has none of them, so this script
# is not part of `python3 -m pytest` beyond a syntax check (tests/test_deploy_kind.py).
#
#   bash tests/e2e-kind/run.sh            # KEEP=1 keeps the cluster for a look afterwards
set -euo pipefail

CLUSTER=${CLUSTER:-canary-e2e}
HELM_VERSION=${HELM_VERSION:-v3.16.2}
IMAGE=${IMAGE:-canary:e2e}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

missing=()
for tool in docker kind kubectl helm istioctl curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "skipped: ${missing[*]} not on PATH (this script needs a container runtime and kind)"
  exit 0
fi

cleanup() { [[ "${KEEP:-0}" == 1 ]] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
expect_exit() {  # expect_exit CODE command...
  local want=$1; shift
  set +e; "$@"; local got=$?; set -e
  [[ $got == "$want" ]] || { echo "FAIL: '$*' exited $got, expected $want"; exit 1; }
}

step "image (helm ${HELM_VERSION}, checksum from its release)"
sha=$(curl -fsSL "https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz.sha256sum" | cut -d' ' -f1)
docker build --build-arg HELM_VERSION="$HELM_VERSION" --build-arg HELM_SHA256="$sha" -t "$IMAGE" "$ROOT"

step "cluster"
kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "1. Istio and Prometheus"
istioctl install --set profile=default -y
kubectl apply -f https://raw.githubusercontent.com/istio/istio/release-1.23/samples/addons/prometheus.yaml
kubectl -n istio-system rollout status deploy/prometheus --timeout 300s

step "2. the example service"
kubectl create namespace demo
kubectl label namespace demo istio-injection=enabled
helm install podinfo "$ROOT/deploy/examples/podinfo/chart" --namespace demo --wait
kubectl -n demo run load --image=curlimages/curl:8.10.1 --restart=Never -- \
  sh -c 'while true; do curl -s -o /dev/null http://podinfo:9898/; sleep 0.1; done'

step "3. the controller"
helm install canary "$ROOT/deploy/helm/canary" --namespace canary-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set 'rbac.namespaces={demo}' \
  --set-file 'plans.files.podinfo\.yaml'="$ROOT/deploy/examples/podinfo/plan.yaml" --wait
kubectl -n canary-system rollout status deploy/canary --timeout 180s

# the CLI from this checkout, installed as the getting-started guide installs it (a venv with
# the pinned runtime dependencies), against the kind cluster (the current kubectl context)
VENV=${VENV:-$ROOT/.venv}
[[ -x "$VENV/bin/canary" ]] || {
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -c "$ROOT/constraints.txt" "$ROOT"
}
canary() { "$VENV/bin/canary" "$@"; }

step "4. a good release → Succeeded (exit 0), promotion → Idle"
helm upgrade podinfo "$ROOT/deploy/examples/podinfo/chart" --namespace demo --reuse-values \
  --set canary.image.tag=6.7.1
expect_exit 0 canary wait demo/podinfo --timeout 30m
helm upgrade podinfo "$ROOT/deploy/examples/podinfo/chart" --namespace demo --reuse-values \
  --set stable.image.tag=6.7.1
for _ in $(seq 60); do
  canary status demo/podinfo -o json | grep -q '"phase": "Idle"' && break
  sleep 5
done
canary status demo/podinfo -o json | grep -q '"phase": "Idle"'

step "5. a bad release → rolled back (exit 1)"
helm upgrade podinfo "$ROOT/deploy/examples/podinfo/chart" --namespace demo --reuse-values \
  --set canary.image.tag=6.7.1 --set 'canary.extraArgs={--random-error}'  # as the guide
expect_exit 1 canary wait demo/podinfo --timeout 30m
helm history podinfo -n demo -o json | grep -q '"description":"Rollback to'
kubectl -n canary-system logs -l app.kubernetes.io/name=canary --tail=-1 --prefix | canary timeline --plan demo/podinfo

echo "PASS"
