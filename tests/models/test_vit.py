"""ViT and DiT: patching, the adaLN-Zero start, DiT as the diffusion backbone, the ViT classifier family
(its contract, resume and 2 processes = 1 included, is tests/test_conformance.py's)."""

import pytest
import torch

from genzoo import api
from genzoo.data import Dataset, load_dataset
from genzoo.core.errors import GenzooError
from genzoo.models.base import Batch, BatchRandom, GenerativeModel
from genzoo.models.diffusion import DiffusionModel
from genzoo.models.vit import STEPS, ViT
from genzoo.nn.vit import DiT, ViTEncoder, patchify, unpatchify
from genzoo.train import Trainer, TrainConfig

TINY_DIT = {"backbone": "dit", "dit_width": 32, "dit_depth": 2, "heads": 2, "timesteps": 50}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def digits_spec():
    return {"name": "digits", "kind": "image", "shape": [1, 8, 8], "levels": 17, "num_classes": 10}


def dit_diffusion(**overrides) -> DiffusionModel:
    cfg = DiffusionModel.default_config(digits_spec())
    for name, value in {**TINY_DIT, **overrides}.items():
        setattr(cfg, name, value)
    return DiffusionModel(cfg)


# ---- patches ------------------------------------------------------------------
@pytest.mark.parametrize("patch", [2, 4])
def test_patching_round_trip_on_digits(patch, digits):
    x = digits[0].x[:32]
    tokens = patchify(x, patch)
    assert tokens.shape == (32, (8 // patch) ** 2, patch * patch)
    # token 1 is the second patch of the first row: rows 0..p-1, columns p..2p-1
    assert torch.equal(tokens[:, 1], x[:, 0, :patch, patch : 2 * patch].reshape(32, -1))
    assert torch.equal(unpatchify(tokens, patch, (1, 8, 8)), x)


def test_patching_keeps_channels_apart():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    tokens = patchify(x, 2)
    assert torch.equal(tokens[:, 0], x[:, :, :2, :2].reshape(2, -1))  # flattened as (C, p, p)
    assert torch.equal(unpatchify(tokens, 2, (3, 4, 4)), x)


def test_patch_sizes_that_do_not_tile_are_refused():
    with pytest.raises(GenzooError, match="divide"):
        patchify(torch.zeros(1, 1, 8, 8), 3)
    with pytest.raises(GenzooError, match="tile"):
        unpatchify(torch.zeros(1, 4, 4), 2, (1, 8, 8))


def test_vit_encoder_attends_across_patches():
    torch.manual_seed(0)
    enc = ViTEncoder((1, 8, 8), patch=2, width=16, depth=1, heads=2).eval()
    x = torch.randn(1, 1, 8, 8)
    changed = x.clone()
    changed[..., 6:, 6:] += 1.0  # only the last patch
    a, b = enc(x), enc(changed)
    assert a.shape == (1, 16, 16)
    assert not torch.allclose(a[:, 0], b[:, 0]), "the first token must see the last patch (bidirectional)"


# ---- DiT ---------------------------------------------------------------------
def test_dit_starts_as_the_identity_and_conditions_on_time_and_class():
    torch.manual_seed(0)
    net = DiT((1, 8, 8), patch=2, width=32, depth=3, heads=2, num_classes=10)
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 20, 40]), torch.tensor([0, 3, 7, 10])
    h0, h, _ = net.tokens(x, t, y)
    assert torch.equal(h, h0), "adaLN-Zero: every gate is 0, so the blocks pass the input projection through"
    assert torch.equal(net(x, t, y), torch.zeros_like(x)), "the zero-initialised output layer predicts 0"

    with torch.no_grad():  # leave the zero-initialised state, as training does
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    h0, h, _ = net.tokens(x, t, y)
    assert not torch.allclose(h, h0)
    out = net(x, t, y)
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, t + 5, y), atol=1e-6), "time must change the prediction"
    assert not torch.allclose(out, net(x, t, (y + 1) % 11), atol=1e-6), "the class must change the prediction"


# ---- DiT as the diffusion backbone -----------------------------------------------------
def test_diffusion_selects_the_dit_backbone_and_refuses_bad_settings():
    model = dit_diffusion()
    assert isinstance(model.net, DiT)
    cfg = DiffusionModel.default_config(digits_spec())
    assert cfg.backbone == "unet", "the UNet stays the default"
    with pytest.raises(GenzooError, match="patch"):
        dit_diffusion(patch_size=3)
    with pytest.raises(GenzooError, match="heads"):
        dit_diffusion(dit_width=30, heads=4)
    points = DiffusionModel.default_config({"name": "p", "kind": "points", "shape": [2], "levels": None, "num_classes": 0})
    points.backbone = "dit"
    with pytest.raises(GenzooError, match="dit backbone needs"):
        DiffusionModel(points)


def _eval_loss(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return sum(model.loss(Batch(x, y, BatchRandom(123, s, len(x), 0))).item() for s in range(4)) / 4


def test_diffusion_with_dit_learns_samples_and_round_trips(digits, tmp_path):
    (train, test) = digits
    torch.manual_seed(0)
    model = dit_diffusion()
    before = _eval_loss(model, test.x[:256], test.y[:256])
    opt = model.configure_optimizers(lr=2e-3, weight_decay=0.0)["main"]
    g = torch.Generator().manual_seed(0)
    model.train()
    for step in range(150):
        idx = torch.randint(len(train.x), (64,), generator=g)
        loss = model.loss(Batch(train.x[idx], train.y[idx], BatchRandom(0, step, 64, 0)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _eval_loss(model, test.x[:256], test.y[:256])
    assert before == pytest.approx(1.0, abs=0.05), "an untrained DiT predicts eps = 0: loss E[eps^2] = 1"
    assert after < 0.6 * before, (before, after)

    samples = model.sample(6, condition=torch.arange(6), generator=torch.Generator().manual_seed(0), steps=5, guidance=2.0)
    assert samples.shape == (6, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 16
    model.save_pretrained(tmp_path)
    loaded = GenerativeModel.from_pretrained(tmp_path)
    assert isinstance(loaded.net, DiT) and loaded.config == model.config
    again = loaded.sample(6, condition=torch.arange(6), generator=torch.Generator().manual_seed(0), steps=5, guidance=2.0)
    assert torch.equal(samples, again)


# ---- the ViT classifier family ---------------------------------------------------------------
def test_vit_classifier_beats_chance_by_far(digits):
    train, test = digits
    torch.set_num_threads(1)
    # every setting pinned (not the defaults, which are tuned for the long benchmark run)
    model = api.build_model("vit", train, overrides={"patch": 4, "width": 32, "depth": 2, "heads": 2, "dropout": 0.1,
                                                     "max_rotation_deg": 15.0, "max_scale": 0.15, "max_shift": 1.0})
    settings = TrainConfig(steps=128, batch_size=64, lr=2e-3, weight_decay=0.05, warmup_steps=13, min_lr_ratio=0.0,
                           ema_decay=None, grad_clip=None, val_every=0, progress=False, device="cpu")
    Trainer(model, train, settings).fit()
    accuracy = model.accuracy(test.x, test.y)
    assert accuracy > 0.6, f"chance is 0.1; got {accuracy:.3f}"
    assert model.predict(test.x[:5]).shape == (5,)
    probs = model.predict_proba(test.x[:5, 0].numpy())  # (N, 8, 8) numpy is read too
    assert torch.allclose(probs.sum(1), torch.ones(5))


def test_the_default_recipe_is_the_measured_one():
    """300 epochs of 16 steps, lr 2e-3, weight decay 0.05, batch 64, a tenth warm-up then cosine to 0, no EMA
    (benchmarks/README.md section 24), through the Trainer's own schedule."""
    settings = api.train_config_for(ViT, load_dataset("digits", "train"))
    assert (settings.steps, settings.batch_size, settings.lr, settings.weight_decay) == (STEPS, 64, 2e-3, 0.05) == (4800, 64, 2e-3, 0.05)
    assert (settings.warmup_steps, settings.schedule, settings.min_lr_ratio, settings.ema_decay) == (480, "cosine", 0.0, None)
    assert settings.select_best and settings.val_every > 0  # the weights best on validation are kept


def test_augmentation_comes_from_the_batch_and_only_in_training(digits):
    train, _ = digits
    model = api.build_model("vit", train, overrides={"patch": 4, "width": 16, "depth": 1, "heads": 2})
    batch = lambda step: Batch(train.x[:32], train.y[:32], BatchRandom(0, step, 32, 0))  # noqa: E731
    with torch.no_grad():
        model.train()
        a, b, c = model.loss(batch(1)), model.loss(batch(1)), model.loss(batch(2))
        model.eval()
        d, e = model.loss(batch(1)), model.loss(batch(2))
    assert a == b and a != c, "the same batch stream must give the same images, another stream others"
    assert d == e, "eval mode (validation, prediction) sees the images as they are"


def test_vit_refuses_bad_input(digits):
    train, _ = digits
    model = api.build_model("vit", train, overrides={"patch": 4, "width": 16, "depth": 1, "heads": 2})
    with pytest.raises(GenzooError, match="label"):
        model.accuracy(train.x[:10], train.y[:9])
    with pytest.raises(GenzooError, match="shape"):
        model.predict(torch.zeros(3, 4, 4))
    with pytest.raises(GenzooError, match="NaN"):
        model.predict(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(GenzooError, match="labels"):
        model.loss(Batch(train.x[:4], None, BatchRandom(0, 0, 4, 0)))
    unlabelled = Dataset("plain", "train", train.x[:64], levels=17, kind="image")
    with pytest.raises(GenzooError, match="num_classes"):
        api.build_model("vit", unlabelled)
    with pytest.raises(GenzooError, match="does not handle points"):
        api.build_model("vit", load_dataset("toy2d:moons", "train"))
    with pytest.raises(GenzooError, match="cannot sample"):
        model.sample(2)
