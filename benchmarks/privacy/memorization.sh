#!/usr/bin/env bash
# A model that memorized its training set, and the same set-up under DP-SGD, against `genzoo eval --privacy`.
# The memorizer is a real trained model, not a replay: an MLP VAE on digits (1,000 training images) with free
# per-pixel logits (categorical, 17 levels), two 512-wide layers, no dropout and no free bits, trained 600 steps
# of batch 64 at lr 3e-3 (38 epochs): its ELBO fits the training images far better than the test images.
# The DP run changes only --dp-epsilon (delta 1e-4 = 1/(10 N)). Results: benchmarks/privacy/results.md.
# Usage: bash benchmarks/privacy/memorization.sh [RUNS_DIR] [EPSILONS...]   (default epsilon: 1)
set -u
G=${GENZOO:-.venv/bin/genzoo}
R=${1:-/tmp/genzoo-privacy-memorization}; shift || true
EPS=${*:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export GENZOO_DP_SEEDED_NOISE=1  # reproducible noise for a benchmark table (not secure; the default draws from os.urandom)
mkdir -p "$R"
C="--data digits --steps 600 --batch-size 64 --lr 3e-3 --seed 0 --val-every 0 --set architecture=mlp --set hidden_widths=[512,512] --set latent_dim=16 --set pixel_distribution=categorical --set dropout=0 --set free_bits=0 --no-eval"
timed() {  # timed NAME CMD...: wall seconds and load averages into times.txt, output into NAME.log
  local name=$1; shift
  local b s e rc
  b=$(cut -d" " -f1-3 /proc/loadavg); s=$(date +%s.%N)
  "$@" > "$R/$name.log" 2>&1; rc=$?
  e=$(date +%s.%N)
  echo "$name rc=$rc seconds=$(echo "$e - $s" | bc) load_before=[$b] load_after=[$(cut -d" " -f1-3 /proc/loadavg)]" >> "$R/times.txt"
}
timed train-memorizer $G train vae $C --out "$R/memorizer"
timed privacy-memorizer $G eval "$R/memorizer" --privacy
for eps in $EPS; do
  timed train-dp-$eps $G train vae $C --dp-epsilon "$eps" --out "$R/dp-$eps"
  timed privacy-dp-$eps $G eval "$R/dp-$eps" --privacy
done
