#!/usr/bin/env bash
# The main job: set up, train a diffusion model on the built-in digits for
# about 5 CPU minutes, write a checkpoint and a sample grid, print its metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-runs/demo}
if [ -d "$out/checkpoint" ]; then out="$out-$(date +%Y%m%d-%H%M%S)"; fi
.venv/bin/genzoo train diffusion --data digits --minutes "${GENZOO_DEMO_MINUTES:-5}" --out "$out" --no-eval
# 100 stratified timesteps estimate the diffusion bound ~10x faster (full sum: genzoo eval RUN)
.venv/bin/genzoo eval "$out" --nll-opt timesteps_subset=100
echo "samples: $out/samples/   checkpoint: $out/checkpoint/   curves (train and validation loss): $out/loss.png"
