"""Generation speed of every audio sampler: seconds of audio per second of compute, measured back to back.

Each (checkpoint, sampler) draws the same ``--n`` class-conditional clips (digits i % 10) ``--repeats`` times
in one process, interleaved, after one warm-up draw; the median time is reported with the ratio to the
first sampler listed, so the ratios hold even on shared, busy cores.

    python benchmarks/audio/sampler_speed.py runs/s5/mel runs/s7/wavenet --n 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SAMPLERS = {  # family -> [(label, sample options)]
    "diffusion": [("dpmpp2m 20 steps (default)", {"sampler": "dpmpp2m", "steps": 20, "guidance": 3.0}),
                  ("ddim 50 steps", {"sampler": "ddim", "steps": 50, "guidance": 3.0}),
                  ("ddpm 250 steps (ancestral, respaced)", {"sampler": "ddpm", "steps": 250, "guidance": 3.0})],
    "wavenet": [("cached queues (default)", {"cache": True})],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import torch

    from genzoo import api

    rows = []
    for run in args.runs:
        model = api.load(run).eval()
        seconds_of_audio = args.n * model.shape[-1] / model.data_spec["sample_rate"]
        condition = torch.arange(args.n) % 10
        cases = SAMPLERS[model.family]
        times = {label: [] for label, _ in cases}
        for rep in range(args.repeats + 1):
            for label, options in cases:
                t0 = time.perf_counter()
                with torch.no_grad():
                    model.sample(args.n, condition=condition, generator=torch.Generator().manual_seed(rep), **options)
                if rep:  # the first round warms up
                    times[label].append(time.perf_counter() - t0)
        base = statistics.median(times[cases[0][0]])
        for label, _ in cases:
            t = statistics.median(times[label])
            rows.append({"run": run, "family": model.family, "sampler": label, "clips": args.n, "median_seconds": round(t, 2),
                         "audio_seconds_per_second": round(seconds_of_audio / t, 3), "time_vs_first": round(t / base, 2)})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
