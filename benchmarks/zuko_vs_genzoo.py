"""genzoo's RealNVP against zuko's RealNVP on 2-D toy data, side by side in one run.

Both flows are the same architecture on paper: ``--transforms`` affine
couplings with alternating masks on 2-D points, each conditioner an MLP
1 -> 64 -> 64 -> 2 (the parameter counts are printed; they match), a
standard normal base. Both are trained by the same hand-written loop: AdamW
(no weight decay), the same learning rate with 50 warm-up steps and a cosine
decay, the same batches (one seeded index sequence), no gradient clipping,
no EMA. Only the flow code differs.

1. Test NLL in nats/point on each set's fixed 10,000-point test split after
   ``--steps`` steps (exact for both: flows have an exact density).
2. Speed: training steps/s of each, measured in interleaved blocks of
   ``--block`` steps in this one process (so machine load hits both alike),
   reported as a ratio genzoo / zuko.

Needs the bench extra: pip install -e '.[bench]'.
Run: .venv/bin/python benchmarks/zuko_vs_genzoo.py --steps 2000 --out benchmarks/results  (about 4 minutes on 2 shared cores)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from genzoo.data import load_dataset
from genzoo.viz.flows import save_density_plot
from genzoo.models.realnvp import RealNVP
from genzoo.train.schedule import lr_multiplier

DATASETS = ("moons", "checkerboard", "8gaussians")
HIDDEN = (64, 64)
WARMUP = 50


def genzoo_realnvp(spec: dict, transforms: int) -> RealNVP:
    cfg = RealNVP.default_config(spec)
    cfg.coupling_layers, cfg.hidden, cfg.hidden_layers = transforms, HIDDEN[0], len(HIDDEN)
    return RealNVP(cfg)


class Contender:
    """One flow and its optimizer, trained one step at a time; ``log_prob(x)`` is its exact log density."""

    def __init__(self, name: str, module: torch.nn.Module, log_prob, lr: float, total: int):
        self.name, self.module, self.log_prob = name, module, log_prob
        self.opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
        self.lr, self.total = lr, total
        self.step, self.seconds = 0, 0.0

    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def train_block(self, batches: list[torch.Tensor]) -> float:
        """Train on ``batches`` (one step each) and return the mean loss; time is added to ``seconds``."""
        self.module.train()
        total = 0.0
        t0 = time.perf_counter()
        for x in batches:
            for g in self.opt.param_groups:
                g["lr"] = self.lr * lr_multiplier(self.step, self.total, WARMUP, "cosine", 0.1)
            loss = -self.log_prob(x).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item()
            self.step += 1
        self.seconds += time.perf_counter() - t0
        return total / len(batches)

    @torch.no_grad()
    def test_nll(self, x: torch.Tensor) -> tuple[float, float]:
        self.module.eval()
        nll = torch.cat([-self.log_prob(c) for c in x.split(2500)]).double()
        return nll.mean().item(), (nll.std() / len(nll) ** 0.5).item()


def run_dataset(name: str, args) -> dict:
    import zuko

    train = load_dataset(f"toy2d:{name}", "train")
    test = load_dataset(f"toy2d:{name}", "test")

    torch.manual_seed(args.seed)
    ours = genzoo_realnvp(train.spec(), args.transforms)
    torch.manual_seed(args.seed)
    theirs = zuko.flows.RealNVP(features=2, transforms=args.transforms, hidden_features=HIDDEN)
    contenders = [
        Contender("genzoo", ours, ours.log_density, args.lr, args.steps),
        Contender("zuko", theirs, lambda x: theirs().log_prob(x), args.lr, args.steps),
    ]

    # One seeded batch sequence, shared by both.
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randint(len(train.x), (args.steps, args.batch_size), generator=g)
    losses = {c.name: [] for c in contenders}
    for start in range(0, args.steps, args.block):
        batches = [train.x[i] for i in order[start : start + args.block]]
        # Alternate who goes first, so neither always runs right after the other's cache traffic.
        turn = contenders if (start // args.block) % 2 == 0 else contenders[::-1]
        for c in turn:
            losses[c.name].append(c.train_block(batches))

    result = {"data": f"toy2d:{name}", "steps": args.steps, "batch_size": args.batch_size}
    for c in contenders:
        nll, err = c.test_nll(test.x)
        result[c.name] = {
            "parameters": c.parameters(),
            "test_nll_nats_per_point": round(nll, 4),
            "test_nll_std_err": round(err, 4),
            "final_train_loss": round(losses[c.name][-1], 4),
            "train_seconds": round(c.seconds, 2),
            "steps_per_s": round(c.step / c.seconds, 2),
        }
    result["speed_ratio_genzoo_over_zuko"] = round(result["genzoo"]["steps_per_s"] / result["zuko"]["steps_per_s"], 3)
    result["nll_difference_genzoo_minus_zuko"] = round(
        result["genzoo"]["test_nll_nats_per_point"] - result["zuko"]["test_nll_nats_per_point"], 4)
    if args.out:
        save_density_plot(ours, test, Path(args.out) / f"zuko_vs_genzoo_{name}_genzoo_density.png", title=f"genzoo RealNVP, {name}")
    return result


def markdown(results: list[dict], args) -> str:
    lines = [
        f"# genzoo RealNVP vs zuko RealNVP ({args.transforms} couplings, MLP {HIDDEN}, "
        f"{args.steps} steps, batch {args.batch_size}, AdamW lr {args.lr})",
        "",
        "| data | params genzoo | params zuko | test NLL genzoo (nats/pt) | test NLL zuko (nats/pt) "
        "| steps/s genzoo | steps/s zuko | speed ratio genzoo/zuko |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o, z = r["genzoo"], r["zuko"]
        lines.append(
            f"| {r['data']} | {o['parameters']:,} | {z['parameters']:,} "
            f"| {o['test_nll_nats_per_point']:.4f} ± {o['test_nll_std_err']:.4f} "
            f"| {z['test_nll_nats_per_point']:.4f} ± {z['test_nll_std_err']:.4f} "
            f"| {o['steps_per_s']:.1f} | {z['steps_per_s']:.1f} | {r['speed_ratio_genzoo_over_zuko']:.2f} |"
        )
    lines += ["", "Test NLL on the fixed 10,000-point test split (± standard error over points); "
              f"speed measured in interleaved blocks of {args.block} steps in one process, "
              f"torch threads = {torch.get_num_threads()}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--transforms", type=int, default=8)
    parser.add_argument("--block", type=int, default=100, help="steps per interleaved timing block")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import zuko

    results = []
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        r = run_dataset(name, args)
        results.append(r)
        o, z = r["genzoo"], r["zuko"]
        print(f"{r['data']:<20} NLL genzoo {o['test_nll_nats_per_point']:.4f} zuko {z['test_nll_nats_per_point']:.4f} | "
              f"steps/s genzoo {o['steps_per_s']:.1f} zuko {z['steps_per_s']:.1f} "
              f"(ratio {r['speed_ratio_genzoo_over_zuko']:.2f}) | params {o['parameters']} vs {z['parameters']}", flush=True)
    report = {
        "benchmark": "zuko_vs_genzoo",
        "settings": {**vars(args), "hidden": list(HIDDEN), "warmup": WARMUP, "optimizer": "AdamW(wd=0)",
                     "schedule": "warm-up + cosine to 0.1 lr"},
        "versions": {"torch": torch.__version__, "zuko": getattr(zuko, "__version__", "?"), "python": platform.python_version()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "zuko_vs_genzoo.json").write_text(json.dumps(report, indent=2))
        (out / "zuko_vs_genzoo.md").write_text(markdown(results, args))
        print(f"wrote {out / 'zuko_vs_genzoo.json'} and {out / 'zuko_vs_genzoo.md'}")
    print(markdown(results, args))


if __name__ == "__main__":
    main()
