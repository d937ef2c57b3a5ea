#!/bin/sh
# Lints the production image's Dockerfile and the Kubernetes layout, offline: hadolint on the Dockerfile,
# and every manifest against the bundled schemas of one Kubernetes release, strictly (an unknown field
# fails). Exits non-zero on any finding.
# Usage: deploy/lint.sh [ROOT]   (ROOT: a tree holding Dockerfile and deploy/kubernetes; default this one)
set -eu
repo=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
root=${1:-$repo}
bin=${LINT_BIN:-$repo/.venv/bin}
# The oldest release the manifests promise to work on: a field newer than it is an error.
kubernetes_version=1.33.0

"$bin/hadolint" --no-color --failure-threshold style "$root/Dockerfile"

# kustomization.yaml is kustomize's, not a Kubernetes resource. kubernetes-validate only warns about a kind
# it has no schema for (a mistyped kind or apiVersion), so any line it prints is treated as a failure.
manifests=$(find "$root/deploy/kubernetes" -name '*.yaml' ! -name kustomization.yaml | sort)
[ -n "$manifests" ] || { echo "no manifests in $root/deploy/kubernetes" >&2; exit 1; }
# shellcheck disable=SC2086 # one argument per manifest; the names have no spaces
if ! findings=$("$bin/kubernetes-validate" --strict --quiet -k "$kubernetes_version" $manifests 2>&1) \
  || [ -n "$findings" ]; then
  printf '%s\n' "${findings:-kubernetes-validate failed}" >&2
  exit 1
fi
count=$(printf '%s\n' "$manifests" | wc -l | tr -d ' ')
echo "Dockerfile and $count Kubernetes manifests pass (Kubernetes $kubernetes_version, strict)"
