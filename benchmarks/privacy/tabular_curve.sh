#!/usr/bin/env bash
# The privacy-utility curve of a tabular family: tvae on the built-in diamonds table (43,152 training rows,
# target `cut` for ML efficacy) trained with DP-SGD at epsilon 1, 3, 8 (delta 1e-6) and without DP
# (epsilon = infinity): the same seed, batch (500, the family's default) and number of steps in every row.
# Each run is scored by `genzoo eval` (quality, ML efficacy, detection, DCR on 1,000 samples) and by the
# membership attacks of `genzoo eval --privacy`. Results: benchmarks/privacy/results.md.
# Usage: [EPSILONS="inf 1 3 8"] bash benchmarks/privacy/tabular_curve.sh [RUNS_DIR] [STEPS]
#   logs: RUNS_DIR/{train,eval,privacy}-EPS.log; wall seconds and load averages: RUNS_DIR/times.txt
# Each epsilon's three commands run together under the shared CPU lock (/tmp/s4/cpu.lock where it exists).
set -u
G=${GENZOO:-.venv/bin/genzoo}
R=${1:-/tmp/genzoo-privacy-tabular}
STEPS=${2:-400}
LOCK=/tmp/s4/cpu.lock
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export GENZOO_DP_SEEDED_NOISE=1  # reproducible noise for a benchmark table (not secure; the default draws from os.urandom)
export G R STEPS
mkdir -p "$R"
one() {  # one EPS: train, eval, eval --privacy, each timed with the load average before and after
  eps=$1
  dp=""; [ "$eps" != inf ] && dp="--dp-epsilon $eps --dp-delta 1e-6"
  for what in train eval privacy; do
    case $what in
      train) cmd="$G train tvae --data diamonds --target cut --steps $STEPS --seed 0 --no-eval $dp --out $R/eps-$eps" ;;
      eval) cmd="$G eval $R/eps-$eps" ;;
      privacy) cmd="$G eval $R/eps-$eps --privacy" ;;
    esac
    b=$(cut -d" " -f1-3 /proc/loadavg); s=$(date +%s.%N)
    $cmd > "$R/$what-$eps.log" 2>&1; rc=$?
    e=$(date +%s.%N)
    echo "$what eps=$eps rc=$rc seconds=$(echo "$e - $s" | bc) load_before=[$b] load_after=[$(cut -d" " -f1-3 /proc/loadavg)]" >> "$R/times.txt"
  done
}
export -f one
for eps in ${EPSILONS:-inf 1 3 8}; do
  if [ -e "$LOCK" ]; then flock "$LOCK" bash -c "one $eps"; else one "$eps"; fi
  echo "eps=$eps done $(date -u +%T)"
done
