#!/usr/bin/env bash
# The privacy-utility curve of one image family on digits: an MLP VAE trained with DP-SGD at
# epsilon 1, 3, 8 (delta = 1/(10 N) = 1e-4) and without DP (epsilon = infinity), same steps, batch and seed;
# each scored by NLL (IWAE k=100) and FD_digits (with its real-vs-real floor), and by the
# membership-inference attacks of `genzoo eval --privacy`. Results: benchmarks/privacy/results.md.
# Usage: bash benchmarks/privacy/curve.sh [RUNS_DIR]   (logs go to RUNS_DIR/*.log)
set -u
G=${GENZOO:-.venv/bin/genzoo}
R=${1:-/tmp/genzoo-privacy-curve}
mkdir -p "$R"
COMMON="--data digits --steps 200 --batch-size 128 --seed 0 --val-every 0 --set architecture=mlp --set hidden_widths=[128] --set latent_dim=8 --no-eval"
for eps in 1 3 8 inf; do
  dp=""; [ "$eps" != inf ] && dp="--dp-epsilon $eps"
  $G train vae $COMMON $dp --out "$R/eps-$eps" > "$R/train-$eps.log" 2>&1
  $G eval "$R/eps-$eps" --privacy > "$R/privacy-$eps.log" 2>&1
  $G eval "$R/eps-$eps" --n 1000 --nll-opt k=100 > "$R/eval-$eps.log" 2>&1
  echo "eps=$eps done $(date +%T)"
done
