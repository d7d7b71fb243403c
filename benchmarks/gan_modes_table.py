"""The sweep of benchmarks/gan_modes.py runs as one Markdown table (one row per results JSON).

    .venv/bin/python benchmarks/gan_modes_table.py benchmarks/results/gan_modes_sweep/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(path: Path) -> str:
    record = json.loads(path.read_text())
    runs = record["runs"]
    first = runs[0]
    change = ", ".join([f"{k}={v}" for k, v in first.get("model_overrides", {}).items()]
                       + [f"{k}={v}" for k, v in first.get("train_overrides", {}).items()]) or "defaults"
    cells = [f"{r['modes_covered']} / {100 * r['high_quality_share']:.1f}%" for r in runs]
    raw = [f"{100 * r['raw_generator']['high_quality_share']:.1f}%" for r in runs if "raw_generator" in r]
    alarms = sum(r["collapse_alarm"] for r in runs)
    secs = "-".join(f"{r['train_seconds']:.0f}" for r in runs)
    goal = record["summary"][first["variant"]]["goal_met_every_seed"]
    return (f"| {path.stem} | {first['variant']} | {change} | {first['steps']} | seeds {','.join(str(r['seed']) for r in runs)}: "
            f"{'; '.join(cells)} | {', '.join(raw) or '-'} | {alarms} | {secs} | {'yes' if goal else 'no'} |")


def main() -> None:
    print("| run | variant | change from the defaults | steps | modes / high quality (EMA G) | raw G HQ | alarms | train s | goal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sys.argv[1:]:
        print(row(Path(name)))


if __name__ == "__main__":
    main()
