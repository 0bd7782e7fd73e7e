#!/usr/bin/env bash
# Make .venv match uv.lock, on first use and whenever pyproject.toml or uv.lock changed: the base,
# every extra ([tff], [cluster]) and the dev tools (the `dev` group that `uv sync` installs).
# Sourced by scripts/fedlab and scripts/test. Needs python3.11 and the package registry; uv is
# taken from PATH if there is one (0.13 or newer), else installed once into a virtual environment
# of its own under ~/.cache/fedlab, never into the system's Python (PEP 668).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$root/.venv/.fedlab-synced"
if [[ -f "$stamp" && "$stamp" -nt "$root/uv.lock" && "$stamp" -nt "$root/pyproject.toml" ]]; then
  return 0 2>/dev/null || exit 0
fi
python="${FEDLAB_PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

uv_recent() {  # uv 0.13 or newer: what wrote uv.lock
  local version
  version="$("$1" --version 2>/dev/null | awk '{print $2}')" || return 1
  [[ -n "$version" ]] && printf '0.13\n%s\n' "$version" | sort -C -V
}
uv="$(command -v uv || true)"
if [[ -z "$uv" ]] || ! uv_recent "$uv"; then
  tools="${XDG_CACHE_HOME:-$HOME/.cache}/fedlab/uv-0.13"
  uv="$tools/bin/uv"
  if ! uv_recent "$uv"; then
    echo "fedlab: installing uv into $tools (first use) ..." >&2
    rm -rf "$tools"
    if "$python" -m venv "$tools" >/dev/null 2>&1; then
      "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"
    else  # no venv module (Debian without python3-venv): pip's --target is no system install
      rm -rf "$tools"
      "$python" -m pip install --quiet --disable-pip-version-check --target "$tools" \
        "uv>=0.13,<0.14"
    fi
  fi
fi
echo "fedlab: creating .venv from uv.lock (first use: up to a minute) ..." >&2
# Python writes the .pyc files of what it imports on first use, unless PYTHONDONTWRITEBYTECODE
# forbids it (as on our CI machines): then every import of TF and TFF compiled them again (22 s;
# 8 s from .pyc files), so all are compiled now (35 to 60 s more here; docs/install.md).
compile=()
if [[ -n "${PYTHONDONTWRITEBYTECODE:-}" ]]; then compile=(--compile-bytecode); fi
(cd "$root" && "$uv" sync --frozen ${compile[@]+"${compile[@]}"} --python "$python" --quiet)
touch "$stamp"
