"""The GAN family: gradient penalty, each variant learning, the conditional GAN's classes,
DiffAugment, the mode-collapse alarm and the PacGAN mode protocol, the diagnostics pictures,
and the bench's family:variant entries. (Contract checks: tests/test_conformance.py -k gan.)"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genzoo import api
from genzoo.bench.runner import _options_for, split_entry
from genzoo.data import load_dataset
from genzoo.core.errors import GenzooError
from genzoo.eval.collapse import (
    EIGHT_GAUSSIANS_CENTRES,
    EIGHT_GAUSSIANS_STD,
    alarm_from_metrics,
    collapse_alarm,
    digits_collapse_alarm,
    eight_gaussians_alarm,
    mode_coverage,
)
from genzoo.eval.toy2d import mmd2
from genzoo.models.gan import gradient_penalty
from genzoo.nn.diffaugment import diff_augment, torch_uniform
from genzoo.train import Trainer, TrainConfig


def fit(model, data, steps: int, lr: float, batch_size: int = 128, **changes) -> Trainer:
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, betas=(0.5, 0.999), schedule="constant", warmup_steps=0,
                      ema_decay=0.99, grad_clip=None, val_every=0, progress=False, **changes)
    trainer = Trainer(model, data, cfg)
    trainer.fit()
    return trainer


# ---- gradient penalty --------------------------------------------------------


def test_gradient_penalty_equals_finite_differences():
    """The penalty of the real image discriminator (float64) against central differences of its scores."""
    digits = load_dataset("digits", "train")
    model = api.build_model("gan", digits, "wgan-gp", {"disc_widths": [4, 8], "feature_dim": 8}, seed=3).double()
    critic = model.discriminator
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    got = gradient_penalty(critic, x)

    h = 1e-6
    flat = x.flatten(1)
    grads = torch.zeros_like(flat)
    with torch.no_grad():
        for j in range(flat.shape[1]):
            step = torch.zeros_like(flat)
            step[:, j] = h
            up, down = critic((flat + step).view_as(x)), critic((flat - step).view_as(x))
            grads[:, j] = (up - down) / (2 * h)  # each example's score depends only on that example
    expected = (grads.norm(dim=1) - 1).square().mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-9)
    assert expected.item() > 1e-3  # a critic of unit slope everywhere would make the check vacuous


def test_gradient_penalty_known_answers_and_gradient_to_the_critic():
    lin = nn.Linear(2, 1, bias=False).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.6, 0.8]]))  # |grad| = 1: no penalty
    assert gradient_penalty(lambda v: lin(v).squeeze(1), x).item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.2, 1.6]]))  # |grad| = 2: (2 - 1)^2
    gp = gradient_penalty(lambda v: lin(v).squeeze(1), x)
    assert gp.item() == pytest.approx(1.0)
    gp.backward()  # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w| = 2 * 1 * (0.6, 0.8)
    torch.testing.assert_close(lin.weight.grad, torch.tensor([[1.2, 1.6]], dtype=torch.float64))


# ---- each variant learns -------------------------------------------------------


@pytest.mark.parametrize("variant, extra, steps, lr", [
    ("dcgan", {}, 200, 1e-3), ("wgan-gp", {}, 80, 1e-3),
    ("dcgan", {"loss": "hinge"}, 200, 1e-3),  # the conditional variant's loss (the variant itself needs labels)
    ("dcgan", {"pack": 2}, 200, 1e-3), ("wgan-gp", {"pack": 2}, 80, 1e-3),  # PacGAN2
])
def test_each_variant_learns_on_8gaussians(variant, extra, steps, lr):
    """MMD^2 to the test points falls far below the untrained generator's (small MLPs, seconds)."""
    data = load_dataset("toy2d:8gaussians", "train")
    test = load_dataset("toy2d:8gaussians", "test").x[:1000]
    model = api.build_model("gan", data, variant, {"mlp_width": 64, "mlp_depth": 2, **extra}, seed=0)
    g = torch.Generator().manual_seed(0)
    before = mmd2(model.sample(1000, generator=g), test)
    trainer = fit(model, data, steps, lr)
    after = mmd2(trainer.sampling_model.sample(1000, generator=torch.Generator().manual_seed(0)), test)
    assert after < 0.25 * before, f"{variant}: MMD^2 {before:.3f} -> {after:.3f}"


@pytest.fixture(scope="module")
def evaluator():
    from genzoo.eval.evaluator import get_digits_evaluator

    return get_digits_evaluator()  # cached under $GENZOO_CACHE, or trained once (~25 s), shared with test_eval


def test_conditional_gan_draws_the_requested_digit(evaluator):
    """The digits evaluator reads the requested class on far more samples than chance (10%)."""
    digits = load_dataset("digits", "train")
    model = api.build_model("gan", digits, "conditional", {"architecture": "mlp", "mlp_width": 128, "mlp_depth": 2,
                                                           "latent_dim": 16}, seed=0)
    assert model.config.num_classes == 10
    trainer = fit(model, digits, 250, 1e-3, batch_size=64)
    wanted = torch.arange(10).repeat_interleave(20)
    x = trainer.sampling_model.sample(200, condition=wanted, generator=torch.Generator().manual_seed(0))
    accuracy = (evaluator.predict(x) == wanted).double().mean().item()
    assert accuracy > 0.6, f"requested class read on {accuracy:.0%} of samples"


def test_label_variants_refuse_unlabelled_data_instead_of_changing_meaning():
    from genzoo.registry import get_family

    points = load_dataset("toy2d:8gaussians", "train")
    for family, variant in (("gan", "conditional"), ("ebm", "jem")):
        info = get_family(family)
        assert info.kinds_of(variant) == ("image",) and info.handles(variant, "image") and not info.handles(variant, "points")
        with pytest.raises(GenzooError, match=f"the {variant} variant of {family} handles image data, not points"):
            api.build_model(family, points, variant)
    assert get_family("gan").kinds_of("dcgan") == ("image", "points")  # undeclared: every kind of the family
    unlabelled = {"kind": "image", "shape": [1, 8, 8], "levels": 17}  # e.g. a user's image folder
    with pytest.raises(GenzooError, match="needs data with num_classes"):
        get_family("gan").variant_overrides("conditional", unlabelled)
    from genzoo.bench.runner import eligible_families

    assert "gan" in eligible_families("points") and "ebm" in eligible_families("points")  # default variants do
    from genzoo.bench.runner import run_bench

    with pytest.raises(GenzooError, match="not points data"):  # the bench refuses before training anything
        run_bench("toy2d:8gaussians", families=["ebm:jem"], steps=1, progress=False)


def test_register_refuses_variant_kinds_outside_the_family():
    from genzoo.family import register

    with pytest.raises(ValueError, match="variant_kinds"):
        register("x-test", "", data_kinds=("image",), variants={"a": {}}, variant_kinds={"a": ("points",)})
    with pytest.raises(ValueError, match="variant_kinds"):
        register("x-test", "", data_kinds=("image",), variants={"a": {}}, variant_kinds={"b": ("image",)})


def test_pack_scores_whole_packs_and_its_gradient_penalty_groups_them():
    """PacGAN: D sees ``pack`` examples concatenated; the penalty's norm runs over each pack's values."""
    data = load_dataset("toy2d:8gaussians", "train")
    model = api.build_model("gan", data, "wgan-gp", {"pack": 3, "mlp_width": 8, "mlp_depth": 2}, seed=0)
    x = torch.randn(6, 2)
    scores = model.critic(x)
    assert scores.shape == (2,)
    # the packed score equals D on the concatenated pair of rows
    torch.testing.assert_close(scores[1], model.discriminator(x[3:].reshape(1, 6)).squeeze())
    lin = nn.Linear(6, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 0.0, 0.0, 0.0]]))  # reads the first example of each pack
    critic = lambda v: lin(v.reshape(len(v) // 3, 6)).squeeze(1)  # noqa: E731
    x_hat = torch.randn(6, 2, dtype=torch.float64)
    assert gradient_penalty(critic, x_hat, pack=3).item() == pytest.approx(0.0)  # |grad| per pack = 1
    # norms taken per example instead (1, 0, 0 in each pack) would give (0 + 1 + 1) / 3
    assert gradient_penalty(critic, x_hat).item() == pytest.approx(2 / 3)
    with pytest.raises(GenzooError, match="pack must be >= 1"):
        api.build_model("gan", data, "dcgan", {"pack": 0})
    with pytest.raises(GenzooError, match="unconditional"):
        api.build_model("gan", load_dataset("digits", "train"), "conditional", {"pack": 2})


def test_unconditional_variants_ignore_labels_and_refuse_conditions():
    digits = load_dataset("digits", "train")
    model = api.build_model("gan", digits, "dcgan", {"gen_widths": [4, 4], "disc_widths": [4, 4], "feature_dim": 8})
    assert model.config.num_classes == 0
    with pytest.raises(GenzooError, match="class conditioning"):
        model.sample(2, condition=3)
    with pytest.raises(GenzooError, match="diffaugment works on images only"):
        api.build_model("gan", load_dataset("toy2d:moons", "train"), "dcgan", {"diffaugment": "translation"})
    with pytest.raises(GenzooError, match="unknown DiffAugment policy"):
        api.build_model("gan", digits, "dcgan", {"diffaugment": "translation,zoom"})


# ---- DiffAugment ----------------------------------------------------------------


def test_translation_shifts_by_whole_pixels_with_background_fill():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # translation ratio 1/8 of 4 pixels rounds to 1: shifts -1..1. u = 0.99 -> +1 down, u = 0.0 -> -1 left.
    out = diff_augment(x, "translation", lambda n, *shape: torch.tensor([[0.99, 0.0]]), background=-5.0)
    expected = torch.full((4, 4), -5.0)
    expected[1:, :3] = x[0, 0, :3, 1:]
    assert torch.equal(out[0, 0], expected)


def test_cutout_and_colour_transforms():
    x = torch.zeros(6, 1, 8, 8)
    out = diff_augment(x, "cutout", torch_uniform(torch.Generator().manual_seed(0)), background=-1.0)
    assert ((out == -1).flatten(1).sum(1) == 4).all()  # a 2x2 square (ratio 0.25 of 8) in every image
    y = torch.randn(4, 1, 8, 8)
    b = diff_augment(y, "brightness", lambda n, *s: torch.full((n, *s), 0.75))  # + 0.25
    torch.testing.assert_close(b, y + 0.25)
    c = diff_augment(y, "contrast", lambda n, *s: torch.full((n, *s), 1.0))  # contrast x1.5 around the mean
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(c, (y - m) * 1.5 + m)


def test_diffaugment_is_differentiable_and_seeded():
    x = torch.randn(5, 1, 8, 8, requires_grad=True)
    policy = "brightness,contrast,translation,cutout"
    a = diff_augment(x, policy, torch_uniform(torch.Generator().manual_seed(1)))
    b = diff_augment(x, policy, torch_uniform(torch.Generator().manual_seed(1)))
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(GenzooError, match="images"):
        diff_augment(torch.randn(4, 2), "translation", torch_uniform())


def test_a_diffaugment_run_trains_and_resumes_exactly(tmp_path):
    """Augmentation draws come from the batch's random stream: a resumed run equals a straight one."""
    from interrupt import crash_at

    digits = load_dataset("digits", "train")
    over = {"gen_widths": [4, 4], "disc_widths": [4, 4], "feature_dim": 8, "latent_dim": 4, "diffaugment": "translation,cutout"}
    cfg = TrainConfig(steps=4, batch_size=16, lr=1e-3, warmup_steps=0, ema_decay=0.9, val_every=0, progress=False,
                      checkpoint_every=2, log_every=1, num_samples=4)
    straight = api.build_model("gan", digits, "dcgan", over)
    Trainer(straight, digits, cfg, out_dir=tmp_path / "a").fit()
    broken = api.build_model("gan", digits, "dcgan", over)
    crash_at(broken, 3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(broken, digits, cfg, out_dir=tmp_path / "b").fit()
    resumed = api.build_model("gan", digits, "dcgan", over, seed=5)
    Trainer(resumed, digits, cfg, out_dir=tmp_path / "b").fit(resume=True)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


# ---- diagnostics ----------------------------------------------------------------


def test_training_writes_both_players_curves_and_samples_over_training(tmp_path):
    data = load_dataset("toy2d:8gaussians", "train")
    model = api.build_model("gan", data, "wgan-gp", {"mlp_width": 16, "mlp_depth": 2})
    cfg = TrainConfig(steps=4, batch_size=32, lr=1e-3, val_every=0, progress=False, log_every=1, sample_every=2)
    Trainer(model, data, cfg, out_dir=tmp_path).fit()
    for name in ("players.png", "samples_over_training.png", "loss.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    rows = (tmp_path / "metrics.jsonl").read_text()
    assert all(k in rows for k in ('"loss_d"', '"loss_g"', '"d_real"', '"d_fake"', '"gp"'))


def test_collapse_alarm_on_labels():
    balanced = torch.arange(10).repeat(50)
    assert not collapse_alarm(balanced, balanced, 10)["alarm"]
    one_class = torch.full((500,), 3)
    alarm = collapse_alarm(one_class, balanced, 10)
    assert alarm["alarm"] and alarm["class_kl"] > 2.0 and len(alarm["reasons"]) == 2
    nine = torch.arange(9).repeat(56)  # one class of ten lost entirely: log(10/9) = 0.105 > 0.1
    assert collapse_alarm(nine, balanced, 10)["alarm"]
    assert alarm_from_metrics({"class_coverage": 1.0, "class_kl": 0.02}) == {"alarm": False, "reasons": []}
    assert alarm_from_metrics({"class_coverage": 0.9, "class_kl": 0.02})["alarm"]
    assert alarm_from_metrics({"mmd2": 0.1}) is None


def test_collapse_alarm_fires_on_collapsed_digits_not_on_real_ones(evaluator):
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    real = digits_collapse_alarm(train.x[:500])
    assert not real["alarm"], real
    collapsed = train.x[(train.y == 3) | (train.y == 8)][:200]  # a generator stuck on two digits
    fake = digits_collapse_alarm(collapsed)
    assert fake["alarm"] and fake["class_coverage"] <= 0.3, fake
    assert len(test.x) == 447  # the reference is the fixed test split


# ---- the PacGAN protocol ------------------------------------------------------------


def test_pacgan_protocol_on_known_answers():
    c, s = EIGHT_GAUSSIANS_CENTRES, EIGHT_GAUSSIANS_STD
    at_centres = mode_coverage(c.repeat(10, 1))
    assert at_centres["modes_covered"] == 8 and at_centres["high_quality_share"] == 1.0
    direction = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    inside, outside = c[:3] + 2.9 * s * direction, c[3:] + 3.1 * s * direction  # 3 modes in, 5 out
    r = mode_coverage(torch.cat([inside, outside]))
    assert r["modes_covered"] == 3 and r["high_quality_share"] == pytest.approx(3 / 8)
    assert r["high_quality_per_mode"] == [1, 1, 1, 0, 0, 0, 0, 0]
    assert mode_coverage(torch.zeros(10, 2))["modes_covered"] == 0  # the centre is 2.83 from every mode


def test_pacgan_protocol_on_the_real_8gaussians():
    """Real test points: all 8 modes, and P(|x - mu| < 3 sigma) = 1 - exp(-4.5) = 98.9% in 2-D."""
    test = load_dataset("toy2d:8gaussians", "test").x
    r = mode_coverage(test)
    assert r["modes_covered"] == 8
    assert r["high_quality_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert not eight_gaussians_alarm(test[:2000], test[2000:4000])["alarm"]
    one_mode = EIGHT_GAUSSIANS_CENTRES[:1].repeat(100, 1)
    assert eight_gaussians_alarm(one_mode, test[:2000])["alarm"]


# ---- bench entries --------------------------------------------------------------------


def test_bench_entries_name_a_family_or_a_variant():
    assert split_entry("gan") == ("gan", None)
    assert split_entry("gan:wgan-gp") == ("gan", "wgan-gp")
    with pytest.raises(GenzooError):
        split_entry("gan:")
    opts = {"gan": {"batch_size": 1}, "gan:wgan-gp": {"batch_size": 2}}
    assert _options_for(opts, "gan:wgan-gp") == {"batch_size": 2}
    assert _options_for(opts, "gan:dcgan") == {"batch_size": 1}
    from genzoo.bench import run_bench

    with pytest.raises(GenzooError, match="unknown variant"):
        run_bench("digits", families=["gan:stylish"], steps=1, out_dir="/nonexistent", progress=False)


def test_lipschitz_scales_the_critic_scores():
    data = load_dataset("toy2d:8gaussians", "train")
    x = torch.randn(4, 2)
    base = api.build_model("gan", data, "dcgan", {"mlp_width": 8, "mlp_depth": 2}, seed=0)
    scaled = api.build_model("gan", data, "dcgan", {"mlp_width": 8, "mlp_depth": 2, "lipschitz": 5.0}, seed=0)
    base.eval(), scaled.eval()
    torch.testing.assert_close(scaled.critic(x), 5 * base.critic(x))
    with pytest.raises(GenzooError, match="lipschitz must be > 0"):
        api.build_model("gan", data, "dcgan", {"lipschitz": 0.0})
