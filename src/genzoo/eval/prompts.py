"""Does a text-to-image model draw what the prompt asks for?

For each digit d, ``per_digit`` samples are drawn from prompts that ask for d (cycling through the
phrasings of ``genzoo.data.captions.prompts``) and the digits evaluator (the classifier behind
FD_digits) reads each sample; the *prompt accuracy* is the share read as d. It is measured

* without guidance (w = 1: the plain conditional model) and with classifier-free guidance
  (w = ``guidance``), on the phrasings used in the captions; and
* with guidance on phrasings that never occur in the captions (``unseen``), which asks whether
  the text encoder carries the model beyond the training templates.

Chance is 0.1. The floor is the evaluator's accuracy on real test images (what a perfect model's
samples would score). Every draw is seeded, so the numbers repeat.

Beside it, the CLIP score (``genzoo.eval.prompt_agreement``: mean cosine of genzoo's contrastive
image and text embeddings) of the guided samples with their prompts; its floor is the score of real
test images with prompts asking for their own digits.
"""

from __future__ import annotations

import torch

from genzoo.data import captions

# Classifier-free guidance trades diversity for obedience. Measured on a 5000-step UNet (benchmarks/README.md,
# section 26, run B; 100 prompts per digit): w=1 reads right 0.992 (unseen phrasings 0.963) at FD_digits 33.4;
# w=1.5 0.999 (0.993) at 34.5; w=3 1.000 (0.999) but FD 39.3; w=5 FD 43.3. Run A (2000 steps, dropout):
# w=1 0.980 (0.942), w=1.5 0.999 (0.993). 1.5 buys nearly all the obedience.
DEFAULT_GUIDANCE = 1.5


def prompt_list(digit: int, n: int, unseen: bool = False) -> list[str]:
    """``n`` prompts asking for ``digit``: the phrasings in turn."""
    phrasings = captions.prompts(digit, unseen=unseen)
    return [phrasings[i % len(phrasings)] for i in range(n)]


def prompt_samples(model, prompts: list[str], *, guidance: float, seed: int, options: dict | None = None) -> torch.Tensor:
    """One seeded sample per prompt, in data space, as a float CPU tensor."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = model.sample(len(prompts), condition=prompts, guidance=guidance, generator=generator, **(options or {}))
    return torch.as_tensor(x).detach().to("cpu", torch.float32)


def prompt_accuracy(model, *, guidance: float, unseen: bool = False, per_digit: int = 30, seed: int = 0,
                    options: dict | None = None, evaluator=None) -> dict:
    """The share of samples the digits evaluator reads as the digit their prompt asked for (and per digit)."""
    from genzoo.eval.evaluator import get_digits_evaluator

    evaluator = evaluator or get_digits_evaluator()
    prompts, wanted = [], []
    for d in range(10):
        prompts += prompt_list(d, per_digit, unseen)
        wanted += [d] * per_digit
    samples = prompt_samples(model, prompts, guidance=guidance, seed=seed, options=options)
    read = evaluator.predict(samples)
    hit = (read == torch.tensor(wanted)).float()
    return {"accuracy": float(hit.mean()), "per_digit": [float(hit[d * per_digit:(d + 1) * per_digit].mean()) for d in range(10)],
            "n": len(prompts), "samples": samples, "prompts": prompts}


def prompt_metrics(model, *, guidance: float = DEFAULT_GUIDANCE, per_digit: int = 30, seed: int = 0,
                   options: dict | None = None, clip_score: bool = True, say=lambda *_: None) -> dict:
    """What ``genzoo eval`` reports for a text-to-image model on captioned digits (floors beside)."""
    from genzoo.eval.evaluator import get_digits_evaluator

    evaluator = get_digits_evaluator()
    out = {"prompt_guidance": float(guidance), "prompt_per_digit": per_digit}
    guided = None
    for key, w, unseen in (("prompt_accuracy_w1", 1.0, False), ("prompt_accuracy", guidance, False),
                           ("prompt_accuracy_unseen", guidance, True)):
        say(f"prompt accuracy ({'unseen phrasings' if unseen else 'caption phrasings'}, guidance {w:g})")
        result = prompt_accuracy(model, guidance=w, unseen=unseen, per_digit=per_digit, seed=seed,
                                 options=options, evaluator=evaluator)
        out[key] = result["accuracy"]
        out[key + "_floor"] = evaluator.test_accuracy
        guided = result if key == "prompt_accuracy" else guided
    if clip_score:
        say("CLIP agreement of the guided samples with their prompts")
        out.update(clip_agreement(guided["samples"], guided["prompts"]))
    return out


def clip_agreement(samples: torch.Tensor, prompts: list[str]) -> dict:
    """genzoo's CLIP score of samples against their prompts; its floor: real test images against
    prompts of the same phrasings asking for their own digits (trains the default CLIP on first use)."""
    from genzoo.data import load_dataset
    from genzoo.eval.prompt_agreement import default_clip, prompt_agreement

    clip = default_clip()
    test = load_dataset("digits", "test")
    phrasings = {d: captions.prompts(d) for d in range(10)}
    real_prompts = [phrasings[d][i % len(phrasings[d])] for i, d in enumerate(test.y.tolist())]  # as prompt_list cycles
    scored = prompt_agreement(clip, samples, prompts)
    return {"clip_score": scored["clip_score"], "clip_score_floor": prompt_agreement(clip, test.x, real_prompts)["clip_score"],
            "clip_version": scored["clip"]}
