#!/bin/bash
# Usage: bash benchmarks/tabular/run_seeds.sh "contender,contender" SEED...
# Runs bench_sdv.py for each seed as its own process, all at once (one torch thread, one core each),
# appending each seed's log to $TMPDIR/gz-bench-tabular-seedS.log. Run it under the CPU lock.
cd "$(dirname "$0")/../.."
ONLY=$1; shift
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "$@"; do
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tabular/bench_sdv.py --minutes 1.5 --seed "$s" --out benchmarks/tabular \
    --only "$ONLY" >> "${TMPDIR:-/tmp}/gz-bench-tabular-seed$s.log" 2>&1 &
done
wait
echo "end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
