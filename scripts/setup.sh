#!/usr/bin/env bash
# Creates .venv and installs genzoo into it (idempotent). CPU machines get the
# CPU build of PyTorch through constraints/cpu.txt; a machine with an NVIDIA
# driver gets the registry's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.genzoo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints/cpu.txt -nt "$stamp" ]; then
  constraint=(-c constraints/cpu.txt)
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then constraint=(); fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${constraint[@]}" -e ".[test${GENZOO_EXTRAS:+,$GENZOO_EXTRAS}]"
  touch "$stamp"
fi
