"""Did the learning curves decide a case? Replays each `genzoo choose` run's rounds with the measured scores in place of
the predicted ones (plain successive halving's ranking on the same runs) and says where the survivors or the pick differ.

    .venv/bin/python benchmarks/choose_counterfactual.py "/tmp/s6/cv*/**/choose/choose.json"

Approximate where survivors differ: plain halving would then have trained other families in the later rounds.
"""

from __future__ import annotations

import glob
import json
import sys

from genzoo.bench import choose as C


def replay(decision: dict) -> tuple[bool, list[str]]:
    rank = C.rank_for(decision["goal"])
    rounds = [r for r in decision["rounds"] if not r.get("probe")]
    same, out = True, []
    for i, r in enumerate(rounds):
        measured = rank({n: m for n, m in r["results"].items() if "error" not in m})
        k = len(rounds[i + 1]["results"]) if i + 1 < len(rounds) else 1
        same &= set(measured[:k]) == set(r["ranking"][:k])
        out.append(f"round {r['round']}: curves keep {r['ranking'][:k]}, measured scores {measured[:k]}")
    return same, out


def main(pattern: str) -> None:
    for path in sorted(glob.glob(pattern, recursive=True)):
        d = json.load(open(path))
        same, rounds = replay(d)
        print(f"{d['data']}: pick {d['recommendation']}; {'same' if same else 'NOT the same'} as plain halving on these runs; "
              + "; ".join(rounds))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/s6/cv*/**/choose/choose.json")
