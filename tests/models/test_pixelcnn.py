"""PixelCNN and Gated PixelCNN: causality (and the blind spot) by gradients, a normalized exact
likelihood, learning, sampling, completion, conditioning and refusals."""

import itertools
import math

import pytest
import torch

from genzoo.data import load_dataset
from genzoo.data.base import to_signed_unit
from genzoo.core.errors import GenzooError
from genzoo.models.base import (COMPLETE, LABEL_CONDITION, LOG_PROB, SAMPLE, Batch, BatchRandom, GenerativeModel,
                                Updater)
from genzoo.models.pixelcnn import GatedPixelCNN, PixelCNN
from genzoo.nn.masked import causal_mask
from genzoo.registry import get_family

FAMILIES = {"pixelcnn": PixelCNN, "gated-pixelcnn": GatedPixelCNN}
TINY = {"channels": 12, "head_channels": 12, "layers": 2}


def image_spec(shape=(1, 8, 8), levels=17, num_classes=10):
    return {"name": "test", "kind": "image", "shape": list(shape), "levels": levels, "num_classes": num_classes}


def build(family, spec=None, variant="", **overrides):
    cls = FAMILIES[family]
    cfg = cls.default_config(spec or image_spec(), variant)
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cls(cfg)


def batch(x, y=None, step=0, global_batch=None, offset=0):
    return Batch(x, y, BatchRandom(0, step, global_batch or len(x), offset))


def random_levels(n, shape, levels, seed=0):
    return torch.randint(levels, (n, *shape), generator=torch.Generator().manual_seed(seed)).float()


# ---- structure --------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_registered_with_capabilities_and_variants(family):
    info = get_family(family)
    assert info.model_class is FAMILIES[family] and info.data_kinds == ("image",)
    assert {SAMPLE, LOG_PROB, COMPLETE, LABEL_CONDITION} <= info.capabilities and info.likelihood == "exact"
    assert set(info.variants) == {"unconditional", "conditional"}
    cls = info.model_class
    assert cls.default_config(image_spec()).num_classes == 0
    assert cls.default_config(image_spec(), "conditional").num_classes == 10
    assert cls.sampler_options() == {"temperature": 1.0}
    assert cls.default_train(image_spec())["batch_size"] > 0


def test_mask_types_at_the_centre():
    one = causal_mask(1, 1, (3, 3), (1, 1), "A")[0, 0]
    assert one.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(1, 1, (3, 3), (1, 1), "B")[0, 0, 1, 1] == 1
    # Three data channels, interleaved groups: output group g reads input groups < g (A) or <= g (B).
    a = causal_mask(3, 3, (1, 1), (0, 0), "A", data_channels=3)[:, :, 0, 0]
    b = causal_mask(3, 3, (1, 1), (0, 0), "B", data_channels=3)[:, :, 0, 0]
    assert torch.equal(a, torch.tril(torch.ones(3, 3), -1)) and torch.equal(b, torch.tril(torch.ones(3, 3)))


# ---- causality, by gradients ------------------------------------------------
def input_gradients(model, shape, levels=5, n=3):
    """dep[i, j] = sum |d (random mix of the logits of variable i) / d input j|, variables in
    autoregressive order (row, column, channel)."""
    c, h, w = shape
    x = to_signed_unit(random_levels(n, shape, levels, seed=1), levels).requires_grad_(True)
    model.eval()
    logits = model.net(x)  # (n, L, C, H, W)
    order = lambda t: t.permute(0, 2, 3, 1).reshape(len(t), -1)  # noqa: E731  (n, C, H, W) -> (n, H*W*C)
    out = order(logits.mul(torch.randn_like(logits)).sum(1))
    dep = torch.zeros(c * h * w, c * h * w)
    for i in range(c * h * w):
        (grad,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)
        dep[i] = order(grad.abs()).sum(0)
    return dep


@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 3, 3)])
def test_gated_pixelcnn_is_causal_and_has_no_blind_spot(shape):
    torch.manual_seed(0)
    # kernel 3 on 5x5 needs 5 layers for the receptive field to reach every earlier pixel
    model = build("gated-pixelcnn", image_spec(shape, levels=5), channels=6, head_channels=6, layers=5)
    dep = input_gradients(model, shape)
    future = torch.triu(torch.ones_like(dep, dtype=torch.bool))  # j >= i
    assert dep[future].max() == 0, "an output reads its own or a later input"
    assert (dep[~future] > 0).all(), f"blind spot: {(dep[~future] == 0).sum()} earlier inputs never reach an output"


@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 3, 3)])
def test_pixelcnn_is_causal_and_shows_its_blind_spot(shape):
    torch.manual_seed(0)
    model = build("pixelcnn", image_spec(shape, levels=5), channels=6, head_channels=6, layers=3,
                  first_kernel_size=3)
    dep = input_gradients(model, shape)
    future = torch.triu(torch.ones_like(dep, dtype=torch.bool))
    assert dep[future].max() == 0, "an output reads its own or a later input"
    assert (dep[~future] == 0).any(), "stacked masked 3x3 convolutions should leave a blind spot"


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_below_do_not_change_the_logits_above(family):
    """Sampling runs the network on the rows so far only; that must give the same logits."""
    torch.manual_seed(0)
    model = build(family, **TINY).eval()
    x = random_levels(2, (1, 8, 8), 17)
    with torch.no_grad():
        full = model.logits(x)
        for rows in (1, 4, 7):
            assert torch.allclose(model.logits(x[:, :, :rows]), full[..., :rows, :], atol=1e-5)


# ---- the likelihood ---------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2)])
def test_probabilities_sum_to_one_over_every_image(family, shape):
    torch.manual_seed(0)
    model = build(family, image_spec(shape, levels=3, num_classes=2), channels=8, head_channels=8, layers=2,
                  num_classes=2)
    images = torch.tensor(list(itertools.product(range(3), repeat=4)), dtype=torch.float32).view(81, *shape)
    for condition in (0, 1, None):  # None: the uniform mixture of the classes
        log_p = model.log_prob(images, condition=condition)
        assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-4)
        assert (log_p < 0).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_log_prob_is_exact_deterministic_and_restores_mode(family):
    torch.manual_seed(0)
    model = build(family, **TINY, dropout=0.5)
    x = random_levels(6, (1, 8, 8), 17)
    a = model.log_prob(x)
    assert model.training, "log_prob must restore train mode"
    assert not a.requires_grad and torch.equal(a, model.log_prob(x))  # eval mode: no dropout
    assert torch.allclose(model.log_prob(x, batch_size=4), a, atol=1e-4)
    # The loss is the mean NLL per image; in eval mode it is exactly -log_prob.
    model.eval()
    assert model.loss(batch(x)).item() == pytest.approx(-a.mean().item(), rel=1e-5)


def test_untrained_model_is_near_uniform():
    torch.manual_seed(0)
    x = load_dataset("digits", "test").x[:50]
    nll = -build("gated-pixelcnn", **TINY).log_prob(x).mean().item()
    assert abs(nll - 64 * math.log(17)) < 20, nll  # 181 nats: uniform over 17 levels


# ---- training -----------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 4, 4)])
def test_every_parameter_gets_a_gradient(family, shape):
    torch.manual_seed(0)
    model = build(family, image_spec(shape, levels=7, num_classes=3), channels=6, head_channels=6, layers=2,
                  num_classes=3, dropout=0.1)
    x = random_levels(4, shape, 7)
    model.loss(batch(x, torch.tensor([0, 1, 2, 0]))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_dropout_masks_come_from_the_batch_and_split_across_processes():
    torch.manual_seed(0)
    model = build("pixelcnn", **TINY, dropout=0.3)
    x = random_levels(8, (1, 8, 8), 17)
    torch.manual_seed(1)
    full = model.loss(batch(x, step=3))
    torch.manual_seed(2)  # the global RNG must not matter
    assert torch.equal(full, model.loss(batch(x, step=3)))
    halves = [model.loss(batch(x[i : i + 4], step=3, global_batch=8, offset=i)) for i in (0, 4)]
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(full.item(), rel=1e-5)
    assert not torch.equal(full, model.loss(batch(x, step=4)))


@pytest.fixture(scope="module")
def trained_gated():
    """A small Gated PixelCNN trained briefly on digits (about 10 s on one thread)."""
    torch.manual_seed(0)
    data = load_dataset("digits", "train")
    model = build("gated-pixelcnn", data.spec(), channels=16, head_channels=32, layers=4, dropout=0.0)
    opt = Updater(model.configure_optimizers(lr=5e-3, weight_decay=0.0), grad_clip=1.0)
    g = torch.Generator().manual_seed(0)
    for step in range(120):
        idx = torch.randint(len(data), (32,), generator=g)
        metrics = model.training_step(batch(data.x[idx], data.y[idx], step), step, opt)
    assert set(metrics) == {"loss", "bits_per_dim"}
    return model


def test_learns_digits(trained_gated):
    x = load_dataset("digits", "test").x
    nll = -trained_gated.log_prob(x).mean().item()
    assert nll < 110, nll  # untrained: about 181 nats; this reaches about 88


# ---- generation -----------------------------------------------------------------
def test_samples_are_levels_and_reproducible(trained_gated):
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = trained_gated.sample(6, generator=g(3))
    assert torch.equal(a, trained_gated.sample(6, generator=g(3)))
    assert not torch.equal(a, trained_gated.sample(6, generator=g(4)))
    assert a.shape == (6, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, a.round()) and a.min() >= 0 and a.max() <= 16
    greedy = trained_gated.sample(2, generator=g(3), temperature=0)
    assert torch.equal(greedy[0], greedy[1]), "temperature 0 picks the most likely level: no randomness"
    with pytest.raises(GenzooError, match="temperature"):
        trained_gated.sample(1, temperature=-1)


def test_completion_keeps_observed_pixels(trained_gated):
    x = load_dataset("digits", "test").x[:4]
    observed = torch.zeros(8, 8, dtype=torch.bool)
    observed[:4] = True  # the top half
    observed[6, 2] = True  # and one pixel inside the hole
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    filled = trained_gated.complete(x, observed, generator=g())
    assert torch.equal(filled[:, :, observed], x[:, :, observed])
    assert torch.equal(filled, trained_gated.complete(x, observed, generator=g()))
    assert torch.equal(filled, filled.round()) and filled.min() >= 0 and filled.max() <= 16
    assert not torch.equal(filled, x), "the hole should be resampled"
    everything = torch.ones_like(x, dtype=torch.bool)
    assert torch.equal(trained_gated.complete(x, everything), x)
    with pytest.raises(GenzooError, match="broadcast"):
        trained_gated.complete(x, torch.ones(3, 3, dtype=torch.bool))


@pytest.mark.parametrize("family", FAMILIES)
def test_multichannel_images_sample_and_complete(family):
    torch.manual_seed(0)
    model = build(family, image_spec((3, 4, 4), levels=5, num_classes=0), channels=6, head_channels=6, layers=2)
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 3, 4, 4) and torch.equal(s, s.round()) and s.max() <= 4
    observed = torch.zeros(3, 4, 4, dtype=torch.bool)
    observed[1] = True  # only the green channel is known
    filled = model.complete(s, observed)
    assert torch.equal(filled[:, 1], s[:, 1])


def test_conditional_model_follows_its_labels():
    torch.manual_seed(0)
    model = build("gated-pixelcnn", variant="conditional", **TINY)
    assert model.config.num_classes == 10
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ones, twos = model.sample(4, condition=1, generator=g()), model.sample(4, condition=2, generator=g())
    assert ones.shape == (4, 1, 8, 8) and not torch.equal(ones, twos)
    assert model.sample(3, condition=[1, 2, 3], generator=g()).shape == (3, 1, 8, 8)
    assert model.sample(2, generator=g()).shape == (2, 1, 8, 8)  # labels drawn uniformly
    x = random_levels(3, (1, 8, 8), 17)
    given = model.log_prob(x, condition=[0, 1, 2])
    assert not torch.allclose(given, model.log_prob(x, condition=[3, 3, 3]))
    with pytest.raises(GenzooError, match="labels"):
        model.loss(batch(x))
    with pytest.raises(GenzooError, match="labels"):
        model.complete(x, torch.ones_like(x, dtype=torch.bool))
    # One condition per image in training: the loss uses batch.y.
    y = torch.tensor([4, 5, 6])
    model.eval()
    assert model.loss(batch(x, y)).item() == pytest.approx(-model.log_prob(x, condition=y).mean().item(), rel=1e-5)


def test_bad_conditions_config_and_inputs_are_refused():
    torch.manual_seed(0)
    plain = build("pixelcnn", **TINY)
    with pytest.raises(GenzooError, match="class conditioning"):
        plain.sample(2, condition=3)
    with pytest.raises(GenzooError, match="class conditioning"):
        plain.log_prob(torch.zeros(1, 1, 8, 8), condition=3)
    conditional = build("pixelcnn", variant="conditional", **TINY)
    with pytest.raises(GenzooError, match="0..9"):
        conditional.sample(2, condition=10)
    with pytest.raises(GenzooError, match="one per sample"):
        conditional.sample(3, condition=[1, 2])
    with pytest.raises(GenzooError, match="integer levels"):
        plain.log_prob(torch.full((1, 1, 8, 8), 0.5))
    with pytest.raises(GenzooError, match="shape"):
        plain.log_prob(torch.zeros(1, 64))
    with pytest.raises(GenzooError, match="multiple"):
        build("gated-pixelcnn", image_spec((3, 8, 8)), channels=16)
    with pytest.raises(GenzooError, match="discrete"):
        build("pixelcnn", image_spec(levels=None))
    with pytest.raises(GenzooError, match="odd"):
        build("gated-pixelcnn", kernel_size=4)
    with pytest.raises(GenzooError, match="variant"):
        PixelCNN.default_config(image_spec(), "huge")
    with pytest.raises(GenzooError, match="labelled"):
        PixelCNN.default_config(image_spec(num_classes=0), "conditional")


def test_checkpoint_round_trip(trained_gated, tmp_path):
    trained_gated.save_pretrained(tmp_path / "ckpt")
    loaded = GenerativeModel.from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, GatedPixelCNN) and loaded.config == trained_gated.config
    assert not any("mask" in k for k in trained_gated.state_dict()), "masks follow from the config"
    x = load_dataset("digits", "test").x[:4]
    assert torch.equal(loaded.log_prob(x), trained_gated.log_prob(x))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.sample(2, generator=g()), trained_gated.sample(2, generator=g()))
