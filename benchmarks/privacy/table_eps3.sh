#!/usr/bin/env bash
# The issue's epsilon-3 goal on the large built-in table (diamonds, 43,152 training rows), with the table's
# encoding private too (genzoo.train.dp_table_encoding): the Gaussian copula and tvae, each with and without DP,
# for both targets (price: the built-in's default, R^2; cut: macro F1), then `genzoo eval` (1,000 samples).
# Usage: bash benchmarks/privacy/table_eps3.sh [RUNS_DIR]      (logs: RUNS_DIR/*.log, times: RUNS_DIR/times.txt)
# Results: benchmarks/privacy/results.md ("The table's encoding made private").
set -u
G=${GENZOO:-.venv/bin/genzoo}
R=${1:-/tmp/genzoo-privacy-eps3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export GENZOO_DP_SEEDED_NOISE=1  # reproducible noise for a benchmark table (not secure; the default draws from os.urandom)
mkdir -p "$R"
run() {  # NAME FAMILY TARGET STEPS SEED EPS
  name=$1; fam=$2; target=$3; steps=$4; seed=$5; eps=$6
  dp=""; [ "$eps" != inf ] && dp="--dp-epsilon $eps --dp-delta 1e-6"
  s=$(date +%s.%N); b=$(cut -d" " -f1-3 /proc/loadavg)
  $G train "$fam" --data diamonds --target "$target" --steps "$steps" --seed "$seed" --no-eval $dp --out "$R/$name" > "$R/train-$name.log" 2>&1
  m=$(date +%s.%N)
  $G eval "$R/$name" > "$R/eval-$name.log" 2>&1
  e=$(date +%s.%N)
  echo "$name train_s=$(echo "$m - $s" | bc) eval_s=$(echo "$e - $m" | bc) load_before=[$b] load_after=[$(cut -d" " -f1-3 /proc/loadavg)]" >> "$R/times.txt"
}
for target in price cut; do
  for eps in inf 1 3 8; do run "copula-$target-eps$eps-s0" copula "$target" 300 0 "$eps"; done
  for seed in 1 2; do
    run "copula-$target-eps3-s$seed" copula "$target" 300 "$seed" 3
    run "copula-$target-epsinf-s$seed" copula "$target" 300 "$seed" inf
  done
  run "tvae-$target-epsinf-s0" tvae "$target" 5000 0 inf
  run "tvae-$target-eps3-s0" tvae "$target" 3000 0 3
done
echo done >> "$R/times.txt"
