"""genzoo's GPT against transformers' GPT2LMHeadModel at an identical configuration, side by side in one run.

Both: 4 layers, 4 heads, width 128, context 256, vocabulary 115 (the pydocs char tokenizer), MLP 4x
width with tanh GELU, LayerNorm eps 1e-5, biases, tied input/output embeddings, dropout 0, fp32,
one thread. Same batches (random windows of the pydocs train stream, batch 32, seeded), same AdamW
(lr 1e-3, betas 0.9/0.95, weight decay 0.1 on matrices, none on biases/norms/embeddings, grad clip 1).

(a) training tokens/s: alternating blocks of steps (forward + backward + clip + AdamW step),
    median seconds per step per contender;
(b) generation tokens/s, batch 1, greedy, from a short prompt, with and without the KV cache
    (genzoo: ``GPT.generate_tokens(use_cache=...)``, the model's own loop; transformers:
    ``generate(use_cache=..., do_sample=False)``), alternating calls;
(c) training FLOPs/s as a share of this machine's one-thread fp32 matmul peak (a 2048x2048 matmul),
    with PaLM's estimate (Chowdhery et al. 2022, appendix B): 6N + 12 * layers * context * width
    FLOPs per token, N = the parameters of every matmul (blocks' linear layers plus the tied output
    layer; embeddings' lookups and positions excluded).

(d) with --compile, both again through torch.compile (inductor), as two more contenders in the same
    alternating rounds: genzoo's ``compile_for_training`` (what ``genzoo train --compile`` runs) and
    ``torch.compile`` of the transformers model; each compiled pair is checked to learn like its
    eager twin, and the compile time is reported apart.

    .venv/bin/python benchmarks/gpt_vs_transformers.py [--compile]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo.data import load_dataset
from genzoo.models.gpt import GPT, GPTConfig

LAYERS, HEADS, WIDTH, CONTEXT, BATCH = 4, 4, 128, 256, 32
VOCAB_WIDTH = [0]  # vocab * width: the tied output layer's matmul, set in main


def make_genzoo(vocab: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(data={"vocab_size": vocab}, vocab_size=vocab, context=CONTEXT, layers=LAYERS, heads=HEADS,
                         width=WIDTH, dropout=0.0, tie_embeddings=True))


def make_hf(vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab, n_positions=CONTEXT, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                     n_inner=None, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
                     pad_token_id=0)
    torch.manual_seed(0)
    try:
        m = GPT2LMHeadModel(cfg, attn_implementation="sdpa")
    except TypeError:
        cfg._attn_implementation = "sdpa"
        m = GPT2LMHeadModel(cfg)
    return m


class Contender:
    def __init__(self, name, model, logits_fn):
        self.name, self.model, self.logits_fn = name, model, logits_fn
        # matrices decay; biases, norms do not; embeddings (token / position) do not, as in genzoo's decay_groups
        emb = {id(p) for mod in model.modules() if isinstance(mod, torch.nn.Embedding) for p in mod.parameters()}
        decay = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in emb]
        rest = [p for p in model.parameters() if not (p.dim() >= 2 and id(p) not in emb)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                     lr=1e-3, betas=(0.9, 0.95))
        self.losses = []

    def train_step(self, x: torch.Tensor) -> float:
        self.model.train()
        logits = self.logits_fn(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.losses.append(float(loss.detach()))
        return self.losses[-1]


def batches(stream: torch.Tensor, seed: int):
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(stream) - CONTEXT - 1, (BATCH,), generator=g)
        yield torch.stack([stream[s : s + CONTEXT + 1] for s in starts.tolist()])


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def matmul_params(model) -> int:
    """Parameters of the matmuls a token goes through: every nn.Linear / Conv1D weight in the blocks,
    plus the (tied) output layer, vocab x width. Biases, norms and embeddings lookups excluded."""
    emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = 0
    for mod in model.modules():
        w = getattr(mod, "weight", None)
        if w is not None and w.dim() == 2 and id(w) not in emb:  # transformers' lm_head shares the embedding
            n += w.numel()
    return n + VOCAB_WIDTH[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--validate-steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--gen-rounds", type=int, default=3)
    ap.add_argument("--prompt", default="The ")
    ap.add_argument("--compile", action="store_true", help="also time both models through torch.compile")
    ap.add_argument("--out", default="benchmarks/results/gpt_vs_transformers.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import transformers

    ds = load_dataset("pydocs", "train")
    stream, tok = ds.x.long(), ds.meta["tokenizer"]
    vocab = int(ds.meta["vocab_size"])
    VOCAB_WIDTH[0] = vocab * WIDTH
    gz, hf = make_genzoo(vocab), make_hf(vocab)
    n_gz, n_hf = sum(p.numel() for p in gz.parameters()), sum(p.numel() for p in hf.parameters())
    assert n_gz == n_hf, (n_gz, n_hf)
    res = {"config": {"layers": LAYERS, "heads": HEADS, "width": WIDTH, "context": CONTEXT, "vocab": vocab,
                      "batch": BATCH, "dropout": 0.0, "tied_embeddings": True, "dtype": "float32", "threads": 1,
                      "parameters": n_gz, "hf_attn_implementation": getattr(hf.config, "_attn_implementation", None),
                      "torch": torch.__version__, "transformers": transformers.__version__}}
    print(res["config"], flush=True)
    con = [Contender("genzoo", gz, lambda x: gz(x)), Contender("transformers", hf, lambda x: hf(input_ids=x).logits)]
    if args.compile:
        from genzoo.models.gpt import _COMPILED_FORWARD

        gzc, hfc = make_genzoo(vocab), make_hf(vocab)
        gzc.compile_for_training()
        hfc_compiled = torch.compile(hfc, dynamic=False)
        con += [Contender("genzoo_compiled", gzc, lambda x: _COMPILED_FORWARD[gzc](x)),
                Contender("transformers_compiled", hfc, lambda x: hfc_compiled(input_ids=x).logits)]

    # ---- validation: each pipeline learns on its own (same batches)
    compile_s = {}
    for c in con:
        data = batches(stream, seed=1)
        t0 = time.perf_counter()
        c.train_step(next(data))  # the first step of a compiled contender compiles it
        compile_s[c.name] = time.perf_counter() - t0
        for _ in range(args.validate_steps - 1):
            c.train_step(next(data))
        print(f"{c.name}: loss {c.losses[0]:.3f} -> {statistics.mean(c.losses[-5:]):.3f} (mean of last 5) "
              f"over {args.validate_steps} steps; log(V) = {math.log(vocab):.3f}", flush=True)
    res["validation"] = {c.name: {"first_loss": c.losses[0], "last5_mean_loss": statistics.mean(c.losses[-5:]),
                                  "steps": args.validate_steps, "losses": c.losses, "first_step_s": compile_s[c.name]}
                         for c in con}

    # ---- (a) + (c) training speed, alternating blocks on the same batches
    peak_before = matmul_peak()
    data = batches(stream, seed=2)
    times = {c.name: [] for c in con}
    for r in range(args.rounds):
        block = [next(data) for _ in range(args.block)]
        for c in (con if r % 2 == 0 else con[::-1]):  # alternate the order: neither always runs first
            t0 = time.perf_counter()
            for x in block:
                c.train_step(x)
            times[c.name].append((time.perf_counter() - t0) / args.block)
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.3f}s/step" for k, v in times.items()), flush=True)
    peak_after = matmul_peak()
    peak = max(peak_before, peak_after)
    tok_step = BATCH * CONTEXT
    n_mm = matmul_params(gz)
    if args.compile:
        res["training_compiled"] = {
            "ratio_compiled_over_compiled": statistics.median(times["transformers_compiled"]) / statistics.median(times["genzoo_compiled"]),
            "ratio_genzoo_compiled_over_transformers_eager": statistics.median(times["transformers"]) / statistics.median(times["genzoo_compiled"]),
            "ratio_genzoo_compiled_over_eager": statistics.median(times["genzoo"]) / statistics.median(times["genzoo_compiled"]),
            "ratio_transformers_compiled_over_eager": statistics.median(times["transformers"]) / statistics.median(times["transformers_compiled"]),
            "first_step_seconds": compile_s}
        print(json.dumps(res["training_compiled"], indent=1, default=float), flush=True)
    assert n_mm == matmul_params(hf), (n_mm, matmul_params(hf))
    flops_tok = 6 * n_mm + 12 * LAYERS * CONTEXT * WIDTH
    train = {}
    for c in con:
        s = statistics.median(times[c.name])
        train[c.name] = {"seconds_per_step_median": s, "tokens_per_s": tok_step / s, "block_seconds": times[c.name],
                         "flops_per_s": tok_step / s * flops_tok, "share_of_matmul_peak": tok_step / s * flops_tok / peak}
    per_round = [b / a for a, b in zip(times["genzoo"], times["transformers"])]
    res["training"] = {"contenders": train, "ratio_genzoo_over_transformers": train["genzoo"]["tokens_per_s"]
                       / train["transformers"]["tokens_per_s"], "ratio_per_round": per_round,
                       "rounds": args.rounds, "steps_per_block": args.block}
    res["flops"] = {"formula": "PaLM: 6N + 12 * layers * context * width per token", "N_matmul_params": n_mm,
                    "flops_per_token": flops_tok, "matmul_peak_flops_2048_fp32_1thread": peak,
                    "peak_before": peak_before, "peak_after": peak_after}
    print(json.dumps(res["training"], indent=1, default=float)[:1500], flush=True)

    # ---- (b) generation, batch 1, greedy
    prompt = tok.encode(args.prompt)
    n_new = CONTEXT - len(prompt)
    gz.eval(), hf.eval()
    ids = torch.tensor([prompt])

    def run_gz(cache):
        return gz.generate_tokens([prompt], n_new, use_cache=cache)[0]

    def run_hf(cache):
        with torch.no_grad():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, min_new_tokens=n_new,
                              do_sample=False, use_cache=cache, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    outs = {}
    gtimes = {f"{n}_{'cache' if c else 'nocache'}": [] for n in ("genzoo", "transformers") for c in (True, False)}
    fns = {"genzoo": run_gz, "transformers": run_hf}
    for n in fns:  # warm-up
        fns[n](True)
    for r in range(args.gen_rounds):
        for cache in (True, False):
            for n in (("genzoo", "transformers") if r % 2 == 0 else ("transformers", "genzoo")):
                t0 = time.perf_counter()
                toks = fns[n](cache)
                dt = time.perf_counter() - t0
                key = f"{n}_{'cache' if cache else 'nocache'}"
                gtimes[key].append(len(toks) / dt)
                outs[key] = toks
        print(f"gen round {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f} tok/s" for k, v in gtimes.items()), flush=True)
    gen = {k: {"tokens_per_s_median": statistics.median(v), "runs": v, "new_tokens": len(outs[k])}
           for k, v in gtimes.items()}
    res["generation"] = {
        "prompt": args.prompt, "prompt_tokens": len(prompt), "new_tokens": n_new, "contenders": gen,
        "ratio_cache": gen["genzoo_cache"]["tokens_per_s_median"] / gen["transformers_cache"]["tokens_per_s_median"],
        "ratio_nocache": gen["genzoo_nocache"]["tokens_per_s_median"] / gen["transformers_nocache"]["tokens_per_s_median"],
        "genzoo_cache_equals_nocache": outs["genzoo_cache"] == outs["genzoo_nocache"],
        "transformers_cache_equals_nocache": outs["transformers_cache"] == outs["transformers_nocache"],
        "genzoo_text": tok.decode(outs["genzoo_cache"])[:120], "transformers_text": tok.decode(outs["transformers_cache"])[:120],
    }
    print({k: v for k, v in res["generation"].items() if k != "contenders"}, flush=True)
    res["goals"] = {"training_ratio_goal": 1.2, "training_met": res["training"]["ratio_genzoo_over_transformers"] >= 1.2,
                    "generation_goal": 1.0, "generation_cache_met": res["generation"]["ratio_cache"] >= 1.0,
                    "generation_nocache_met": res["generation"]["ratio_nocache"] >= 1.0}
    print(res["goals"])
    Path(args.out).write_text(json.dumps(res, indent=1, default=float))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
