#!/usr/bin/env bash
# The main job: set up, train a diffusion model on the built-in digits for
# about 5 CPU minutes, write a checkpoint and a sample grid, print its metrics, and the URL of the
# app serving it (GENZOO_DEMO_SERVE=1 also starts that app; GENZOO_DEMO_PORT: its port, 8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-runs/demo}
if [ -d "$out/checkpoint" ]; then out="$out-$(date +%Y%m%d-%H%M%S)"; fi
.venv/bin/genzoo train diffusion --data digits --minutes "${GENZOO_DEMO_MINUTES:-5}" --out "$out" --no-eval
# 100 stratified timesteps estimate the diffusion bound ~10x faster (full sum: genzoo eval RUN)
.venv/bin/genzoo eval "$out" --nll-opt timesteps_subset=100
echo "samples: $out/samples/   checkpoint: $out/checkpoint/   curves (train and validation loss): $out/loss.png"
# The app serving the demo model. Started only when asked (GENZOO_DEMO_SERVE=1): then it runs in the
# foreground until Ctrl-C, so no server is ever left behind (CI never sets it).
port=${GENZOO_DEMO_PORT:-8000}
echo "app: http://127.0.0.1:$port/   (serving $out: .venv/bin/genzoo serve $out --port $port)"
if [ "${GENZOO_DEMO_SERVE:-0}" = 1 ]; then
  exec .venv/bin/genzoo serve "$out" --port "$port"
fi
