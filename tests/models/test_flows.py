"""Flows (RealNVP, Glow): invertibility, log-determinants against autograd, normalisation,
the dequantization bound on a known case, actnorm initialisation and checkpoints, learning."""

import math

import pytest
import torch

from genzoo.runs.checkpoint import load_model
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.models.base import LOG_PROB, SAMPLE, Batch, BatchRandom, Updater
from genzoo.models.glow import Glow
from genzoo.models.realnvp import RealNVP
from genzoo.nn.flow_layers import (
    ActNorm,
    AffineCoupling,
    FlowSequence,
    InvertibleLinear,
    LogitTransform,
    MultiScale,
    Squeeze,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    conv_conditioner,
    mlp_conditioner,
)
from genzoo.registry import get_family

LEVELS = 17
SMALL = {
    ("realnvp", "image"): {"hidden": 8, "hidden_layers": 1, "scales": 1, "couplings_per_mask": 2, "final_couplings": 2},
    ("realnvp", "points"): {"hidden": 32, "hidden_layers": 2, "coupling_layers": 6},
    ("glow", "image"): {"hidden": 8, "hidden_layers": 2, "levels": 2, "steps_per_level": 2},
    ("glow", "points"): {"hidden": 32, "hidden_layers": 2, "steps": 6},
}
FAMILIES = {"realnvp": RealNVP, "glow": Glow}


def image_spec(shape=(1, 4, 4), levels=LEVELS):
    return {"name": "test", "kind": "image", "shape": list(shape), "levels": levels, "num_classes": 0}


def points_spec(dims=2):
    return {"name": "test", "kind": "points", "shape": [dims], "levels": None, "num_classes": 0}


def build(family, spec, **overrides):
    cls = FAMILIES[family]
    cfg = cls.default_config(spec)
    for name, value in {**SMALL[(family, spec["kind"])], **overrides}.items():
        setattr(cfg, name, value)
    return cls(cfg)


def perturb(module, scale=0.1, seed=0):
    """Random non-trivial weights: zero-initialised last layers make every coupling the identity at first."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def data_for(spec, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if spec["levels"]:
        return torch.randint(spec["levels"], (n, *spec["shape"]), generator=g).float()
    return torch.randn(n, *spec["shape"], generator=g) * 2 + 0.5


def batch(x, step=0, seed=0):
    return Batch(x, None, BatchRandom(seed, step, len(x), 0))


def brute_force_logdet(fn, x_one):
    """log|det J| of fn at one example, from the full Jacobian computed by autograd."""
    shape = x_one.shape
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.view(1, *shape)).flatten(), x_one.flatten())
    return torch.linalg.slogdet(jac)[1]


# ---- every layer: inverse and log-determinant ------------------------------------------


def _layers():
    """(name, layer, example shape, input sampler); inputs in (-1, 1) where the layer needs it."""
    g = torch.Generator().manual_seed(1)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    unit = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64) * 1.8 - 0.9  # noqa: E731
    return [
        ("actnorm-image", ActNorm(3), (3, 4, 4), randn),
        ("actnorm-points", ActNorm(2), (2,), randn),
        ("1x1-conv", InvertibleLinear(4), (4, 2, 2), randn),
        ("lu-linear", InvertibleLinear(3), (3,), randn),
        ("checkerboard", AffineCoupling(checkerboard_mask(4, 4, 1), conv_conditioner(2, 4, 8, 2)), (2, 4, 4), randn),
        ("channel-first", AffineCoupling(channel_mask(4), conv_conditioner(2, 4, 8, 2)), (4, 2, 2), randn),
        ("channel-second", AffineCoupling(channel_mask(5, first_half=False), conv_conditioner(3, 4, 8, 1)), (5, 2, 2), randn),
        ("alternating", AffineCoupling(alternating_mask(3, 1), mlp_conditioner(1, 4, 16, 2)), (3,), randn),
        ("sigmoid-scale", AffineCoupling(alternating_mask(2, 0), mlp_conditioner(1, 2, 16, 2), scale="sigmoid"), (2,), randn),
        ("squeeze", Squeeze(), (2, 4, 4), randn),
        ("logit", LogitTransform(0.05), (1, 4, 4), unit),
        ("multiscale", MultiScale([FlowSequence([Squeeze(), InvertibleLinear(4)]), FlowSequence([Squeeze(), ActNorm(8)])],
                                  (1, 4, 4)), (1, 4, 4), randn),
    ]


@pytest.mark.parametrize("name, layer, shape, draw", _layers(), ids=[t[0] for t in _layers()])
def test_layer_inverts_and_logdet_matches_autograd(name, layer, shape, draw):
    torch.manual_seed(0)
    layer = perturb(layer.double(), scale=0.3)
    x = draw(5, *shape)
    # actnorm: initialise on this batch first (it must then not change again)
    layer.train()
    layer(x)
    layer.eval()
    z, logdet = layer(x)
    assert logdet.shape == (5,)
    assert torch.allclose(layer.inverse(z), x, atol=1e-10), name
    assert tuple(z.shape[1:]) == layer.output_shape(shape)
    for i in range(2):
        assert logdet[i].item() == pytest.approx(brute_force_logdet(lambda v: layer(v)[0], x[i]).item(), abs=1e-8), name


@pytest.mark.parametrize("scale", ["sigmoid", "tanh"])
def test_coupling_inverse_stays_finite_far_in_the_tails(scale):
    """Glow's plain sigmoid scale has no floor, so its inverse could divide by ~0 (NaN samples)."""
    torch.manual_seed(0)
    coupling = perturb(AffineCoupling(alternating_mask(2, 0), mlp_conditioner(1, 2, 16, 2), scale=scale), scale=1.0)
    z = torch.tensor([[1e4, 1.0], [-1e4, 1.0], [300.0, -2.0], [-300.0, -2.0]])
    x = coupling.inverse(z)
    assert torch.isfinite(x).all()
    shift, log_s = coupling._shift_log_scale(z[:, :1])
    assert (log_s.abs() <= coupling.scale_bound + 1e-6).all()


def test_checkerboard_and_alternating_masks_pass_half_through():
    mask = checkerboard_mask(4, 4, 0)
    assert mask.shape == (1, 4, 4) and mask.sum() == 8 and not (mask & checkerboard_mask(4, 4, 1)).any()
    coupling = perturb(AffineCoupling(mask, conv_conditioner(1, 2, 8, 1)))
    x = torch.randn(3, 1, 4, 4)
    z, _ = coupling(x)
    assert torch.equal(z[:, mask], x[:, mask]) and not torch.allclose(z[:, ~mask], x[:, ~mask])
    assert alternating_mask(4, 0).tolist() == [True, False, True, False]


def test_actnorm_data_dependent_init_standardizes_the_first_batch():
    torch.manual_seed(0)
    layer = ActNorm(3).train()
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.5, 2.0, 5.0]).view(1, 3, 1, 1) + torch.tensor([1.0, -3.0, 0.2]).view(1, 3, 1, 1)
    z, _ = layer(x)
    assert bool(layer.initialized)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(torch.randn(8, 3, 4, 4) + 10)  # only the first batch initialises
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k]), k
    untouched = ActNorm(2).eval()
    untouched(torch.randn(4, 2) + 5)
    assert not bool(untouched.initialized)  # evaluation never initialises


# ---- full models -----------------------------------------------------------------------

MODEL_CASES = [(f, k) for f in FAMILIES for k in ("image", "points")]


def _initialized(family, kind, seed=0):
    torch.manual_seed(seed)
    spec = image_spec() if kind == "image" else points_spec()
    model = build(family, spec)
    model.initialize(data_for(spec, 32, seed=1))  # actnorm data-dependent init
    return perturb(model, scale=0.05, seed=seed).eval(), spec


@pytest.mark.parametrize("family, kind", MODEL_CASES)
def test_model_inverts_and_logdet_matches_autograd(family, kind):
    model, spec = _initialized(family, kind)
    model.double()
    if kind == "image":  # dequantized values inside (-1, 1)
        y = torch.rand(4, *spec["shape"], dtype=torch.float64) * 1.9 - 0.95
    else:
        y = torch.randn(4, 2, dtype=torch.float64) * 2
    z, logdet = model.flow(y)
    assert z.shape == (4, model.dims)
    assert (model.flow.inverse(z).view_as(y) - y).abs().max() < 1e-4
    for i in range(2):
        expected = brute_force_logdet(lambda v: model.flow(v)[0], y[i])
        assert logdet[i].item() == pytest.approx(expected.item(), abs=1e-6)
    # float32 round trip through the public latent API
    model.float()
    x = data_for(spec, 6)
    if kind == "image":
        assert torch.equal(model.decode(model.encode(x)), x)  # bin centres decode to their own levels
    else:
        assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-4)


@pytest.mark.parametrize("family, kind", MODEL_CASES)
def test_every_parameter_gets_a_gradient(family, kind):
    model, spec = _initialized(family, kind)
    model.train()
    model.loss(batch(data_for(spec, 8))).backward()
    names = {n for n, _ in model.named_parameters()}
    assert names and all(n in model.state_dict() for n in names)  # registered, hence saved
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_training_noise_comes_from_batch_rng_and_is_split_proof():
    """Dequantization noise and dropout masks come from batch.rng: two processes, each with half of the
    global batch, compute exactly the per-example losses of one process with all of it."""
    torch.manual_seed(0)
    spec = image_spec()
    model = build("glow", spec, dropout=0.3)
    x = data_for(spec, 8)
    model.initialize(x)
    model.train()
    whole = model._nll(Batch(x, None, BatchRandom(0, 5, 8, 0)))
    halves = torch.cat([model._nll(Batch(x[:4], None, BatchRandom(0, 5, 8, 0))),
                        model._nll(Batch(x[4:], None, BatchRandom(0, 5, 8, 4)))])
    assert torch.allclose(whole, halves, atol=1e-4)
    assert not torch.allclose(whole, model._nll(Batch(x, None, BatchRandom(0, 6, 8, 0))))  # next step: new noise


def test_registered_with_capabilities_and_likelihood_kind():
    for family, cls in FAMILIES.items():
        info = get_family(family)
        assert info.model_class is cls and set(info.data_kinds) == {"image", "points"}
        assert {SAMPLE, LOG_PROB} <= cls.capabilities and cls.likelihood == "exact; bound on discrete data"
        assert cls.sampler_options() == {"temperature": 1.0}
        assert cls.default_train(image_spec())["batch_size"] > 0 and cls.default_train(points_spec())["steps"] > 0
        assert build(family, image_spec()).likelihood == "bound"  # dequantized discrete data
        assert build(family, points_spec()).likelihood == "exact"
    assert RealNVP.default_config(image_spec((1, 8, 8))).scales == 2
    with pytest.raises(GenzooError, match="squeeze"):
        build("glow", image_spec((1, 4, 4)), levels=3)
    with pytest.raises(GenzooError, match="preprocess"):
        build("realnvp", image_spec(), preprocess="tanh")


# ---- the likelihood --------------------------------------------------------------------


def test_dequantization_bound_on_a_known_case():
    """Untrained RealNVP without preprocessing is the identity: p(y) = N(y; 0, I) exactly.
    Few levels (wide bins), so that the bound's gap and its tightening with more draws are visible."""
    torch.manual_seed(0)
    levels, dims = 3, 16
    spec = image_spec((1, 4, 4), levels=levels)
    model = build("realnvp", spec, preprocess="none").eval()
    y = torch.randn(7, 1, 4, 4)
    z, logdet = model.flow(y)
    # the squeezes only reorder the values: z is a permutation of y
    assert torch.equal(z.sort(1).values, y.flatten(1).sort(1).values) and torch.equal(logdet, torch.zeros(7))

    x = data_for(spec, 2000, seed=3)
    edges = torch.linspace(-1, 1, levels + 1, dtype=torch.float64)
    lo, hi = edges[x.long()], edges[x.long() + 1]
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = torch.log(normal.cdf(hi) - normal.cdf(lo)).flatten(1).sum(1)  # log P(k) of the discretized normal
    # E_u log N(y) for y uniform on [lo, hi]: -log(2 pi)/2 - E[y^2]/2, E[y^2] = (lo^2 + lo hi + hi^2) / 3
    expected_bound = (-0.5 * math.log(2 * math.pi) - (lo * lo + lo * hi + hi * hi) / 6).flatten(1).sum(1) \
        + dims * math.log(2 / levels)
    assert (expected_bound <= exact).all()  # Jensen
    jensen_gap = (exact - expected_bound).mean().item()

    def std_err(t):
        return t.std().item() / math.sqrt(len(t))

    # one draw: an unbiased estimate of the bound (catches half-bin noise and a missing D log(2/L))
    err = model.log_prob(x, samples=1).double() - expected_bound
    assert abs(err.mean().item()) < 4 * std_err(err)
    # 64 draws: still a lower bound on log P(k) in expectation, and much tighter than one draw
    gap = exact - model.log_prob(x, samples=64).double()
    assert -4 * std_err(gap) < gap.mean().item() < jensen_gap / 4, (gap.mean().item(), jensen_gap)
    assert torch.equal(model.log_prob(x[:5], samples=4), model.log_prob(x[:5], samples=4))  # seeded
    with pytest.raises(GenzooError, match="levels"):
        model.log_prob(x[:2] + 0.5)


@pytest.fixture(scope="module")
def moons():
    return load_dataset("toy2d:moons", "train").x, load_dataset("toy2d:moons", "test").x[:2000]


def _fit(model, x, steps, batch_size, lr, seed=0):
    opt = Updater(model.configure_optimizers(lr=lr, weight_decay=0.0), grad_clip=100.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        metrics = model.training_step(batch(x[idx], step, seed), step, opt)
    assert math.isfinite(metrics["loss"])
    return model.eval()


@pytest.fixture(scope="module")
def trained_moons(moons):
    train, _ = moons
    out = {}
    for family in FAMILIES:
        torch.manual_seed(0)
        untrained = build(family, points_spec())
        model = _fit(build(family, points_spec()), train, steps=150, batch_size=256, lr=5e-3)
        out[family] = (untrained, model)
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_learns_moons(family, moons, trained_moons):
    _, test = moons
    untrained, model = trained_moons[family]
    untrained.initialize(test[:256])  # the fair baseline for Glow: actnorm fitted to the data's scale
    before, after = -untrained.log_prob(test).mean().item(), -model.log_prob(test).mean().item()
    assert after < before - 0.4, (before, after)
    assert after < 3.3  # a standard normal fitted to moons scores about 3.5


@pytest.mark.parametrize("family", list(FAMILIES))
def test_density_integrates_to_one(family, trained_moons):
    _, model = trained_moons[family]
    axis = torch.linspace(-10, 10, 501)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).view(-1, 2)
    mass = model.log_prob(grid).exp().sum().item() * (axis[1] - axis[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.03)


def test_density_plot_is_written(tmp_path, trained_moons, moons):
    from genzoo.viz.flows import save_density_plot

    path = save_density_plot(trained_moons["realnvp"][1], moons[1], tmp_path / "moons.png", resolution=60)
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(GenzooError, match="2-D"):
        save_density_plot(build("realnvp", image_spec()), moons[1], tmp_path / "x.png")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_learns_digits(family):
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test").x[:150]
    torch.manual_seed(0)
    overrides = {"hidden": 16, "hidden_layers": 2}
    if family == "realnvp":
        overrides.update(scales=2, couplings_per_mask=2, final_couplings=2)
    else:
        overrides.update(levels=2, steps_per_level=3)
    untrained = build(family, train.spec(), **overrides)
    untrained.initialize(train.x[:64])
    model = _fit(build(family, train.spec(), **overrides), train.x, steps=80, batch_size=64, lr=3e-3)
    before = -untrained.log_prob(test, samples=2).mean().item()
    after = -model.log_prob(test, samples=2).mean().item()
    assert after < before - 20, (before, after)
    assert after < 150


# ---- actnorm and checkpoints ---------------------------------------------------------------


def test_glow_actnorm_init_survives_checkpoints(tmp_path):
    torch.manual_seed(0)
    spec = image_spec()
    model = build("glow", spec)
    actnorms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert actnorms and not any(bool(a.initialized) for a in actnorms)
    x = data_for(spec, 32)
    model.train()
    model.loss(batch(x))  # the first training batch initialises every actnorm
    assert all(bool(a.initialized) for a in actnorms)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert all(bool(a.initialized) for a in loaded.modules() if isinstance(a, ActNorm))
    assert torch.equal(loaded.log_prob(x[:8]), model.log_prob(x[:8]))
    loaded.train()
    loaded.loss(batch(x[:4] * 0 + 16))  # a different batch must not re-initialise
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_trainer_checkpoint_keeps_actnorm_and_samples(tmp_path):
    from genzoo import api

    model, _ = api.train("glow", "toy2d:moons", out=tmp_path / "run", steps=3, batch_size=64, progress=False,
                         model_overrides=SMALL[("glow", "points")])
    loaded = api.load(tmp_path / "run")
    assert all(bool(a.initialized) for a in loaded.modules() if isinstance(a, ActNorm))
    assert (tmp_path / "run" / "density.png").stat().st_size > 0  # flows on 2-D points draw their density
    x = load_dataset("toy2d:moons", "test").x[:50]
    assert torch.allclose(loaded.log_prob(x), model.log_prob(x), atol=1e-5)


# ---- sampling and interpolation --------------------------------------------------------------


@pytest.mark.parametrize("family, kind", MODEL_CASES)
def test_same_generator_gives_same_samples(family, kind):
    model, spec = _initialized(family, kind)
    a = model.sample(6, generator=torch.Generator().manual_seed(3))
    b = model.sample(6, generator=torch.Generator().manual_seed(3))
    c = model.sample(6, generator=torch.Generator().manual_seed(4))
    assert a.shape == (6, *spec["shape"]) and torch.equal(a, b) and not torch.equal(a, c)
    if kind == "image":
        assert a.min() >= 0 and a.max() <= LEVELS - 1 and torch.equal(a, a.round())
    cold = model.sample(4, temperature=0.0)
    assert torch.equal(cold, cold[:1].expand_as(cold))  # temperature scales the base std
    with pytest.raises(GenzooError, match="unconditional"):
        model.sample(2, condition=1)


def test_interpolation_ends_at_the_two_images():
    model, spec = _initialized("glow", "image")
    x = data_for(spec, 2, seed=5)
    for method in ("slerp", "linear"):
        path = model.interpolate(x[0], x[1], 5, method=method)
        assert path.shape == (5, *spec["shape"])
        assert torch.equal(path[0], x[0]) and torch.equal(path[-1], x[1])
    with pytest.raises(GenzooError, match="interpolation"):
        model.interpolate(x[0], x[1], 5, method="cubic")
