#!/usr/bin/env bash
# Evaluate one spoken-digit run on several sample seeds and print mean +- sd, because one 100-clip draw
# is not a measurement: on the 6,000-step mel model sample seed alone moved FD from 241 to 401.
#
#   bash benchmarks/audio/eval_seeds.sh RUN "0 1 2 3" [extra genzoo eval options, e.g. --guidance 3 --sampler ddim --steps 50]
#
# Each seed's eval.json is kept as RUN/eval-seeds/<tag>-seedS.json (tag: the extra options, spaces -> _).
set -euo pipefail
run=${1:?usage: eval_seeds.sh RUN "SEEDS" [genzoo eval options]}
seeds=${2:-"0 1 2 3"}
shift 2 || shift $#
py=${PYTHON:-.venv/bin/python}
genzoo=${GENZOO:-.venv/bin/genzoo}
tag=$(echo "${*:-default}" | sed 's/--//g' | tr ' /' '__' | tr -s '_')
mkdir -p "$run/eval-seeds"
for s in $seeds; do
  "$genzoo" eval "$run" --n 100 --no-nll --seed "$s" "$@"
  cp "$run/eval.json" "$run/eval-seeds/$tag-seed$s.json"
done
"$py" - "$run/eval-seeds" "$tag" $seeds <<'EOF'
import json, statistics, sys
folder, tag, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = [json.load(open(f"{folder}/{tag}-seed{s}.json")) for s in seeds]
floor = rows[0]["fd_audio_floor"]
print(f"{tag}: steps {rows[0].get('trained_steps')}, seeds {' '.join(seeds)}")
for key in ("heard_as_asked", "fd_audio", "class_coverage", "copy_nn_below_p5_share"):
    vals = [r[key] for r in rows]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(f"  {key:24s} " + " / ".join(f"{v:.3f}" for v in vals) + f"   mean {statistics.mean(vals):.3f} +- {sd:.3f}")
print(f"  FD / floor (mean)        {statistics.mean(r['fd_audio'] for r in rows) / floor:.2f}x  (floor {floor:.1f})")
EOF
