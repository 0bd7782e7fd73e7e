#!/usr/bin/env bash
# Make .venv match uv.lock, on first use and whenever pyproject.toml or uv.lock changed.
# Needs only python3.11 with pip and the package registry: uv itself is installed with pip if
# missing. Sourced by scripts/fedlab and scripts/test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$root/.venv/.fedlab-synced"
if [[ -f "$stamp" && "$stamp" -nt "$root/uv.lock" && "$stamp" -nt "$root/pyproject.toml" ]]; then
  return 0 2>/dev/null || exit 0
fi
python="${FEDLAB_PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
if ! "$python" -m uv --version >/dev/null 2>&1; then
  echo "fedlab: installing uv (first use) ..." >&2
  "$python" -m pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"
fi
echo "fedlab: creating .venv from uv.lock (first use: one to two minutes) ..." >&2
# --compile-bytecode: Python then reads .pyc files even where PYTHONDONTWRITEBYTECODE=1 forbids
# writing them (as on our CI machines); without it, importing TF and TFF took 22 s, with it 8 s.
(cd "$root" && "$python" -m uv sync --frozen --compile-bytecode --python "$python" --quiet)
touch "$stamp"
