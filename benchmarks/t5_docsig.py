"""T5 on docsig: span-corruption pretraining on pycode, then docstring -> signature fine-tuning,
both through the T5 family and the one Trainer (what `genzoo train t5` runs).

1. A tokenizer is trained on the docsig training pairs (the stdlib's docstrings and signature
   lines): byte-level BPE of ``--vocab-size`` ids by default, or ``--tokenizer char``.
2. Span corruption (15%, mean span 3) on windows of ``--window`` tokens of pycode's training
   modules (shuffled, the first ``--code-tokens`` ids) for ``--pretrain-steps`` (0: none). The
   held-out loss (pycode val windows; the corruption drawn from the seed, the same for every
   model: ``validation_loss``) is measured untrained and after.
3. Supervised fine-tuning on the docsig train pairs ("pairs" data) for ``--finetune-steps``.
   Both phases: the family's recipe (``T5.default_train``: AdamW, linear warm-up over
   ``--warmup`` steps, then cosine decay to 0, no EMA), a fixed step count so the schedule knows
   its end. ``--val-every N`` keeps the weights with the lowest docsig val loss (0, the default:
   the last weights, as the recorded runs did).
4. Greedy decoding (KV cache) on every held-out docsig test pair (``--eval-pairs``: the first N):
   exact match and character F1, against two baselines (the most frequent training signature;
   the docstring's first word as a method name, ``def word(self):``) and the untrained model.

Why BPE (benchmarks/README.md, T5 section): with characters, 15 minutes of CPU (797 steps at lr
2e-3 constant) left the model at the context-free plateau, greedy output ``def ____...``; a
signature is 32 characters but 14 BPE tokens (a docstring 108 characters, 39 tokens), so each step
is about 3x cheaper and the decoder predicts whole pieces (``def``, ``(self``, ``):``).

Writes benchmarks/results/t5_docsig.json and t5_docsig.png (loss curves) with a few examples.

``--parity``: instead, the largest logit difference between transformers' T5ForConditionalGeneration
and genzoo's T5 loaded from the saved folder, on tiny random v1.0 (ReLU, tied, scaled) and v1.1
(gated GELU, unscaled) models with a padded input row (the setting of tests/models/test_t5.py).

Run (1 thread, in the background):
  OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/t5_docsig.py --finetune-steps 900 > runs/t5_docsig.log 2>&1 &
Smoke test (seconds):
  .venv/bin/python benchmarks/t5_docsig.py --pretrain-steps 5 --finetune-steps 5 --code-tokens 20000 --eval-pairs 8 --out /tmp/t5.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import torch

from genzoo import api
from genzoo.data import load_dataset, train_tokenizer
from genzoo.data.base import Dataset
from genzoo.data.docsig import score
from genzoo.data.text import load_corpus
from genzoo.models.t5 import T5
from genzoo.train import Trainer

RESULTS = Path(__file__).parent / "results"


def code_ids(docs: list[str], tok, limit: int) -> torch.Tensor:
    """The documents encoded with eos between them, up to ``limit`` ids (one stream)."""
    ids: list[int] = []
    for d in docs:
        ids += tok.encode(d) + [tok.eos_id]
        if len(ids) >= limit:
            break
    return torch.tensor(ids[:limit], dtype=torch.long)


def first_word_signature(docstring: str) -> str:
    """Baseline: the docstring's first word as a method name (``Return the size...`` -> ``def return(self):``)."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", docstring)
    return f"def {words[0].lower() if words else 'f'}(self):"


def train_phase(model: T5, data: Dataset, steps: int, args, curve: list, phase: str, val: Dataset | None = None) -> float:
    """``steps`` Trainer steps of the family's recipe on ``data``; returns the seconds taken."""
    config = api.train_config_for(T5, data, steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  warmup_steps=min(args.warmup, steps // 2), val_every=args.val_every if val else 0,
                                  log_every=50, progress=False, device=args.device)
    out = Path(args.run_dir) / phase if args.run_dir else None
    trainer = Trainer(model, data, config, out_dir=out, data_name=data.name, val_data=val)
    summary = trainer.fit()
    for row in trainer.history:
        if row.get("event") == "train":
            curve.append((phase, row["step"], row["loss"]))
            print(f"{phase} step {row['step']} loss {row['loss']:.3f} ({row['time']:.0f}s)", flush=True)
    selected = trainer.selected_model
    if selected is not model:  # the best weights on validation
        model.load_state_dict(selected.state_dict())
    model.eval()
    return summary["train_seconds"]


@torch.no_grad()
def evaluate_pairs(model: T5, pairs, max_new: int, batch: int = 64) -> tuple[dict, list[str]]:
    preds = []
    for s in range(0, len(pairs), batch):
        preds += model.generate_text([p[0] for p in pairs[s : s + batch]], max_new_tokens=max_new)
    return score(preds, [p[1] for p in pairs]), preds


def parity() -> dict:
    import tempfile

    import transformers

    from genzoo.models.hf.t5 import load_hf_t5

    out = {}
    for name, ffn, tie in (("v1.0-relu-tied", "relu", True), ("v1.1-gated-gelu", "gated-gelu", False)):
        torch.manual_seed(0)
        cfg = transformers.T5Config(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3,
                                    num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                    feed_forward_proj=ffn, tie_word_embeddings=tie, dropout_rate=0.0)
        hf = transformers.T5ForConditionalGeneration(cfg).eval()
        with torch.no_grad():
            for pname, p in hf.named_parameters():
                p.copy_(1 + 0.2 * torch.randn_like(p) if "layer_norm" in pname else 0.3 * torch.randn_like(p))
        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            ours = load_hf_t5(d)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(2, 120, (2, 30), generator=g)
        mask = torch.ones_like(ids)
        mask[1, 21:] = 0
        dec = torch.randint(2, 120, (2, 25), generator=g)
        with torch.no_grad():
            want = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
            got = ours(ids, dec, mask.bool())
        out[name] = {"max_abs_diff": float((want - got).abs().max()), "logit_std": float(want.std())}
    print(json.dumps(out, indent=2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-steps", type=int, default=0)
    ap.add_argument("--finetune-steps", type=int, default=900)
    ap.add_argument("--tokenizer", choices=("bpe", "char"), default="bpe")
    ap.add_argument("--vocab-size", type=int, default=1024, help="bpe: vocabulary size; char: a cap on the alphabet")
    ap.add_argument("--max-input", type=int, default=64, help="input tokens kept (docstring start), eos included")
    ap.add_argument("--max-target", type=int, default=48, help="target tokens kept, eos included; also the decoding limit")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--code-tokens", type=int, default=4_000_000, help="pretraining: ids of shuffled pycode train modules kept")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--val-every", type=int, default=0, help="fine-tuning: keep the weights with the lowest docsig val loss (0: the last)")
    ap.add_argument("--eval-pairs", type=int, default=0, help="decode only the first N test pairs (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run-dir", default=None, help="also write each phase's checkpoints (run folders) here")
    ap.add_argument("--set", nargs="*", default=[], help="T5Config overrides, key=value (numbers)")
    ap.add_argument("--out", default=str(RESULTS / "t5_docsig.json"))
    ap.add_argument("--parity", action="store_true", help="only the Hugging Face logits parity check")
    args = ap.parse_args()
    if args.parity:
        parity()
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.time()

    tok = train_tokenizer("docsig", args.tokenizer, args.vocab_size)  # on the train pairs only
    train_ds, val_ds, test_ds = (load_dataset("docsig", s, tokenizer=tok) for s in ("train", "val", "test"))
    train_pairs, test_pairs = train_ds.meta["texts"], test_ds.meta["texts"]
    eval_pairs = test_pairs[: args.eval_pairs] if args.eval_pairs else test_pairs
    pre_steps = args.pretrain_steps
    code = val_windows = None
    if pre_steps:  # span corruption only: tokenizing pycode takes a while
        code_train = load_corpus("pycode", "train").documents
        random.Random(args.seed).shuffle(code_train)
        meta = {"tokenizer": tok, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id}
        code = Dataset("pycode", "train", code_ids(code_train, tok, args.code_tokens), meta=meta, kind="tokens")
        val_ids = code_ids(load_corpus("pycode", "val").documents, tok, 64 * 512)
        val_windows = val_ids[: len(val_ids) // args.window * args.window].view(-1, args.window)[:512]
    print(f"data: {len(train_pairs)} train / {len(test_pairs)} test pairs, {len(code.x) if code else 0} code tokens "
          f"({time.time() - t0:.0f}s)", flush=True)

    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}  # numbers: layers=2, dropout=0.1
    overrides = {"max_input_tokens": args.max_input, "max_target_tokens": args.max_target, "window": args.window, **overrides}
    model = api.build_model("t5", train_ds, overrides=overrides, seed=args.seed)  # the family's sizes, --set replaces them
    params = model.num_parameters()
    untrained_span = model.validation_loss(val_windows, seed=args.seed) if pre_steps else None
    untrained_eval, _ = evaluate_pairs(model, test_pairs[:64], args.max_target)
    untrained_eval["heldout_loss_all_test"] = model.validation_loss(test_ds.x)
    print(f"untrained: held-out span loss {untrained_span}, docsig on 64 {untrained_eval}", flush=True)

    curve: list = []
    pre_s = train_phase(model, code, pre_steps, args, curve, "pretrain") if pre_steps else 0.0
    trained_span = model.validation_loss(val_windows, seed=args.seed) if pre_steps else None
    print(f"pretrained {pre_steps} steps in {pre_s:.0f}s: held-out span loss {trained_span}", flush=True)

    ft_steps = args.finetune_steps
    ft_s = train_phase(model, train_ds, ft_steps, args, curve, "finetune", val=val_ds if args.val_every else None)
    t_eval = time.time()
    trained_eval, preds = evaluate_pairs(model, eval_pairs, args.max_target)
    trained_eval["heldout_loss"] = model.validation_loss(test_ds.x)  # nats/token, teacher-forced
    trained_eval["train_loss"] = model.validation_loss(train_ds.x[:: max(1, len(train_ds) // 285)])  # ~285 train pairs, same measure
    eval_s = time.time() - t_eval
    constant = Counter(t for _, t in train_pairs).most_common(1)[0][0]
    baseline = score([constant] * len(eval_pairs), [p[1] for p in eval_pairs])
    copy_baseline = score([first_word_signature(p[0]) for p in eval_pairs], [p[1] for p in eval_pairs])
    print(f"docsig test: trained {trained_eval}, constant {constant!r} -> {baseline}, first word -> {copy_baseline}", flush=True)

    result = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/t5_docsig.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("set", "out", "parity", "run_dir")) +
            (" --set " + " ".join(args.set) if args.set else ""),
        "config": {k: v for k, v in model.config.to_dict().items() if k != "data"}, "parameters": params,
        "tokenizer": {"kind": args.tokenizer, "vocab_size": tok.vocab_size},
        "data": {"train_pairs": len(train_pairs), "test_pairs": len(test_pairs), "eval_pairs": len(eval_pairs),
                 "code_tokens": len(code.x) if code else 0, "window": args.window,
                 "val_windows": len(val_windows) if val_windows is not None else 0},
        "span_corruption": {"heldout_loss_untrained": untrained_span, "heldout_loss_pretrained": trained_span,
                            "steps": pre_steps, "seconds": round(pre_s, 1)},
        "finetune": {"steps": ft_steps, "seconds": round(ft_s, 1), "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "schedule": "cosine to 0 (Trainer, T5.default_train)", "val_every": args.val_every,
                     "max_input": args.max_input, "max_target": args.max_target},
        "docsig_test": {"trained": trained_eval, "untrained_first64": untrained_eval,
                        "constant_baseline": {**baseline, "prediction": constant},
                        "first_word_baseline": {**copy_baseline, "prediction": "def <first word of the docstring>(self):"},
                        "greedy_eval_seconds": round(eval_s, 1)},
        "examples": [{"input": p[0][:120], "target": p[1], "prediction": y} for p, y in list(zip(eval_pairs, preds))[::24]],
        "torch_threads": torch.get_num_threads(), "wall_seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    plot(curve, untrained_span, trained_span, out.with_suffix(".png"))
    print(json.dumps(result["docsig_test"], indent=2))


def plot(curve, untrained: float | None, trained: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))  # the left panel stays empty without pretraining
    for ax, phase, title in ((axes[0], "pretrain", "span corruption (pycode), train loss"),
                             (axes[1], "finetune", "docstring -> signature, train loss")):
        pts = [(s, v) for p, s, v in curve if p == phase]
        if pts:
            ax.plot(*zip(*pts), color="#3366aa")
        if phase == "pretrain" and trained is not None:
            ax.axhline(untrained, color="#999999", ls="--", label=f"held-out, untrained {untrained:.2f}")
            ax.axhline(trained, color="#cc8844", ls="--", label=f"held-out, pretrained {trained:.2f}")
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel("nats/token")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
