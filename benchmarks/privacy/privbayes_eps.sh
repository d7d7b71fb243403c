#!/usr/bin/env bash
# privbayes on the large built-in table (diamonds, 43,152 training rows, target cut), private end to end
# (encoding included), at epsilon 1, 3 (six seeds) and 8, and without DP; then `genzoo eval` (1,000 samples,
# as table_eps3.sh) and, for epsilon 3 seed 0, the membership attack (`genzoo eval --privacy`).
# Usage: bash benchmarks/privacy/privbayes_eps.sh [RUNS_DIR]   (logs: RUNS_DIR/*.log, times: RUNS_DIR/times.txt)
# Results: benchmarks/privacy/results.md ("privbayes").
set -u
G=${GENZOO:-.venv/bin/genzoo}
R=${1:-/tmp/genzoo-privbayes}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export GENZOO_DP_SEEDED_NOISE=1  # reproducible noise for a benchmark table (not secure; the default draws from os.urandom)
mkdir -p "$R"
run() {  # NAME SEED EPS
  name=$1; seed=$2; eps=$3
  dp=""; [ "$eps" != inf ] && dp="--dp-epsilon $eps --dp-delta 1e-6"
  s=$(date +%s.%N)
  $G train privbayes --data diamonds --target cut --seed "$seed" --no-eval $dp --out "$R/$name" > "$R/train-$name.log" 2>&1
  m=$(date +%s.%N)
  $G eval "$R/$name" > "$R/eval-$name.log" 2>&1
  echo "$name train_s=$(echo "$m - $s" | bc) eval_s=$(echo "$(date +%s.%N) - $m" | bc) load=[$(cut -d" " -f1-3 /proc/loadavg)]" >> "$R/times.txt"
}
for pair in "0 1" "2 3" "4 5"; do
  for seed in $pair; do run "eps3-s$seed" "$seed" 3 & done; wait
done
run eps1-s0 0 1 & run eps8-s0 0 8 & wait
run epsinf-s0 0 inf & $G eval "$R/eps3-s0" --privacy > "$R/privacy-eps3-s0.log" 2>&1 & wait
echo done >> "$R/times.txt"
