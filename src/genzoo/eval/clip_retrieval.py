"""Held-out retrieval of a CLIP on captioned-digits: does a caption find its image?

Text -> image over the split's distinct images (447 on test), for three kinds of query:

* ``paired``: each image's own caption (training phrasings, with the measured adjectives);
  R@1 / R@5 of the exact paired image and class-match@1 (the top image shows the asked digit).
  Many images fit one caption ("the digit 3" fits all 45 threes), so R@1 of the exact image is
  bounded well below 1; class-match is the reading that says the model follows the text.
* ``paired_unseen``: the same images recaptioned with the phrasings that never occur in the data
  (``captions.UNSEEN_TEMPLATES``, no adjective: R@1 is near 1 / (images of that digit) at best);
* ``prompts`` / ``prompts_unseen``: ``captions.prompts(d, unseen)`` for every digit: class-match@1
  and the class precision of the top 5.

For the paired queries the result also gives ``ideal_R@1`` / ``ideal_R@5``: what a model scores
that ranks first, in random order, exactly the images the caption describes truly (the asked
digit, with the caption's adjective among those the image earns): the ceiling of exact-pair
recall for a model that reads only what the captions say (one that also learns which of the images
a caption fits are most typical of it can do a little better).

Plus zero-shot digit accuracy: an image reads as the digit whose "a handwritten {word}" prompt is
the most similar of the ten.
"""

from __future__ import annotations

import numpy as np
import torch

from genzoo.eval.evaluator import one_thread
from genzoo.eval.prompt_agreement import load_clip, zero_shot_prompts


def _distinct_images(data):
    """(images, labels, row -> image position) of a captioned split whose rows may repeat images."""
    index = np.asarray(data.meta["image_index"])
    firsts = np.unique(index, return_index=True)[1]
    position = {int(index[r]): i for i, r in enumerate(firsts)}
    return data.x[firsts], data.y[firsts], np.array([position[int(i)] for i in index])


def _text_to_image(sim: torch.Tensor, target: np.ndarray | None, labels: torch.Tensor, asked: np.ndarray) -> dict:
    """``sim`` (texts, images); ``target`` the paired image of each text (None: no pair)."""
    sim = sim.cpu()
    top5 = sim.topk(min(5, sim.shape[1]), dim=1).indices
    out = {"n": int(sim.shape[0]),
           "class_match@1": float((labels[top5[:, 0]].numpy() == asked).mean()),
           "class_precision@5": float((labels[top5].numpy() == asked[:, None]).mean())}
    if target is not None:
        own = sim[torch.arange(len(sim)), torch.as_tensor(target)]
        rank = (sim > own[:, None]).sum(1)  # images strictly more similar than the paired one
        out["R@1"] = float((rank < 1).float().mean())
        out["R@5"] = float((rank < 5).float().mean())
    return out


ADJECTIVES = ("thin", "thick", "narrow", "wide", "slanted", "left-leaning")


def _ideal_recall(texts: list[str], asked: np.ndarray, images, labels) -> dict:
    """Expected R@1 / R@5 of a ranker that puts the images a caption truly describes first, in random order."""
    from genzoo.data.captions import adjectives

    earned = adjectives(np.asarray(images).reshape(-1, 8, 8))
    labels = np.asarray(labels)
    r1, r5 = [], []
    for text, digit in zip(texts, asked):
        said = [a for a in ADJECTIVES if a in text.replace(",", " ").split()]
        fits = max(1, sum(1 for d, adj in zip(labels, earned) if d == digit and all(a in adj for a in said)))
        r1.append(1 / fits)
        r5.append(min(1.0, 5 / fits))
    return {"ideal_R@1": float(np.mean(r1)), "ideal_R@5": float(np.mean(r5))}


def retrieval_metrics(clip=None, split: str = "test") -> dict:
    """Text -> image retrieval and zero-shot accuracy of ``clip`` (a CLIP, a run folder, or None: the default)."""
    from genzoo.data import captions, load_dataset

    model = load_clip(clip)
    data = load_dataset(captions.NAME, split)
    images, labels, row_image = _distinct_images(data)
    y = data.y.numpy()
    rng = np.random.default_rng(captions.SEED)
    unseen = [captions.caption(int(labels[i]), captions.PLAIN, captions.UNSEEN_TEMPLATES[rng.integers(len(captions.UNSEEN_TEMPLATES))])
              for i in range(len(images))]
    result = {"split": split, "images": len(images), "chance_R@1": 1 / len(images)}
    with one_thread():
        img = model.encode_images(images)

        def sim(texts):
            return model.encode_texts(texts) @ img.T

        result["paired"] = _text_to_image(sim(data.meta["captions"]), row_image, labels, y)
        result["paired"].update(_ideal_recall(data.meta["captions"], y, images, labels))
        result["paired_unseen"] = _text_to_image(sim(unseen), np.arange(len(images)), labels, labels.numpy())
        result["paired_unseen"].update(_ideal_recall(unseen, labels.numpy(), images, labels))
        for name, flag in (("prompts", False), ("prompts_unseen", True)):
            texts = [(p, d) for d in range(10) for p in captions.prompts(d, unseen=flag)]
            result[name] = _text_to_image(sim([p for p, _ in texts]), None, labels, np.array([d for _, d in texts]))
        read = (img @ model.encode_texts(zero_shot_prompts()).T).argmax(1).cpu()
    result["zero_shot_accuracy"] = float((read == labels).float().mean())
    return result


def format_retrieval(m: dict) -> str:
    """A plain-text table of ``retrieval_metrics``."""
    lines = [f"text -> image retrieval on captioned-digits/{m['split']} ({m['images']} images; chance R@1 {m['chance_R@1']:.4f})",
             f"{'queries':<16}{'n':>6}{'R@1':>8}{'R@5':>8}{'class@1':>9}{'class P@5':>10}"]
    for name in ("paired", "paired_unseen", "prompts", "prompts_unseen"):
        r = m[name]
        cell = lambda key: f"{r[key]:.3f}" if key in r else "-"  # noqa: E731
        lines.append(f"{name:<16}{r['n']:>6}{cell('R@1'):>8}{cell('R@5'):>8}{cell('class_match@1'):>9}{cell('class_precision@5'):>10}")
    for name in ("paired", "paired_unseen"):
        r = m[name]
        lines.append(f"{name}: a ranker that knows exactly what the captions say scores R@1 {r['ideal_R@1']:.3f}, "
                     f"R@5 {r['ideal_R@5']:.3f} (the images a caption truly describes first, in random order)")
    lines.append(f"zero-shot digit accuracy ('a handwritten {{word}}', 10-way): {m['zero_shot_accuracy']:.3f}")
    return "\n".join(lines)


__all__ = ["format_retrieval", "retrieval_metrics"]
